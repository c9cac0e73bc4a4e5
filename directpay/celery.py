import os

from celery import Celery
from celery.signals import beat_init, task_prerun, worker_init

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


@task_prerun.connect
def drop_unusable_connections(task=None, **kwargs):
    """What Django does at each request: close a connection that broke or outlived CONN_MAX_AGE.

    Not for a task run eagerly inside a caller (tests, CELERY_TASK_ALWAYS_EAGER): its connection is
    the caller's, perhaps mid-transaction.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
