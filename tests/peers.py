"""Real peers the tests talk to: a localstripe server on a free port, and Stripe's signed webhooks."""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import stripe

# localstripe plus Stripe's ConfirmationToken (tests/localstripe_tokens.py), which the production
# checkout path confirms with; everything else is localstripe's own.
LOCALSTRIPE = [sys.executable, str(Path(__file__).with_name("localstripe_tokens.py"))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{process.args} exited with {process.returncode} before {url} answered"
            )
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class LocalStripe:
    """A localstripe server process: the fake Stripe `make run` uses, with ConfirmationTokens."""

    def __init__(self, *, command: list[str] | None = None):
        """`command` replaces LOCALSTRIPE (bench/fast_localstripe.py: no disk writes)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(command or LOCALSTRIPE),
                "--port",
                str(self.port),
                "--from-scratch",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        wait_for_http(f"{self.base}/js.stripe.com/v3/", process=self.process)

    def payment_intents(self) -> list[dict]:
        """Every PaymentIntent it holds, page by page (a test session creates far more than a page)."""
        intents, after = [], None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            response = requests.get(
                f"{self.base}/v1/payment_intents",
                params=params,
                auth=("sk_test_localstripe", ""),
                timeout=10,
            )
            response.raise_for_status()
            page = response.json()
            intents += page["data"]
            if not page.get("has_more") or not page["data"]:
                return intents
            after = page["data"][-1]["id"]

    def intent(self, intent_id: str) -> dict:
        response = requests.get(
            f"{self.base}/v1/payment_intents/{intent_id}",
            auth=("sk_test_localstripe", ""),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def charge(self, charge_id: str) -> dict:
        response = requests.get(
            f"{self.base}/v1/charges/{charge_id}", auth=("sk_test_localstripe", ""), timeout=10
        )
        response.raise_for_status()
        return response.json()

    def authenticate(self, intent_id: str, client_secret: str, success: bool = True) -> None:
        response = requests.post(
            f"{self.base}/v1/payment_intents/{intent_id}/_authenticate?success={'true' if success else 'false'}",
            json={"key": "pk_test_localstripe", "client_secret": client_secret},
            timeout=10,
        )
        response.raise_for_status()

    def card_token(self, number: str) -> str:
        """What the browser's card element hands us: a card id from POST /v1/tokens with the public key."""
        response = requests.post(
            f"{self.base}/v1/tokens",
            data={
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
                "key": "pk_test_localstripe",
            },
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["card"]["id"]

    def confirmation_token(self, number: str) -> str:
        """What Stripe.js's createConfirmationToken hands the server, made here with Stripe's test
        helper (POST /v1/test_helpers/confirmation_tokens) through the stripe library."""
        client = stripe.StripeClient("sk_test_localstripe", base_addresses={"api": self.base})
        card = {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}
        token = client.v1.test_helpers.confirmation_tokens.create(
            params={"payment_method_data": {"type": "card", "card": card}}
        )
        return token.id

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def signed(client, settings, event: dict, secret=None):
    """POST a webhook event signed the way Stripe signs it (t=..., v1=HMAC-SHA256)."""
    body = json.dumps(event)
    timestamp = int(time.time())
    signature = hmac.new(
        (secret or settings.STRIPE_WEBHOOK_SECRET).encode(),
        f"{timestamp}.{body}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return client.post(
        "/webhooks/stripe/",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=f"t={timestamp},v1={signature}",
    )


def intent_event(
    event_id, intent_id, status="requires_capture", type="payment_intent.amount_capturable_updated"
):
    return {
        "id": event_id,
        "object": "event",
        "type": type,
        "data": {"object": {"id": intent_id, "object": "payment_intent", "status": status}},
    }
