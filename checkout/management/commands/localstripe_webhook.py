import time

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Register our webhook endpoint with the local Stripe stand-in (localstripe), waiting for it to start."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="Where localstripe should POST events.")
        parser.add_argument(
            "--wait", type=float, default=30.0, help="Seconds to wait for localstripe."
        )

    def handle(self, *args, url, wait, **options):
        if not settings.STRIPE_API_BASE:
            raise CommandError("STRIPE_API_BASE is not set: this command is for localstripe only.")
        deadline = time.monotonic() + wait
        while True:
            try:
                response = requests.post(
                    f"{settings.STRIPE_API_BASE}/_config/webhooks/directpay",
                    data={"url": url, "secret": settings.STRIPE_WEBHOOK_SECRET},
                    timeout=5,
                )
                response.raise_for_status()
                break
            except requests.RequestException as exc:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"localstripe at {settings.STRIPE_API_BASE} did not answer: {exc}"
                    ) from exc
                time.sleep(0.5)
        self.stdout.write(f"localstripe will send webhooks to {url}")
