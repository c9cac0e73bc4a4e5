from django.apps import AppConfig


class DirectpayConfig(AppConfig):
    """The project package as an app, so its system checks (directpay/checks.py) are registered."""

    name = "directpay"

    def ready(self):
        from . import checks  # noqa: F401 - registers the production checks
