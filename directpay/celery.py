import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")

app = Celery("directpay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def refuse_production_stand_ins(**kwargs):
    """Celery runs no system checks: a worker must not capture money with a stand-in's settings."""
    from django.core.exceptions import ImproperlyConfigured

    from directpay.checks import fail_closed

    try:
        fail_closed()
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from exc  # Celery logs and ignores a receiver's Exception
