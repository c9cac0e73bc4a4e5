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


# The reads of a webhook's event and payment, compiled once per process and prepared per connection.
_stored_event = PreparedQuery(
    "stripe_event", lambda event_pk: StripeEvent.objects.filter(pk=event_pk), event_pk=STAND_IN_ID
)
_payment_of_intent = PreparedQuery(
    "payment_of_intent",
    lambda intent_id: Payment.objects.filter(stripe_payment_intent_id=intent_id),  # unique
    intent_id=STAND_IN_TEXT,
)

_insert_stripe_event = PreparedInsert(StripeEvent, unique=("event_id",))

# The states payment_sync acts on. An event about a payment past them (a capture's
# payment_intent.succeeded arrives after the capture is recorded) needs no Stripe call and changes
# nothing, so it is concluded as it is stored and no task is queued for it.
UNSETTLED = (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED)


def stripe_event_receive(payload: dict) -> int | None:
    """Store a verified webhook once by its event id (Stripe sends an event again until it is
    answered 2xx, sometimes twice at once). Returns the stored row's id for the events worker to
    process, or None: stored before, or about a settled payment (stored as processed)."""
    _, kind, intent_id = _subject(payload)
    event_type = payload.get("type") or ""
    payment = None
    if intent_id and _synced(kind, event_type):
        payment = _payment_of_intent.first(intent_id=intent_id)
    if payment is None or payment.status in UNSETTLED:
        return _insert_stripe_event(event_id=payload["id"], type=event_type, payload=payload)
    _insert_stripe_event(
        event_id=payload["id"],
        type=event_type,
        payload=payload,
        processed_at=timezone.now(),
        outcome=f"payment {payment.pk}: nothing to do ({payment.status} when received)",
    )
    return None


def _subject(payload: dict) -> tuple[dict, str | None, str | None]:
    """What an event is about: its object, the object's kind, and the PaymentIntent's id if any."""
    obj = (payload.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    return obj, kind, obj.get("id") if kind == "payment_intent" else obj.get("payment_intent")


def _synced(kind: str | None, event_type: str) -> bool:
    """Whether the event is handled by syncing its payment with Stripe (payment_sync), not by
    recording a payout, a dispute or a refund."""
    refund = kind in ("charge", "refund") and event_type.startswith(("charge.refund", "refund."))
    return kind not in ("payout", "dispute") and not refund


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


def stripe_event_process(*, event_pk: int) -> None:
    """Act on a stored webhook. Not one transaction: the services it calls commit their own steps
    (a Stripe write must be marked in flight before it is sent), and running twice changes nothing."""
    event = _stored_event.get(event_pk=event_pk)
    if event.processed_at:
        return
    obj, kind, intent_id = _subject(event.payload)
    # payout.paid, .updated, .failed...: about many payments, not one.
    if kind == "payout" and obj.get("id"):
        outcome = payouts.payout_record(payout_id=obj["id"])
        StripeEvent.objects.filter(pk=event_pk, processed_at=None).update(
            processed_at=timezone.now(), outcome=outcome[:300]
        )
        return
    payment = _payment_of_intent.first(intent_id=intent_id) if intent_id else None
    if payment is None:
        outcome = f"no payment for {intent_id or 'this object'}: stored for staff"
        log.warning("stripe event %s (%s): %s", event.event_id, event.type, outcome)
    elif kind == "dispute":
        dispute_record(payment=payment, dispute=obj)
        outcome = f"dispute recorded on payment {payment.pk}"
    elif not _synced(kind, event.type):
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
