import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
application = get_asgi_application()

from directpay.checks import fail_closed  # after Django is set up

fail_closed()  # ASGI servers run no system checks either
