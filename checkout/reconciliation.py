"""Reconciliation with Stripe: our books against Stripe's, payment by payment (issue 11).

The daily task (settings.CELERY_BEAT_SCHEDULE "money-reconcile-stripe") checks every captured,
refunded and canceled payment changed in the last RECONCILIATION_DAYS days against its
PaymentIntent (status, amount received), its refunds and its charge's balance transaction (fee,
net). A difference becomes a ReconciliationIssue: one open issue per payment and kind, seen again
on the next run rather than repeated; staff mark it resolved and it stays as history. What a
capture or refund could not store at once (a balance transaction not yet booked) is filled here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import payments, services
from .models import Payment, ReconciliationIssue, Refund
from .states import PaymentStatus as P
from .transitions import lock_payment

log = logging.getLogger(__name__)

K = ReconciliationIssue.Kind
# What Stripe's intent must say for each of our final statuses.
EXPECTED_INTENT = {
    P.CAPTURED: "succeeded",
    P.PARTIALLY_REFUNDED: "succeeded",
    P.REFUNDED: "succeeded",
    P.CANCELED: "canceled",
}
BATCH = 200  # payments read from our database at a time


def _money(cents: int | None) -> str:
    return "-" if cents is None else f"{cents / 100:.2f}"


def _release(payment: Payment, state: payments.IntentState, refund: payments.RefundState) -> bool:
    """localstripe books a partial capture as the whole hold plus a refund of the rest (no metadata);
    Stripe books only what was captured (and reports amount_received). That refund is not a refund."""
    return (
        state.amount_received is None
        and not refund.reference
        and refund.amount == payment.amount_held - payment.amount_captured
    )


def compare(
    payment: Payment,
    state: payments.IntentState,
    stripe_refunds: list[payments.RefundState],
    our_refunds: list[Refund],
) -> dict[str, tuple[str, str]]:
    """The differences between one payment and Stripe: {kind: (ours, Stripe's)}. Pure: no writes."""
    found: dict[str, tuple[str, str]] = {}
    expected = EXPECTED_INTENT[payment.status]
    if state.status != expected:
        received = "" if state.amount_received is None else f", {_money(state.amount_received)}"
        found[K.STATUS] = (payment.status, f"{state.status}{received}")
    if expected != "succeeded" or state.status != "succeeded":
        return found
    charge = state.charge
    received = state.amount_received
    if received is None and charge is not None:
        received = charge.amount_captured
    if received is not None and received != payment.amount_captured:
        found[K.CAPTURED] = (_money(payment.amount_captured), _money(received))

    if not any(r.status == Refund.Status.PENDING for r in our_refunds):  # none in flight
        theirs = [
            r
            for r in stripe_refunds
            if r.status in ("succeeded", "pending") and not _release(payment, state, r)
        ]
        ours = [r for r in our_refunds if r.status == Refund.Status.SUCCEEDED]
        their_total = sum(r.amount for r in theirs)
        if their_total != payment.amount_refunded:
            found[K.REFUNDED] = (_money(payment.amount_refunded), _money(their_total))
        our_ids = {r.stripe_refund_id for r in ours} | {str(r.pk) for r in our_refunds}
        unknown = [r.id for r in theirs if r.id not in our_ids and r.reference not in our_ids]
        if unknown:
            found[K.REFUND_UNKNOWN] = ("", ", ".join(unknown)[:200])
        their_ids = {r.id for r in stripe_refunds if r.status in ("succeeded", "pending")}
        missing = [r.stripe_refund_id or f"refund {r.pk}" for r in ours]
        missing = [ref for ref in missing if ref not in their_ids]
        if missing:
            found[K.REFUND_MISSING] = (", ".join(missing)[:200], "")

    if charge is not None:
        if payment.stripe_charge_id and payment.stripe_charge_id != charge.id:
            found[K.BALANCE] = (payment.stripe_charge_id, charge.id)
        booked = services.charge_booked(
            charge, captured=payment.amount_captured, currency=payment.currency
        )
        txn = booked.get("stripe_balance_transaction_id")
        if txn and payment.stripe_balance_transaction_id:
            if txn != payment.stripe_balance_transaction_id:
                found[K.BALANCE] = (payment.stripe_balance_transaction_id, txn)
            elif (payment.stripe_fee, payment.stripe_net) != (
                booked["stripe_fee"],
                booked["stripe_net"],
            ):
                found[K.FEE] = (
                    f"fee {_money(payment.stripe_fee)}, net {_money(payment.stripe_net)}",
                    f"fee {_money(booked['stripe_fee'])}, net {_money(booked['stripe_net'])}",
                )
    _compare_refunds_booked(found, stripe_refunds, our_refunds)
    return found


def _compare_refunds_booked(found, stripe_refunds, our_refunds) -> None:
    """Each refund's balance transaction, fee and net as we stored them, against Stripe's."""
    theirs = {r.id: r.balance for r in stripe_refunds if r.balance is not None}
    for refund in our_refunds:
        booked = theirs.get(refund.stripe_refund_id)
        if booked is None or not refund.stripe_balance_transaction_id:
            continue
        if booked.id != refund.stripe_balance_transaction_id:
            found.setdefault(
                K.BALANCE,
                (f"{refund.stripe_refund_id}: {refund.stripe_balance_transaction_id}", booked.id),
            )
        elif (refund.stripe_fee, refund.stripe_net) != (booked.fee, booked.net):
            ours = f"fee {_money(refund.stripe_fee)}, net {_money(refund.stripe_net)}"
            found.setdefault(
                K.FEE,
                (
                    f"{refund.stripe_refund_id}: {ours}",
                    f"fee {_money(booked.fee)}, net {_money(booked.net)}",
                ),
            )


def _fill_booked(
    payment: Payment, state: payments.IntentState, stripe_refunds: list[payments.RefundState]
) -> None:
    """Store what Stripe booked where a capture or refund could not yet (never overwrite: a
    difference is an issue for staff, not something to paper over)."""
    if payment.status == P.CANCELED or state.status != "succeeded":
        return
    booked = services.charge_booked(
        state.charge, captured=payment.amount_captured, currency=payment.currency
    )
    changes = {
        name: value
        for name, value in booked.items()
        if value is not None and getattr(payment, name) in ("", None)
    }
    if changes:  # .update(): filling in is not a change of the payment (updated_at stays)
        Payment.objects.filter(pk=payment.pk).update(**changes)
    by_id = {r.id: r for r in stripe_refunds if r.balance is not None}
    for refund in payment.refunds.filter(stripe_balance_transaction_id="").exclude(
        stripe_refund_id=""
    ):
        found = by_id.get(refund.stripe_refund_id)
        if found:
            Refund.objects.filter(pk=refund.pk).update(
                stripe_balance_transaction_id=found.balance.id,
                stripe_fee=found.balance.fee,
                stripe_net=found.balance.net,
            )


def issue_record(payment: Payment, kind: str, ours: str, stripe: str, now) -> bool:
    """One open issue per payment and kind: a new one, or the open one seen again. True if new.
    Called with the payment row locked, so two runs cannot both create it."""
    issue = ReconciliationIssue.objects.filter(payment=payment, kind=kind, resolved_at=None).first()
    if issue is not None:
        ReconciliationIssue.objects.filter(pk=issue.pk).update(
            ours=ours[:200], stripe=stripe[:200], last_seen_at=now
        )
        return False
    ReconciliationIssue.objects.create(
        payment=payment,
        kind=kind,
        ours=ours[:200],
        stripe=stripe[:200],
        found_at=now,
        last_seen_at=now,
    )
    log.warning(
        "reconciliation: payment %s: %s: ours %s, Stripe %s", payment.pk, kind, ours, stripe
    )
    return True


def payment_reconcile(*, payment_id: int, now=None) -> dict[str, tuple[str, str]]:
    """Check one payment against Stripe, fill what was not yet booked, record the differences."""
    now = now or timezone.now()
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in EXPECTED_INTENT or not payment.stripe_payment_intent_id:
        return {}
    state = payments.retrieve(payment.stripe_payment_intent_id, card=False)
    stripe_refunds = (
        payments.refunds(payment.stripe_payment_intent_id) if state.status == "succeeded" else []
    )
    with transaction.atomic():
        locked = lock_payment(pk=payment_id)
        if (locked.status, locked.amount_refunded, locked.amount_captured) != (
            payment.status,
            payment.amount_refunded,
            payment.amount_captured,
        ):
            return {}  # it moved while we asked Stripe: the next run compares the new state
        _fill_booked(locked, state, stripe_refunds)
        locked.refresh_from_db()
        found = compare(locked, state, stripe_refunds, list(locked.refunds.all()))
        for kind, (ours, stripe) in found.items():
            issue_record(locked, kind, ours, stripe, now)
    return found


def payment_fill_booked(*, payment_id: int) -> bool:
    """The follow-up to a capture whose balance transaction was not yet there. True once stored."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.stripe_balance_transaction_id or payment.status == P.CANCELED:
        return True
    state = payments.retrieve(payment.stripe_payment_intent_id, card=False)
    with transaction.atomic():
        locked = lock_payment(pk=payment_id)
        _fill_booked(locked, state, [])
        locked.refresh_from_db()
        return bool(locked.stripe_balance_transaction_id)


def reconcile(*, since, until, now=None) -> dict[str, int]:
    """Every captured, refunded and canceled payment changed in [since, until), read in batches by
    id (never all at once). A payment Stripe cannot tell us about is an issue; a transient Stripe
    error skips it until the next run (its open issues stay open)."""
    now = now or timezone.now()
    counts = {"payments": 0, "with_issues": 0, "skipped": 0}
    payments_in_period = (
        Payment.objects.filter(
            status__in=list(EXPECTED_INTENT), updated_at__gte=since, updated_at__lt=until
        )
        .exclude(stripe_payment_intent_id="")
        .order_by("pk")
    )
    last = 0
    while True:
        batch = list(payments_in_period.filter(pk__gt=last).values_list("pk", flat=True)[:BATCH])
        if not batch:
            return counts
        for pk in batch:
            counts["payments"] += 1
            try:
                found = payment_reconcile(payment_id=pk, now=now)
            except payments.PaymentGatewayError as exc:
                if not exc.permanent:
                    log.warning("reconciliation: payment %s skipped: %s", pk, exc)
                    counts["skipped"] += 1
                    continue
                with transaction.atomic():
                    issue_record(lock_payment(pk=pk), K.UNREADABLE, "", str(exc)[:200], now)
                found = {K.UNREADABLE: ("", str(exc))}
            counts["with_issues"] += bool(found)
        last = batch[-1]


def reconcile_recent(now=None) -> dict[str, int]:
    """The daily run: the last RECONCILIATION_DAYS days, so a missed day is still covered."""
    now = now or timezone.now()
    counts = reconcile(since=now - timedelta(days=settings.RECONCILIATION_DAYS), until=now, now=now)
    log.info("reconciliation with Stripe: %s", counts)
    return counts


def issue_resolve(*, issue_id: int, by: str, now=None) -> bool:
    """Staff say an issue is dealt with; it stays as history. False if it was already resolved."""
    return bool(
        ReconciliationIssue.objects.filter(pk=issue_id, resolved_at=None).update(
            resolved_at=now or timezone.now(), resolved_by=by[:150]
        )
    )
