import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
application = get_wsgi_application()

# gunicorn runs no system checks: a production stand-in must stop it here, not serve payments.
from directpay.checks import fail_closed  # after Django is set up

fail_closed()

# What a worker process's first requests would load while a driver waits, loaded at boot instead:
# the URLconf with every view, and the broker's transport (the first Pay or webhook queues a
# task; kombu's Redis transport and redis-py take about 60 ms to import). Nothing connects here.
from importlib import import_module

from django.conf import settings

from directpay.celery import app as celery_app

import_module(settings.ROOT_URLCONF)
celery_app.connection_for_write().release()
