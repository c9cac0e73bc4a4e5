from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from checkout import payments


class Command(BaseCommand):
    help = "Register the public domain with Stripe so Apple Pay and Google Pay show at checkout."

    def add_arguments(self, parser):
        parser.add_argument("--domain", help="Defaults to the host of PUBLIC_BASE_URL.")

    def handle(self, *args, domain=None, **options):
        domain = domain or urlsplit(settings.PUBLIC_BASE_URL).hostname
        if not domain:
            raise CommandError("No domain given and PUBLIC_BASE_URL has no host.")
        try:
            domain_id = payments.register_domain(domain)
        except (payments.PaymentGatewayError, payments.PaymentDeclined) as exc:
            raise CommandError(f"Stripe refused to register {domain}: {exc}") from exc
        self.stdout.write(f"Registered {domain} with Stripe ({domain_id}).")
