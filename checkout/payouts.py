"""Payouts: the money Stripe sends to the bank, and which receipts each one contains (issue 11).

A payout.* webhook is a hint: the payout is retrieved from Stripe, and its balance transactions
(GET /v1/balance_transactions?payout=po_...) become PayoutLines linked to our payments and refunds.
Running it again for the same payout changes nothing twice.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q

from . import payments
from .models import Payment, Payout, PayoutLine, Refund

log = logging.getLogger(__name__)


def _match(txn: payments.BalanceState) -> tuple[Payment | None, Refund | None]:
    """Our payment (and refund) behind a balance transaction: by its id, its source, or its intent."""
    refund = None
    if txn.source.startswith("re_"):
        refund = (
            Refund.objects.select_related("payment")
            .filter(Q(stripe_refund_id=txn.source) | Q(stripe_balance_transaction_id=txn.id))
            .first()
        )
        if refund is not None:
            return refund.payment, refund
    lookup = Q(stripe_balance_transaction_id=txn.id)
    if txn.source.startswith(("ch_", "py_")):
        lookup |= Q(stripe_charge_id=txn.source)
    if txn.intent:
        lookup |= Q(stripe_payment_intent_id=txn.intent)
    return Payment.objects.filter(lookup).first(), None


def payout_line_record(payout: Payout, txn: payments.BalanceState) -> PayoutLine:
    payment, refund = _match(txn)
    line, _ = PayoutLine.objects.update_or_create(
        stripe_balance_transaction_id=txn.id,
        defaults={
            "payout": payout,
            "type": txn.type,
            "amount": txn.amount,
            "fee": txn.fee,
            "net": txn.net,
            "currency": txn.currency,
            "source": txn.source,
            "payment": payment,
            "refund": refund,
        },
    )
    return line


def payout_record(*, payout_id: str) -> str:
    """Create or update a payout from Stripe and map it to its balance transactions."""
    state = payments.payout(payout_id)
    with transaction.atomic():
        payout, _ = Payout.objects.select_for_update().update_or_create(
            stripe_payout_id=state.id,
            defaults={
                "amount": state.amount,
                "currency": state.currency,
                "status": state.status,
                "arrival_date": state.arrival_date,
                "automatic": state.automatic,
            },
        )
    lines = matched = 0
    try:
        for txn in payments.payout_transactions(payout_id):
            if txn.type == "payout":  # the payout's own withdrawal from the balance
                continue
            line = payout_line_record(payout, txn)
            lines += 1
            matched += line.payment_id is not None
    except payments.PaymentGatewayError as exc:
        if not exc.permanent:
            raise  # the task retries; the lines already written are written again, unchanged
        # Stripe lists the transactions of automatic payouts only (localstripe: of none).
        why = f"Stripe did not list this payout's balance transactions: {exc}"[:300]
        Payout.objects.filter(pk=payout.pk).update(lines_error=why)
        log.warning("payout %s (%s): %s", payout_id, state.status, why)
        return f"payout {payout_id} {state.status}: its transactions could not be listed"
    Payout.objects.filter(pk=payout.pk).update(lines_error="")
    return f"payout {payout_id} {state.status}: {lines} transaction(s), {matched} of ours"
