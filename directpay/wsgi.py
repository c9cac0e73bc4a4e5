import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
application = get_wsgi_application()

# gunicorn runs no system checks: a production stand-in must stop it here, not serve payments.
from directpay.checks import fail_closed  # after Django is set up

fail_closed()
