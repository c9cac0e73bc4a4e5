"""Reconciliation with Stripe: how fast the daily run checks N captured payments against localstripe.

Starts a localstripe (tests/peers.py) and a throwaway SQLite database, holds and captures N card
payments at localstripe (part of each hold, as a charge ends below its hold), records them as our
captured payments without their balance transactions (as if Stripe had booked none yet), refunds
every `--refund-every`th one at localstripe behind our back, then runs the reconciliation once
(timed: payments/second, Stripe requests per payment) and once more (the second run finds the
same issues and creates none). Peak Python memory of a run is measured with tracemalloc, on a
third run, untimed.

Run: .venv/bin/python bench/reconcile.py [--payments 200] [--refund-every 10]
     (prints, asserts nothing; localstripe slows down as its store grows, see bench/throughput.py)
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
os.environ.setdefault("PUBLIC_BASE_URL", "https://pay.example.com")
os.environ.setdefault("QR_SIGNING_KEYS", "bench-only-qr-key")

import django

django.setup()

import requests
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from checkout import payments, reconciliation
from checkout.models import ChargingSession, Payment, ReconciliationIssue
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from tests.factories import ConnectorFactory
from tests.peers import LocalStripe

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--payments", type=int, default=200, help="captured payments (default 200)")
parser.add_argument(
    "--refund-every", type=int, default=10, help="refund every Nth at localstripe (default 10)"
)
args = parser.parse_args()

AUTH = ("sk_test_localstripe", "")
call_command("migrate", verbosity=0)
stripe = LocalStripe()
settings.STRIPE_API_BASE = stripe.base


def post(path, **data):
    response = requests.post(f"{stripe.base}/v1/{path}", data=data, auth=AUTH, timeout=30)
    response.raise_for_status()
    return response.json()


try:
    connector = ConnectorFactory()
    started = time.perf_counter()
    for n in range(args.payments):
        card = stripe.card_token("4242424242424242")
        intent = post(
            "payment_intents",
            amount=2000,
            currency="eur",
            payment_method=card,
            capture_method="manual",
            **{"payment_method_types[]": "card"},
        )
        post(f"payment_intents/{intent['id']}/confirm")
        post(f"payment_intents/{intent['id']}/capture", amount_to_capture=666)
        session = ChargingSession.objects.create(
            evse=connector.evse,
            connector=connector,
            tariff_snapshot={},
            csms_reference=f"B{n:08d}",
            status=S.FINISHED,
        )
        Payment.objects.create(
            session=session,
            currency="EUR",
            status=P.CAPTURED,
            amount_held=2000,
            amount_captured=666,
            stripe_payment_intent_id=intent["id"],
        )
        if args.refund_every and n % args.refund_every == 0:
            post("refunds", payment_intent=intent["id"], amount=100)
    print(
        f"{args.payments} payments held and captured at localstripe in {time.perf_counter() - started:.1f} s"
    )

    calls = {"n": 0}
    real_call = payments._call

    def counting(fn, *a, **kw):
        calls["n"] += 1
        return real_call(fn, *a, **kw)

    payments._call = counting
    now = timezone.now()
    period = {"since": now - timedelta(days=1), "until": now + timedelta(hours=1)}
    for run in ("first", "second"):
        calls["n"] = 0
        started = time.perf_counter()
        counts = reconciliation.reconcile(**period)
        elapsed = time.perf_counter() - started
        print(
            f"{run} run: {counts}, {elapsed:.2f} s, {counts['payments'] / elapsed:.1f} payments/s, "
            f"{calls['n'] / max(counts['payments'], 1):.2f} Stripe requests per payment, "
            f"{ReconciliationIssue.objects.count()} issues in all"
        )
    filled = Payment.objects.exclude(stripe_balance_transaction_id="").count()
    print(f"balance transactions filled in by the run: {filled} of {args.payments}")
    settings.DEBUG = False  # DEBUG keeps every SQL query in memory: not the run's own memory
    tracemalloc.start()
    reconciliation.reconcile(**period)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak Python memory of a run (tracemalloc, untimed): {peak / 1024 / 1024:.1f} MiB")
finally:
    stripe.stop()
