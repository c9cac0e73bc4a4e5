"""Full VAT invoices for business drivers, issued after the fact in a gapless series of their own.

A driver who needs the company's name and VAT id on the document asks for it once the charge is
captured. The invoice carries what EU VAT Directive Art. 226 asks for (seller and buyer names,
addresses and VAT ids, number, date of issue, date of supply, quantity and nature, taxable amount
per rate, rate, VAT, total) and the receipt's money unchanged: its VAT split was stored when its
number was taken (money rule 9), so the invoice copies it rather than computing anew. It replaces
the simplified receipt, whose number stays used (Receipt.invoice marks it). One per receipt.

The VAT id's format is checked per country (python-stdnum); a VIES look-up is optional
(INVOICE_VIES_CHECK, off by default) and goes through the guarded client directpay/outbound.py.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

from directpay import outbound

from . import receipts, tasks
from .models import Invoice, InvoiceCounter, Receipt
from .states import PaymentStatus as P
from .transitions import queue_on_commit

log = logging.getLogger(__name__)

# Greece's VAT ids start with EL, not its ISO code GR.
_VAT_PREFIX = {"GR": "EL"}


def VAT_ID_INVALID() -> str:
    return _(
        "This is not a valid VAT id for the country chosen. Please check the digits; "
        "the country prefix (e.g. DE, NL, FR, BE) may be left out."
    )


class InvoiceRefused(Exception):
    """The request cannot become an invoice; the message is safe to show the driver, next to
    `field` (a form field's name) or above the form (None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Buyer:
    name: str
    address: str
    country: str  # ISO 3166-1 alpha-2
    vat_id: str  # compact, with its country prefix (e.g. DE136695976)


def buyer_vat_id(country: str, vat_id: str) -> str | None:
    """The VAT id, compact and prefixed, if its format is valid for `country`'s EU scheme; else None.

    A number typed without its prefix gets the country's; one with another country's prefix is refused.
    """
    country = country.strip().upper()
    if country.lower() not in eu_vat.MEMBER_STATES or country == "XI":
        return None
    prefix = _VAT_PREFIX.get(country, country)
    typed = re.sub(r"[\s.\-/:]", "", vat_id).upper()
    if typed[:2] == "GR" and prefix == "EL":
        typed = typed[2:]
    number = typed if typed[:2] == prefix else prefix + typed
    try:
        number = eu_vat.validate(number)
    except ValidationError:
        return None
    return number if number[:2] == prefix else None


def vies_lookup(vat_id: str) -> bool | None:
    """Ask the EU's VIES service whether `vat_id` is registered: True/False, None if it cannot say.

    Only with INVOICE_VIES_CHECK on, and only through the guarded client (directpay/outbound.py).
    VIES is often down for one member state or another: then the format check alone decides.
    """
    try:
        response = outbound.request(
            "POST",
            settings.INVOICE_VIES_URL,
            json={"countryCode": vat_id[:2], "vatNumber": vat_id[2:]},
            timeout=settings.INVOICE_VIES_TIMEOUT_SECONDS,
            max_bytes=64 * 1024,
        )
        answer = response.json() if response.status_code == 200 else {}
    except (outbound.OutboundError, ValueError):
        answer = {}
    if not isinstance(answer, dict) or not isinstance(answer.get("valid"), bool):
        log.warning("VIES could not check a %s VAT id; issuing on the format check", vat_id[:2])
        return None
    return answer["valid"]


def buyer_check(*, name: str, address: str, country: str, vat_id: str) -> tuple[Buyer, bool | None]:
    """The buyer as it goes on the invoice, and VIES's answer (None when not asked)."""
    name, address = name.strip(), address.strip()
    if not name or not address:
        raise InvoiceRefused(_("Please enter the company's name and address."))
    number = buyer_vat_id(country, vat_id)
    if number is None:
        raise InvoiceRefused(VAT_ID_INVALID(), field="vat_id")
    registered = vies_lookup(number) if settings.INVOICE_VIES_CHECK else None
    if registered is False:
        raise InvoiceRefused(
            _("The EU's VIES service does not know this VAT id. Please check it."), field="vat_id"
        )
    return Buyer(
        name=name, address=address, country=country.strip().upper(), vat_id=number
    ), registered


def invoice_issue(*, receipt_id: int, buyer: Buyer, vies_valid: bool | None = None) -> Invoice:
    """Issue the invoice that replaces a receipt; a second request returns the first invoice.

    The receipt's row lock serialises two presses of the button; the invoice counter's lock keeps
    the series gapless (numbers taken and committed together).
    """
    with transaction.atomic():
        receipt = (
            Receipt.objects.select_for_update(of=("self",))
            .select_related("payment__session__evse__location", "operator")
            .get(pk=receipt_id)
        )
        existing = Invoice.objects.filter(receipt=receipt).first()
        if existing:
            return existing
        payment = receipt.payment
        if payment.status not in (P.CAPTURED, P.PARTIALLY_REFUNDED):
            raise InvoiceRefused(
                _("This charge was refunded in full: there is nothing to invoice.")
            )
        session = payment.session
        location = session.evse.location
        operator = receipt.operator
        # The receipt's stored split; a receipt from before documents were stored: same rule, same money.
        document = receipt.document or receipts.receipt_document(payment, operator).as_dict()
        year, sequence, issued_at = receipts.take_number(
            InvoiceCounter, operator, receipts.series_zone(operator, location)
        )
        invoice = Invoice.objects.create(
            receipt=receipt,
            operator=operator,
            year=year,
            sequence=sequence,
            number=f"{operator.receipt_prefix}-INV-{year}-{sequence:06d}",
            issued_at=issued_at,
            buyer_name=buyer.name,
            buyer_address=buyer.address,
            buyer_country=buyer.country,
            buyer_vat_id=buyer.vat_id,
            vies_valid=vies_valid,
            total_incl_vat=receipt.total_incl_vat,
            total_excl_vat=receipt.total_excl_vat,
            vat_amount=receipt.vat_amount,
            document=document,
        )
        session.events.create(
            kind="invoice_issued",
            message=f"{invoice.number} replaces receipt {receipt.number}",
            amount=invoice.total_incl_vat,
        )
        # The PDFs after commit, on the receipts queue: the invoice's, and the receipt's again
        # with its "replaced by" mark.
        queue_on_commit(tasks.receipt_invoice_render, invoice.pk)
    return invoice


def invoice_render(*, invoice_id: int) -> Invoice:
    """Render and store the invoice's PDF (once; a retry finds it rendered)."""
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related(
                "operator", "receipt__payment__session__evse__location", "receipt__payment"
            )
            .get(pk=invoice_id)
        )
        if invoice.rendered_at is None:
            session = invoice.receipt.payment.session
            with translation.override(session.language or settings.LANGUAGE_CODE):
                invoice.pdf = _render(invoice, session)
            invoice.rendered_at = timezone.now()
            invoice.save(update_fields=["pdf", "rendered_at"])
    return invoice


def invoice_pdf(invoice: Invoice) -> bytes:
    """The PDF, rendered now if the render task has not run yet (a download right after issue)."""
    if invoice.rendered_at is None:
        invoice = invoice_render(invoice_id=invoice.pk)
    return bytes(invoice.pdf)


def _net_unit_price(item: dict) -> Decimal:
    rate = Decimal(item["rate"])
    return Decimal(item["unit_price_incl_vat"]) * 100 / (100 + rate)


def _render(invoice: Invoice, session) -> bytes:
    operator, receipt = invoice.operator, invoice.receipt
    location = session.evse.location
    zone = receipts.first_zone(location.time_zone, session.time_zone)
    local = receipts.local_time(zone)
    money = receipts.money_in(receipt.payment.currency)
    doc = invoice.document

    page = receipts.Sheet(_("Invoice %(number)s") % {"number": invoice.number}, operator.legal_name)
    page.seller(operator)
    page.line(_("Invoice %(number)s") % {"number": invoice.number}, size=13, bold=True, gap=7)
    page.line(_("Bill to"), bold=True)
    page.line(invoice.buyer_name)
    for part in invoice.buyer_address.splitlines():
        page.line(part)
    page.line(invoice.buyer_country)
    page.line(_("VAT id: %(vat_id)s") % {"vat_id": invoice.buyer_vat_id})
    page.gap()
    page.row(_("Date of issue"), local(invoice.issued_at))
    supplied = session.ended_at or session.started_at or receipt.issued_at
    page.row(_("Date of supply"), supplied.astimezone(zone).strftime("%Y-%m-%d"))
    page.row(_("Replaces receipt"), f"{receipt.number} ({local(receipt.issued_at)})")
    page.row(_("EVSE ID"), session.evse.evse_id)
    page.row(_("Location"), f"{location.name}, {location.full_address}, {location.country}")
    if session.started_at:
        page.row(_("Start"), local(session.started_at))
    if session.ended_at:
        page.row(_("End"), local(session.ended_at))
    page.gap()

    # Quantity and unit price excl. VAT per component (Art. 226 (6), (8)); the amounts are the
    # receipt's, which add up to what was charged.
    page.line(_("Electric vehicle charging (line amounts incl. VAT)"), bold=True)
    receipts.price_rows(
        page, doc, money, unit_price=_net_unit_price, unit_note=f" {_('excl. VAT')}"
    )
    page.gap()

    page.vat_table(doc["vat_lines"], country=location.country, money=money)
    page.row(_("Taxable amount (excl. VAT)"), money(doc["net"]))
    page.row(_("VAT"), money(doc["vat"]))
    page.row(_("Total (incl. VAT)"), money(doc["net"] + doc["vat"]), bold=True)
    if any(Decimal(v["rate"]) == 0 and v["gross"] for v in doc["vat_lines"]):
        page.line(operator.vat_exemption_text or _("VAT exemption: reason not stated"), size=9)
    page.line(_("Paid by card at the time of charging."), size=9)
    page.gap(6)
    if operator.support_contact:
        page.line(_("Questions? %(contact)s") % {"contact": operator.support_contact}, size=9)
    return page.finish()
