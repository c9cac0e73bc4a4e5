"""Money given back after a capture: asked for by staff, sent to Stripe exactly once."""

from __future__ import annotations

from django.db import transaction

from . import payments, tasks
from .models import Payment, Refund
from .states import PaymentStatus as P
from .transitions import (
    flag_attention,
    lock_payment,
    queue_on_commit,
    record_event,
    set_payment_status,
)


class RefundError(Exception):
    """A refund staff asked for that we refuse; the message is for them, and nothing was refunded."""


def refunds_seen(payment: Payment) -> str:
    """What a refund form was shown: the payment's refunds so far (see payment_refund's `seen`)."""
    return (
        ",".join(str(pk) for pk in payment.refunds.order_by("pk").values_list("pk", flat=True))
        or "none"
    )


def refunds_pending(payment: Payment) -> int:
    """What staff asked to refund that Stripe has not confirmed yet: it counts against what is left."""
    return sum(
        payment.refunds.filter(status=Refund.Status.PENDING).values_list("amount", flat=True)
    )


def payment_refund(
    *,
    payment_id: int,
    amount: int,
    reason: str,
    note: str = "",
    requested_by: str,
    seen: str | None = None,
) -> Refund:
    """Staff give money back: never more than was captured and not yet refunded (or being refunded).

    `seen` is refunds_seen() as the form showed it: a form submitted twice, or after a colleague's
    refund, is refused instead of refunding on stale figures.
    """
    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        if payment.status not in (P.CAPTURED, P.PARTIALLY_REFUNDED):
            raise RefundError("Only a captured payment can be refunded. Nothing was refunded.")
        if payment.is_terminal:
            raise RefundError(
                "This was paid at the charger's payment terminal: refund it with that terminal's "
                "payment provider. Nothing was refunded."
            )
        if seen is not None and seen != refunds_seen(payment):
            raise RefundError(
                "Another refund was requested for this payment since this page was opened. "
                "Check the amounts and submit again. Nothing was refunded."
            )
        available = payment.refundable - refunds_pending(payment)
        if amount <= 0 or amount > available:
            raise RefundError(
                f"A refund must be between 0.01 and {available / 100:.2f} {payment.currency}. "
                "Nothing was refunded."
            )
        if reason not in Refund.Reason.values:
            raise RefundError("Please choose a reason. Nothing was refunded.")
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            reason=reason,
            note=note[:300],
            requested_by=requested_by,
        )
        record_event(
            payment.session, "refund_requested", amount=amount, message=f"{reason}: {note}"[:500]
        )
        queue_on_commit(tasks.refund_send, refund.pk)
    return refund


def refund_send(*, refund_id: int) -> None:
    """Send a refund to Stripe once: first look for it there (an earlier attempt may have landed)."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        payment = lock_payment(pk=refund.payment_id)
        if refund.status != Refund.Status.PENDING:
            return
        intent = payment.stripe_payment_intent_id
        state = next((r for r in payments.refunds(intent) if r.reference == str(refund.pk)), None)
        if state is None:
            try:
                state = payments.refund(
                    intent,
                    amount=refund.amount,
                    reference=str(refund.pk),
                    reason=refund.reason,
                    idempotency_key=f"payment-{payment.pk}-refund-{refund.pk}",
                )
            except payments.PaymentGatewayError as exc:
                if not exc.permanent:
                    raise
                refund.status, refund.failure_message = Refund.Status.FAILED, str(exc)[:300]
                refund.save()
                flag_attention(
                    payment.session, f"refund of {refund.amount / 100:.2f} failed at Stripe: {exc}"
                )
                return
        refund.stripe_refund_id = state.id
        if state.balance is not None:
            refund.stripe_balance_transaction_id = state.balance.id
            refund.stripe_fee, refund.stripe_net = state.balance.fee, state.balance.net
        if state.status in ("failed", "canceled"):
            refund.status, refund.failure_message = Refund.Status.FAILED, f"Stripe: {state.status}"
            refund.save()
            flag_attention(
                payment.session, f"refund of {refund.amount / 100:.2f} {state.status} at Stripe"
            )
            return
        # "pending" at Stripe (some banks confirm later) counts as given back: it is on its way.
        refund.status = Refund.Status.SUCCEEDED
        refund.save()
        queue_on_commit(tasks.receipt_credit_note, refund.pk)  # documented once there is a receipt
        refunded = payment.amount_refunded + refund.amount
        target = P.REFUNDED if refunded >= payment.amount_captured else P.PARTIALLY_REFUNDED
        if not set_payment_status(
            payment,
            target,
            amount=refund.amount,
            message=f"refund {state.id}",
            amount_refunded=refunded,
        ):
            # A further partial refund: the status stays, the total grows.
            payment.amount_refunded = refunded
            payment.save()
            record_event(payment.session, "refunded", amount=refund.amount, stripe_id=state.id)
