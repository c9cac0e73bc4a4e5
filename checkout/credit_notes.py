"""Credit notes: a refund documented against its receipt, in a gapless series of its own.

One per succeeded refund. The refunded amount is split into net and VAT by the receipt's rule
(checkout/vat.py), across what is left to credit at each of the receipt's rates, so credit notes
never take more VAT back than the receipt charged. A refund made before its receipt waits for it
(receipt_issue queues the credit note). Issued under the counter's lock; the PDF is rendered after.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import doc_format, labels, vat
from .models import CreditNote, CreditNoteCounter, Invoice, Receipt, Refund
from .receipts import (
    Sheet,
    first_zone,
    local_time,
    mail_document,
    money_in,
    receipt_document,
    series_zone,
    take_number,
)


def credit_note_issue(*, refund_id: int) -> CreditNote | None:
    """Issue the credit note of a succeeded refund (a retry returns the existing one)."""
    with transaction.atomic():
        refund = (
            Refund.objects.select_for_update(of=("self",))
            .select_related("payment__session__evse__location__operator")
            .get(pk=refund_id)
        )
        existing = CreditNote.objects.filter(refund=refund).first()
        if existing or refund.status != Refund.Status.SUCCEEDED:
            return existing
        # Locked: two refunds of one receipt are credited one after the other, on what is left.
        receipt = Receipt.objects.select_for_update().filter(payment=refund.payment_id).first()
        if receipt is None:
            return None  # receipt_issue queues this again once the receipt exists
        # A receipt from before documents were stored: its split, by the same rule, from the payment.
        document = receipt.document or receipt_document(refund.payment, receipt.operator).as_dict()
        credited: dict[Decimal, tuple[int, int]] = {}  # rate -> (gross, net) credited so far
        for note in receipt.credit_notes.all():
            for line in note.document["vat_lines"]:
                gross, net = credited.get(Decimal(line["rate"]), (0, 0))
                credited[Decimal(line["rate"])] = (gross + line["gross"], net + line["net"])
        rates = [
            (Decimal(line["rate"]), line["gross"], *credited.get(Decimal(line["rate"]), (0, 0)))
            for line in document["vat_lines"]
        ]
        lines = vat.split_refund(refund.amount, rates)
        net, tax = sum(v.net for v in lines), sum(v.vat for v in lines)
        location = refund.payment.session.evse.location
        operator = receipt.operator
        year, sequence, issued_at = take_number(
            CreditNoteCounter, operator, series_zone(operator, location)
        )
        note = CreditNote.objects.create(
            refund=refund,
            receipt=receipt,
            operator=operator,
            year=year,
            sequence=sequence,
            number=f"{operator.receipt_prefix}-CN-{year}-{sequence:06d}",
            issued_at=issued_at,
            total_incl_vat=refund.amount,
            total_excl_vat=net,
            vat_amount=tax,
            document={
                "refunded": refund.amount,
                "vat_lines": [
                    {"rate": vat.fmt_rate(v.rate), "gross": v.gross, "net": v.net, "vat": v.vat}
                    for v in lines
                ],
                "net": net,
                "vat": tax,
            },
        )
        refund.payment.session.events.create(
            kind="credit_note_issued", message=note.number, amount=note.total_incl_vat
        )
    return note


def credit_note_render(*, credit_note_id: int) -> CreditNote:
    with transaction.atomic():
        note = (
            CreditNote.objects.select_for_update(of=("self",))
            .select_related("operator", "receipt", "refund__payment__session__evse__location")
            .get(pk=credit_note_id)
        )
        if note.rendered_at is None:
            session = note.refund.payment.session
            with translation.override(session.language or settings.LANGUAGE_CODE):
                note.pdf = _render(note, session)
            note.rendered_at = timezone.now()
            note.save(update_fields=["pdf", "rendered_at"])
    return note


def credit_note_pdf(note: CreditNote) -> bytes:
    if note.rendered_at is None:
        note = credit_note_render(credit_note_id=note.pk)
    return bytes(note.pdf)


def _render(note: CreditNote, session) -> bytes:
    operator, receipt = note.operator, note.receipt
    location = session.evse.location
    local = local_time(first_zone(location.time_zone, session.time_zone))
    currency_money = money_in(note.refund.payment.currency)
    doc = note.document

    def money(amount: int) -> str:  # money going back to the driver is printed negative
        return currency_money(-amount)

    page = Sheet(_("Credit note %(number)s") % {"number": note.number}, operator.legal_name)
    page.seller(operator)
    page.line(_("Credit note %(number)s") % {"number": note.number}, size=13, bold=True, gap=7)
    page.row(_("Date of issue"), local(note.issued_at))
    page.row(
        _("Corrects receipt"),
        f"{receipt.number} ({local(receipt.issued_at)})",
    )
    invoice = Invoice.objects.filter(receipt=receipt).first()
    if invoice:  # the receipt was replaced by a business invoice: the correction is of that
        page.row(_("Corrects invoice"), f"{invoice.number} ({local(invoice.issued_at)})")
        page.row(_("Buyer"), f"{invoice.buyer_name}, {invoice.buyer_vat_id}")
    page.row(_("EVSE ID"), session.evse.evse_id)
    page.row(_("Reason"), labels.refund_reason(note.refund.reason))
    page.gap()
    page.vat_table(doc["vat_lines"], country=location.country, money=money)
    page.row(_("Net (excl. VAT)"), money(doc["net"]))
    page.row(_("VAT"), money(doc["vat"]))
    page.row(_("Refunded (incl. VAT)"), money(doc["refunded"]), bold=True)
    page.gap(6)
    if operator.support_contact:
        page.line(_("Questions? %(contact)s") % {"contact": operator.support_contact}, size=9)
    return page.finish()


def credit_note_email(*, credit_note_id: int) -> None:
    """E-mail the credit note to the driver who gave an address, in the language of the session."""
    from .lookup import receipt_link  # lookup reads receipts' time zones: imported here, not above

    with transaction.atomic():
        note = (
            CreditNote.objects.select_for_update(of=("self",))
            .select_related("operator", "receipt", "refund__payment__session__evse")
            .get(pk=credit_note_id)
        )
        session = note.refund.payment.session
        if note.emailed_at or not session.email:
            return
        mail_document(
            note,
            session,
            "credit_note",
            lambda: {
                "evse": session.evse.evse_id,
                "amount": doc_format.money(note.total_incl_vat, note.refund.payment.currency),
                "number": note.number,
                "receipt": note.receipt.number,
                "support": note.operator.support_contact,
                "link": receipt_link(note.receipt, absolute=True),
            },
            credit_note_pdf,
        )
