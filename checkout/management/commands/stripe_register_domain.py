import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from checkout import payments

WALLET_NAMES = {"apple_pay": "Apple Pay", "google_pay": "Google Pay"}


def _public_name(domain: str) -> bool:
    """Wallets are offered on a public domain name only: not an address, not localhost."""
    try:
        ipaddress.ip_address(domain)
        return False
    except ValueError:
        pass
    return "." in domain and not domain.endswith((".localhost", ".local", ".internal", ".test"))


class Command(BaseCommand):
    help = (
        "Register the public domain with Stripe (or validate it again) and report whether Apple Pay "
        "and Google Pay are active on it. Exits non-zero while a wallet is not ready."
    )

    def add_arguments(self, parser):
        parser.add_argument("--domain", help="Defaults to the host of PUBLIC_BASE_URL.")

    def handle(self, *args, domain=None, **options):
        domain = (domain or urlsplit(settings.PUBLIC_BASE_URL).hostname or "").lower()
        if not domain:
            raise CommandError("No domain given and PUBLIC_BASE_URL has no host.")
        if not _public_name(domain):
            raise CommandError(
                f"{domain} is not a public domain name: Apple Pay and Google Pay only appear on "
                "the HTTPS domain drivers open. Set PUBLIC_BASE_URL (or pass --domain)."
            )
        try:
            registered = payments.register_domain(domain)
        except (payments.PaymentGatewayError, payments.PaymentDeclined) as exc:
            raise CommandError(f"Stripe refused to register {domain}: {exc}") from exc

        done = "Registered" if registered.created else "Already registered, validated again:"
        self.stdout.write(f"{done} {domain} ({registered.id}).")
        if not registered.enabled:
            self.stdout.write("  the domain is disabled in the Stripe dashboard: enable it there.")
        for wallet, (status, reason) in registered.wallets.items():
            line = f"  {WALLET_NAMES[wallet]}: {status}"
            self.stdout.write(line + (f" ({reason})" if reason else ""))
        if not registered.ready:
            raise CommandError(
                "Not every wallet is active on this domain yet. Fix what Stripe says above, then "
                "run this command again (it validates the domain again)."
            )
        self.stdout.write(self.style.SUCCESS("Apple Pay and Google Pay can appear at checkout."))
