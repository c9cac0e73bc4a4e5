"""Stripe webhooks after they are stored: each is a hint to ask Stripe, never the truth itself.

Payments are brought in line with the retrieved PaymentIntent through the services; disputes are
recorded; refunds made outside this app (Stripe's dashboard) are flagged for staff; payouts are
mapped to the payments and refunds they paid out (checkout/payouts.py).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from directpay.prepared import STAND_IN_ID, STAND_IN_TEXT, PreparedInsert, PreparedQuery

from . import payments, payouts, services
from .models import Dispute, Payment, StripeEvent
from .states import PaymentStatus as P
from .transitions import flag_attention, lock_session, record_event

log = logging.getLogger(__name__)


def dispute_record(*, payment: Payment, dispute: dict) -> Dispute:
    """A chargeback: keep it (and its status as it moves) for finance to answer."""
    with transaction.atomic():
        session = lock_session(pk=payment.session_id)
        record, created = Dispute.objects.update_or_create(
            stripe_dispute_id=dispute["id"],
            defaults={
                "payment": payment,
                "amount": int(dispute.get("amount") or 0),
                "reason": dispute.get("reason") or "",
                "status": dispute.get("status") or "",
            },
        )
        if created:
            flag_attention(
                session,
                f"the driver's bank opened a dispute ({record.reason or 'no reason given'})",
            )
        record_event(
            session,
            "dispute",
            amount=record.amount,
            stripe_id=record.stripe_dispute_id,
            message=record.status,
        )
    return record


_insert_stripe_event = PreparedInsert("insert_stripe_event", StripeEvent, unique=("event_id",))


def stripe_event_record(payload: dict) -> int | None:
    """Store a verified webhook once by its event id: the new row's id, or None if it was stored
    before (Stripe sends an event again until it is answered 2xx, sometimes twice at once)."""
    return _insert_stripe_event(
        event_id=payload["id"], type=payload.get("type", ""), payload=payload
    )


def payment_sync(payment: Payment) -> str:
    """Bring our payment in line with Stripe's intent (retrieved, never taken from an event body).
    `payment` as just read, unlocked: each service it calls locks and checks again."""
    if payment.status in (P.PENDING, P.REQUIRES_ACTION):
        services.payment_refresh(session_id=payment.session_id)
        return "checked against Stripe"
    if payment.status != P.AUTHORIZED or not payment.stripe_payment_intent_id:
        return "nothing to do"
    state = payments.retrieve(payment.stripe_payment_intent_id, card=False)
    if state.status == "canceled":
        services.payment_canceled_at_stripe(payment_id=payment.pk)
        return "hold canceled at Stripe"
    if state.status == "succeeded" and payment.write_in_flight == "capture":
        services.payment_capture(payment_id=payment.pk)  # its answer was lost; this records it
        return "capture recorded"
    return f"intent {state.status}: nothing to do"


# The events worker's two reads per event, compiled once per process and prepared per connection.
_stored_event = PreparedQuery(
    "stripe_event", lambda event_pk: StripeEvent.objects.filter(pk=event_pk), event_pk=STAND_IN_ID
)
_payment_of_intent = PreparedQuery(
    "payment_of_intent",
    lambda intent_id: Payment.objects.filter(stripe_payment_intent_id=intent_id),  # unique
    intent_id=STAND_IN_TEXT,
)


def stripe_event_process(*, event_pk: int) -> None:
    """Act on a stored webhook. Not one transaction: the services it calls commit their own steps
    (a Stripe write must be marked in flight before it is sent), and running twice changes nothing."""
    event = _stored_event.get(event_pk=event_pk)
    if event.processed_at:
        return
    obj = (event.payload.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    # payout.paid, .updated, .failed...: about many payments, not one.
    if kind == "payout" and obj.get("id"):
        outcome = payouts.payout_record(payout_id=obj["id"])
        StripeEvent.objects.filter(pk=event_pk, processed_at=None).update(
            processed_at=timezone.now(), outcome=outcome[:300]
        )
        return
    intent_id = obj.get("id") if kind == "payment_intent" else obj.get("payment_intent")
    payment = _payment_of_intent.first(intent_id=intent_id) if intent_id else None
    if payment is None:
        outcome = f"no payment for {intent_id or 'this object'}: stored for staff"
        log.warning("stripe event %s (%s): %s", event.event_id, event.type, outcome)
    elif kind == "dispute":
        dispute_record(payment=payment, dispute=obj)
        outcome = f"dispute recorded on payment {payment.pk}"
    elif kind in ("charge", "refund") and event.type.startswith(("charge.refund", "refund.")):
        outcome = f"payment {payment.pk}: {refunds_check(payment_id=payment.pk)}"
    else:
        outcome = f"payment {payment.pk}: {payment_sync(payment)}"
    StripeEvent.objects.filter(pk=event_pk, processed_at=None).update(
        processed_at=timezone.now(), outcome=outcome[:300]
    )


def refunds_check(*, payment_id: int) -> str:
    """A refund seen at Stripe that this app did not make (one from the dashboard) is shown to staff."""
    payment = Payment.objects.select_related("session").get(pk=payment_id)
    ours = set(payment.refunds.values_list("stripe_refund_id", flat=True))
    # Some Stripe stand-ins show a partial capture as a refund of the uncaptured rest: not a refund.
    release = payment.amount_held - payment.amount_captured
    foreign = [
        r
        for r in payments.refunds(payment.stripe_payment_intent_id)
        if r.id not in ours and not r.reference and r.amount != release
    ]
    if foreign:
        with transaction.atomic():
            flag_attention(
                lock_session(pk=payment.session_id),
                f"refunds made at Stripe, not here: {', '.join(r.id for r in foreign)}",
            )
        return f"{len(foreign)} refund(s) made outside this app"
    return "refunds match"
