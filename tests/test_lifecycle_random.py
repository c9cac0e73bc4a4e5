"""A randomized lifecycle: hundreds of purchases with faults drawn at random, then the money rules.

Drivers pay (some cards declined, some needing 3-D Secure, some abandoned, some double-tapped),
chargers accept, refuse, stay silent or start late, drivers stop or hit the spending cap, staff
refund (sometimes too much). Meanwhile Stripe fails requests at random through the fault proxy
(500, 429, silence, writes whose answer is lost), tasks run in random order and some are delivered
twice, and webhooks arrive duplicated and out of order. Then the repair sweeps run, and every
money rule of docs/design.md §4 is checked against our database and against localstripe itself.

LIFECYCLE_SEED and LIFECYCLE_SESSIONS change the draw (the seed is printed on failure).
"""

import os
import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from checkout import refunds, services, sweeps
from checkout.models import ChargingSession, Payment, Receipt, Refund
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import qr
from stations.csms import simulator
from stations.csms.base import SessionStatus as CsmsStatus
from stations.csms.base import SessionUpdate
from stations.models import Evse
from tests.factories import ConnectorFactory
from tests.faultproxy import stripe_behind_proxy
from tests.peers import intent_event, signed
from tests.taskqueue import TaskQueue

SEED = int(os.environ.get("LIFECYCLE_SEED", "20261125"))
SESSIONS = int(os.environ.get("LIFECYCLE_SESSIONS", "200"))

CARDS = [("4242424242424242", 85), ("4000000000000341", 5), ("4000002500003155", 10)]
BEHAVIOURS = [("accept", 75), ("reject", 8), ("occupied", 4), ("timeout", 8), ("slow", 5)]
FAULTS = [("500", 30), ("429", 20), ("timeout", 10), ("lost", 30), ("lost_timeout", 10)]
TARGETS = [
    ("POST", r"^/v1/payment_intents$"),
    ("POST", r"/confirm$"),
    ("POST", r"/capture$"),
    ("POST", r"/cancel$"),
    ("POST", r"^/v1/refunds$"),
    ("GET", r"^/v1/payment_intents/pi_"),
    ("GET", r"^/v1/refunds"),
]
CAPTURE = r"^/v1/payment_intents/(pi_[^/]+)/capture$"

pytestmark = pytest.mark.django_db(transaction=True)


def pick(rng, weighted):
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


class World:
    """The drivers, chargers and Stripe's bad days of one run."""

    def __init__(self, rng, client, settings, localstripe, proxy, queue):
        self.rng, self.client, self.settings = rng, client, settings
        self.localstripe, self.proxy, self.queue = localstripe, proxy, queue
        self.faults = Counter()
        self.outcomes = Counter()

    def maybe_fault(self, rate=0.15):
        if self.rng.random() < rate:
            method, path = self.rng.choice(TARGETS)
            fault = pick(self.rng, FAULTS)
            self.proxy.fail(method, path, fault)
            self.faults[f"{fault} on {method} {path}"] += 1

    def run_tasks(self):
        self.queue.run(rng=self.rng, duplicate_rate=0.1)

    def pay(self, connector):
        card, hold = pick(self.rng, CARDS), self.rng.choice([2000, 3500, 5000])
        data = {
            "connector": connector.pk,
            "hold_amount": hold,
            "attempt": f"att-{self.rng.getrandbits(48):x}",
            "payment_method": self.localstripe.card_token(card),
            "price": connector.tariff.price_digest,  # what its checkout page shows
        }
        url = reverse("checkout:pay", args=[qr.code_for(connector.evse)])
        self.maybe_fault()
        answer = self.client.post(url, data).json()
        if self.rng.random() < 0.05:  # a double tap: the same press arrives again
            again = self.client.post(url, data).json()
            assert again.get("ok") == answer.get("ok"), (
                answer,
                again,
            )  # the same answer, not a second try
            assert again.get("status_url") == answer.get("status_url"), (answer, again)
            self.outcomes["double tap"] += 1
        assert "held" in answer or answer.get("ok"), (
            answer
        )  # every error says whether money is held
        if answer.get("next") == "authenticate":
            session = ChargingSession.objects.get(evse=connector.evse, status=S.AUTHORIZING)
            if self.rng.random() < 0.6:
                payment = session.payment
                self.localstripe.authenticate(
                    payment.stripe_payment_intent_id,
                    payment.client_secret,
                    success=self.rng.random() < 0.8,
                )
                self.maybe_fault()
                self.client.post(answer["confirm_url"])
                self.outcomes["3-D Secure answered"] += 1
            else:
                self.outcomes["3-D Secure abandoned"] += 1
        self.outcomes[
            "paid" if answer.get("ok") else f"refused {answer.get('message', '')[:40]}"
        ] += 1

    def webhook(self, payment):
        intent = payment.stripe_payment_intent_id
        kinds = [
            ("payment_intent.amount_capturable_updated", "requires_capture"),
            ("payment_intent.succeeded", "succeeded"),
            ("charge.refunded", None),
        ]
        events = []
        for n, (kind, status) in enumerate(self.rng.sample(kinds, 2)):
            if status:
                events.append(intent_event(f"evt_{intent}_{n}", intent, status, kind))
            else:
                events.append(
                    {
                        "id": f"evt_{intent}_{n}",
                        "object": "event",
                        "type": kind,
                        "data": {
                            "object": {"id": "ch_x", "object": "charge", "payment_intent": intent}
                        },
                    }
                )
        events += self.rng.sample(events, 1)  # a duplicate delivery
        for event in events:
            self.maybe_fault(0.05)
            assert signed(self.client, self.settings, event).status_code == 200
        self.outcomes["webhooks"] += len(events)


@pytest.fixture
def proxy(settings, localstripe):
    with stripe_behind_proxy(settings, localstripe, timeout=0.3) as proxy:
        yield proxy


def test_randomized_lifecycle_keeps_every_money_rule(
    client, settings, localstripe, proxy, monkeypatch
):
    rng = random.Random(SEED)
    settings.RATELIMIT_ENABLE = False  # hundreds of drivers from one test client, not an attack
    queue = TaskQueue(monkeypatch)
    world = World(rng, client, settings, localstripe, proxy, queue)
    connectors = [
        ConnectorFactory(evse__sim_behaviour=pick(rng, BEHAVIOURS)) for _ in range(SESSIONS)
    ]
    print(f"seed {SEED}, {SESSIONS} sessions")

    # Pay, with tasks running in random order now and then.
    for n, connector in enumerate(connectors):
        world.pay(connector)
        if n % 10 == 9:
            world.run_tasks()
    world.run_tasks()

    # Charge: the clock moves on; drivers stop, chargers start late, webhooks arrive.
    base = timezone.now()
    for minutes in (1, 10, 30, 60, 90, 120, 180):
        simulator.tick(now=base + timedelta(minutes=minutes))
        for session in ChargingSession.objects.filter(status=S.CHARGING):
            if rng.random() < 0.2:
                world.maybe_fault()
                client.post(reverse("checkout:stop", args=[session.public_id]))
                world.outcomes["driver pressed Stop"] += 1
        for session in ChargingSession.objects.filter(
            status=S.FAILED, evse__sim_behaviour="timeout"
        ):
            if rng.random() < 0.1 and not session.events.filter(kind="late_start_stopped").exists():
                # The silent charger starts after all, long after we released the hold.
                services.session_apply_update(
                    SessionUpdate(
                        reference=session.csms_reference,
                        status=CsmsStatus.ACTIVE,
                        kwh=Decimal("0.5"),
                    )
                )
                world.outcomes["late start"] += 1
        for payment in Payment.objects.exclude(stripe_payment_intent_id=None):
            if rng.random() < 0.03:
                world.webhook(payment)
        world.run_tasks()

    # Everyone still charging stops; then staff refund some purchases. A slow charger that was
    # still starting only begins charging at the next tick: its driver stops it on the next round.
    for minutes in (200, 210, 220):
        for session in ChargingSession.objects.filter(status=S.CHARGING):
            client.post(reverse("checkout:stop", args=[session.public_id]))
        world.run_tasks()
        simulator.tick(now=base + timedelta(minutes=minutes))
        world.run_tasks()
    for payment in Payment.objects.filter(status=P.CAPTURED):
        if rng.random() < 0.25:
            for _ in range(rng.choice([1, 1, 2])):
                payment.refresh_from_db()
                # Mostly within what is left, sometimes more (staff mistype): that must be refused.
                left = max(1, payment.refundable)
                amount = rng.randint(1, left) if rng.random() < 0.7 else left + rng.randint(1, 100)
                world.maybe_fault()
                try:
                    refunds.payment_refund(
                        payment_id=payment.pk,
                        amount=amount,
                        reason="requested_by_customer",
                        requested_by="finance",
                    )
                    world.outcomes["refund requested"] += 1
                except refunds.RefundError:
                    world.outcomes["refund refused"] += 1
                    pending = sum(
                        r.amount for r in payment.refunds.filter(status=Refund.Status.PENDING)
                    )
                    assert amount > payment.refundable - pending
            world.run_tasks()

    # Stripe recovers; hours pass; the repair sweeps run (twice: a repair may queue more work).
    proxy.clear()
    later = timezone.now() + timedelta(hours=5)
    for _ in range(2):
        sweeps.start_timeouts(now=later)
        sweeps.abandoned_checkouts(now=later)
        sweeps.strays(now=later)
        queue.run()

    print(f"faults injected: {dict(world.faults)}")
    print(f"what happened: {dict(world.outcomes)}; task retries: {queue.retried}")
    print("sessions:", dict(Counter(ChargingSession.objects.values_list("status", flat=True))))
    print("payments:", dict(Counter(Payment.objects.values_list("status", flat=True))))
    check_money_rules(localstripe, proxy)


def trail(session):
    """The session's audit trail, to read on failure."""
    return [
        (e.kind, e.actor, e.from_status, e.to_status, e.message[:60])
        for e in session.events.order_by("pk")
    ]


def check_money_rules(localstripe, proxy):
    auth = ("sk_test_localstripe", "")
    captures = Counter(
        c.path.split("/")[3]
        for c in proxy.calls()
        if c.forwarded
        and c.method == "POST"
        and 200 <= c.status < 300
        and c.path.endswith("/capture")
    )
    live = [S.CREATED, S.AUTHORIZING, S.AUTHORIZED, S.STARTING, S.CHARGING, S.STOPPING]
    for payment in Payment.objects.select_related("session"):
        where = f"payment {payment.pk} ({payment.status}, session {payment.session.status})"
        assert payment.amount_captured <= payment.amount_held, where
        assert not (payment.status == P.AUTHORIZED and payment.session.status not in live), where
        assert payment.status not in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED), (
            f"{where} left open; its trail: {trail(payment.session)}"
        )
        assert payment.write_in_flight == "", where
        intent = payment.stripe_payment_intent_id
        captured = payment.status in (P.CAPTURED, P.PARTIALLY_REFUNDED, P.REFUNDED)
        assert captures[intent] == (1 if captured else 0), (
            f"{where}: {captures[intent]} captures at Stripe"
        )
        assert payment.amount_refunded <= payment.amount_captured, where
        succeeded = payment.refunds.filter(status=Refund.Status.SUCCEEDED)
        assert sum(r.amount for r in succeeded) == payment.amount_refunded, where
        receipts = Receipt.objects.filter(payment=payment)
        assert receipts.count() == (1 if captured else 0), where
        if captured:
            receipt = receipts.get()
            assert receipt.total_incl_vat == payment.amount_captured, where
            # Money rule 9: the VAT split is of what was charged and adds up to the cent.
            doc = receipt.document
            assert receipt.total_excl_vat + receipt.vat_amount == payment.amount_captured, where
            assert sum(v["net"] + v["vat"] for v in doc["vat_lines"]) == receipt.total_incl_vat
            assert doc["charged"] == payment.amount_captured, where
            printed = sum(i["gross"] for i in doc["items"]) + sum(a for _, a in doc["adjustments"])
            assert printed == payment.amount_captured, where
            # Every refund has its credit note, split by the same rule, within what was charged.
            notes = [r.credit_note for r in succeeded]
            for note in notes:
                assert note.receipt == receipt, where
                assert note.total_excl_vat + note.vat_amount == note.total_incl_vat, where
            assert sum(n.total_incl_vat for n in notes) == payment.amount_refunded, where
            if payment.status == P.REFUNDED:
                assert sum(n.total_excl_vat for n in notes) == receipt.total_excl_vat, where
                assert sum(n.vat_amount for n in notes) == receipt.vat_amount, where
            at_stripe = requests.get(
                f"{localstripe.base}/v1/refunds",
                params={"payment_intent": intent},
                auth=auth,
                timeout=10,
            ).json()["data"]
            ours = Counter(
                r["metadata"].get("refund") for r in at_stripe if r["metadata"].get("refund")
            )
            assert all(count == 1 for count in ours.values()), (
                f"{where}: a refund sent twice {ours}"
            )
            assert {str(r.pk) for r in succeeded} == set(ours), where
    # Stripe's side: no hold left behind, whether or not we know the intent.
    ours = {str(s) for s in ChargingSession.objects.values_list("public_id", flat=True)}
    for pi in localstripe.payment_intents():
        if pi["metadata"].get("session") in ours:
            assert pi["status"] != "requires_capture", f"{pi['id']} still holds money"
    assert Evse.objects.count() >= 1
