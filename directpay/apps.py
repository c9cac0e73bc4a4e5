from django.apps import AppConfig


class DirectpayConfig(AppConfig):
    """The project package as an app: its system checks (directpay/checks.py) and process-wide settings."""

    name = "directpay"

    def ready(self):
        from reportlab import rl_config

        from . import checks  # noqa: F401 - registers the production checks

        # Our PDFs (receipts, invoices, stickers) keep their compressed streams binary: ReportLab's
        # default ASCII85 layer makes them a quarter larger and costs an encoding pass each.
        rl_config.useA85 = 0
