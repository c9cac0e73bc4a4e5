"""Payments a charger's own card terminal took (OCPP 2.1 NotifySettlement): recorded, not charged.

The terminal's PSP has settled the money already; we never call Stripe for it. What we add is the
record beside card-not-present payments (Payment.method = terminal), our price of the charge under
the same tariff engine (a settlement that differs by more than TERMINAL_SETTLEMENT_TOLERANCE_CENTS
is flagged for staff) and a receipt in the operator's numbered series, VAT split of the settled
amount. A repeated settlement (same PSP reference) finds the first one and changes nothing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from stations.csms.base import SettlementRefused, TerminalSettlement

from . import tasks
from .lookup import receipt_link
from .models import ChargingSession, Payment, Receipt
from .receipts import receipt_issue
from .states import PaymentStatus as P
from .states import SessionStatus as S
from .transitions import acting_as, flag_attention, queue_on_commit, record_event


class SettlementError(SettlementRefused):
    """A settlement we cannot record (nothing was recorded); the message says why."""


def cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def settlement_answer(settlement: TerminalSettlement) -> dict:
    """What the station is told (registered with stations.csms.base): the receipt's number and
    its signed link, for the terminal's QR code."""
    receipt = terminal_payment_record(settlement=settlement)
    return {"receipt_id": receipt.number[:50], "receipt_url": receipt_link(receipt, absolute=True)}


def terminal_payment_record(*, settlement: TerminalSettlement) -> Receipt:
    """Record a settled terminal payment for one ended charge and issue its receipt (once).

    `settlement.reference` names the charge (the session's csms_reference), `quote` is our price
    of it. Returns the receipt, the same one for a repeated settlement. Call inside the caller's
    transaction (it holds the charge's row lock).
    """
    reference, connector, quote = settlement.reference, settlement.connector, settlement.quote
    existing = _existing(settlement.psp_reference, reference)
    if existing is not None:
        return existing
    amount = cents(settlement.amount)
    if amount <= 0 or settlement.amount != settlement.amount.quantize(Decimal("0.01")):
        raise SettlementError("settlementAmount must be a positive amount in cents")
    evse = connector.evse
    tariff = connector.tariff_at(settlement.started_at)
    ours = cents(quote.total_incl_vat)
    with acting_as("csms"):
        try:
            with transaction.atomic():
                session = ChargingSession.objects.create(
                    evse=evse,
                    connector=connector,
                    status=S.FINISHED,
                    tariff_snapshot=tariff.ocpi,
                    time_zone=evse.location.time_zone,
                    csms_reference=reference,
                    csms_session_id=settlement.csms_session_id[:64],
                    kwh=settlement.kwh,
                    started_at=settlement.started_at,
                    measured_at=settlement.ended_at,
                    ended_at=settlement.ended_at,
                    cost_incl_vat=quote.total_incl_vat,
                    final_breakdown=quote.as_dict(),
                )
                payment = Payment.objects.create(
                    session=session,
                    method=Payment.Method.TERMINAL,
                    psp_reference=settlement.psp_reference,
                    status=P.CAPTURED,
                    currency=tariff.currency,
                    amount_held=amount,
                    amount_captured=amount,
                )
        except IntegrityError:
            # The same settlement arrived twice at once: the other one recorded it.
            existing = _existing(settlement.psp_reference, reference)
            if existing is None:
                raise
            return existing
        record_event(
            session,
            "terminal_settled",
            to_status=P.CAPTURED,
            amount=amount,
            stripe_id="",
            message=f"psp {settlement.psp_reference[:200]} at {settlement.settled_at.isoformat()}"
            + (f": {settlement.status_info[:200]}" if settlement.status_info else ""),
        )
        if abs(amount - ours) > settings.TERMINAL_SETTLEMENT_TOLERANCE_CENTS:
            flag_attention(
                session,
                f"the payment terminal settled {amount / 100:.2f} {payment.currency}; "
                f"our price of the charge is {ours / 100:.2f}",
            )
        receipt = receipt_issue(payment_id=payment.pk)
    queue_on_commit(tasks.receipt_render, receipt.pk)
    return receipt


def _existing(psp_reference: str, reference: str) -> Receipt | None:
    payment = Payment.objects.select_related("session").filter(psp_reference=psp_reference).first()
    if payment is None:
        return None
    if payment.session.csms_reference != reference:
        # Another charge was settled under this reference: its receipt is not this one's.
        raise SettlementError("that pspRef settled another charge")
    receipt = Receipt.objects.filter(payment=payment).first()
    return receipt if receipt is not None else receipt_issue(payment_id=payment.pk)
