"""Numbered VAT receipts: gapless numbers per operator and year, a PDF, an e-mail.

Issuing is two steps (design §8): the number is taken, with the amounts split by checkout/vat.py,
under the counter's row lock and committed; the PDF is rendered afterwards (receipt_render), so
issuing receipts never waits on PDF rendering. Dates are printed in the location's time zone; the
series' year is the year in the operator's zone (Operator.time_zone, else the location's).
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from directpay.prepared import STAND_IN_ID, PreparedQuery

from . import doc_format, energy, meter_data, tasks, vat
from .models import Invoice, Payment, Receipt, ReceiptCounter, Refund
from .states import PaymentStatus as P
from .transitions import flag_attention, queue_on_commit, record_event
from .zones import first_zone

log = logging.getLogger(__name__)

# A receipt shows what was captured; a refund made before it was issued does not change that.
ISSUABLE = (P.CAPTURED, P.PARTIALLY_REFUNDED, P.REFUNDED)


def series_zone(operator, location) -> ZoneInfo:
    """Whose New Year starts a new number series: the operator's zone, else the location's."""
    return first_zone(operator.time_zone, location.time_zone)


def fallback_vat_rate(operator) -> Decimal:
    """The rate for prices that state no VAT: the operator's, else DEFAULT_VAT_PERCENT."""
    if operator.vat_rate is not None:
        return Decimal(operator.vat_rate)
    return Decimal(str(settings.DEFAULT_VAT_PERCENT))


def take_number(counter_model, operator, zone: ZoneInfo) -> tuple[int, int, datetime]:
    """The next number of a gapless series: (year in `zone`, sequence, issued_at).

    Call inside the issuing transaction: the counter row stays locked until it commits, so
    numbers and dates of issue rise together within a series and a rollback leaves no gap.
    """
    while True:
        year = timezone.now().astimezone(zone).year
        sequence = _next_in_series(counter_model, operator.pk, year)  # the row is locked now
        issued_at = timezone.now()  # taken under the lock
        if issued_at.astimezone(zone).year == year:
            return year, sequence, issued_at
        # New Year passed while we waited for the lock: give the number back (the row is still
        # ours, so no one took the next one) and take next year's.
        counter_model.objects.filter(operator_id=operator.pk, year=year).update(last=F("last") - 1)


def _next_in_series(counter_model, operator_id: int, year: int) -> int:
    """Add one to the series' counter, creating it at 1, in one statement that locks its row
    until the transaction ends (the one_*_counter_per_operator_year constraint is the conflict)."""
    quote = connection.ops.quote_name
    table = quote(counter_model._meta.db_table)
    operator, year_, last = (
        quote(counter_model._meta.get_field(f).column) for f in ("operator", "year", "last")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({operator}, {year_}, {last}) VALUES (%s, %s, 1) "
            f"ON CONFLICT ({operator}, {year_}) DO UPDATE SET {last} = {table}.{last} + 1 "
            f"RETURNING {last}",
            [operator_id, year],
        )
        return cursor.fetchone()[0]


def receipt_document(payment: Payment, operator) -> vat.Document:
    """What the receipt says about money, from the amount actually captured (money rule 9)."""
    return vat.split(
        charged=payment.amount_captured,
        breakdown=payment.session.final_breakdown or {},
        fallback_rate=fallback_vat_rate(operator),
        shortfall=payment.shortfall,
    )


# What the two steps read: the row each starts from, locked, and a receipt already issued or an
# invoice that replaced it. Each read is compiled once per process and planned once per PostgreSQL
# connection (directpay/prepared.py), as the receipts worker does little else. The receipt and
# the invoice are read after the lock, not joined to it: another transaction may add them while
# this one waits, and a join's rows are those of the statement's snapshot, taken before the wait.
# The signed meter data is joined: it comes with the final record, before the capture.
_payment_to_issue = PreparedQuery(
    "receipt_payment_to_issue",
    lambda payment_id: (
        Payment.objects.select_for_update(of=("self",))
        .select_related("session__evse__location__operator", "session__connector")
        .filter(pk=payment_id)
    ),
    payment_id=STAND_IN_ID,
)
_receipt_of_payment = PreparedQuery(
    "receipt_of_payment",
    lambda payment_id: Receipt.objects.filter(payment_id=payment_id),
    payment_id=STAND_IN_ID,
)
_invoice_of_receipt = PreparedQuery(
    "invoice_of_receipt",
    lambda receipt_id: Invoice.objects.filter(receipt_id=receipt_id),
    receipt_id=STAND_IN_ID,
)
_receipt_to_render = PreparedQuery(
    "receipt_to_render",
    lambda receipt_id: (
        Receipt.objects.select_for_update(of=("self",))
        .select_related(
            "operator",
            "payment__session__evse__location",
            "payment__session__connector",
            "payment__session__meter_data",
        )
        .filter(pk=receipt_id)
    ),
    receipt_id=STAND_IN_ID,
)


def receipt_issue(*, payment_id: int) -> Receipt | None:
    """Issue the one receipt of a captured payment (a retry returns the existing one).

    Refunded or partly refunded payments get theirs too: the receipt shows what was captured.
    """
    with transaction.atomic():
        payment = _payment_to_issue.get(payment_id=payment_id)
        existing = _receipt_of_payment.first(payment_id=payment.pk)
        if existing or payment.status not in ISSUABLE or payment.amount_captured <= 0:
            return existing
        session = payment.session
        location = session.evse.location
        operator = location.operator
        document = receipt_document(payment, operator)
        year, sequence, issued_at = take_number(
            ReceiptCounter, operator, series_zone(operator, location)
        )
        receipt = Receipt.objects.create(
            payment=payment,
            operator=operator,
            year=year,
            sequence=sequence,
            number=f"{operator.receipt_prefix}-{year}-{sequence:06d}",
            issued_at=issued_at,
            total_incl_vat=payment.amount_captured,
            total_excl_vat=document.net,
            vat_amount=document.vat,
            document=document.as_dict(),
        )
        record_event(
            session, "receipt_issued", message=receipt.number, amount=receipt.total_incl_vat
        )
        # Refunds made before the receipt get their credit notes now that there is one to refer to.
        if payment.amount_refunded:  # raised with each refund's success, under this lock
            for refund_id in payment.refunds.filter(status=Refund.Status.SUCCEEDED).values_list(
                "pk", flat=True
            ):
                queue_on_commit(tasks.receipt_credit_note, refund_id)
        if document.zero_rated and not operator.vat_exemption_text.strip():
            flag_attention(
                session,
                f"receipt {receipt.number} shows 0 % VAT with no exemption reason: "
                "set the operator's VAT exemption text (or its VAT rate) and issue a correction",
            )
        if document.assumed_rate and operator.vat_rate is None:
            flag_attention(
                session,
                f"receipt {receipt.number}: the tariff states no VAT and the operator has no "
                f"VAT rate; DEFAULT_VAT_PERCENT ({settings.DEFAULT_VAT_PERCENT} %) was used",
            )
    return receipt


def receipt_render(*, receipt_id: int) -> Receipt:
    """Render and store the PDF of an issued receipt (once; a retry finds it rendered)."""
    with transaction.atomic():
        receipt = _receipt_to_render.get(receipt_id=receipt_id)
        invoice = _invoice_of(receipt)
        if receipt.rendered_at is None or _replaced_since(receipt, invoice):
            receipt.pdf = render_pdf(receipt, invoice)
            receipt.rendered_at = timezone.now()
            receipt.save(update_fields=["pdf", "rendered_at"])
    return receipt


def _invoice_of(receipt: Receipt) -> Invoice | None:
    """The invoice that replaced the receipt, if a business asked for one."""
    return _invoice_of_receipt.first(receipt_id=receipt.pk)


def _replaced_since(receipt: Receipt, invoice: Invoice | None) -> bool:
    """Whether an invoice replaced the receipt after its PDF was rendered (the PDF lacks the mark)."""
    return bool(invoice and receipt.rendered_at and receipt.rendered_at < invoice.issued_at)


def receipt_pdf(receipt: Receipt) -> bytes:
    """The PDF, rendered now if the render step has not run yet (a download right after issue),
    or again if an invoice has replaced the receipt since."""
    if receipt.rendered_at is None or _replaced_since(receipt, _invoice_of(receipt)):
        receipt = receipt_render(receipt_id=receipt.pk)
    return bytes(receipt.pdf)


def receipt_email(*, receipt_id: int) -> None:
    from .lookup import receipt_link  # lookup reads receipts' time zones: imported here, not above

    with transaction.atomic():
        receipt = (
            Receipt.objects.select_for_update(of=("self",))
            .select_related("operator", "payment__session__evse")
            .get(pk=receipt_id)
        )
        session = receipt.payment.session
        if receipt.emailed_at or not session.email:
            return
        mail_document(
            receipt,
            session,
            "receipt",
            lambda: {
                "evse": session.evse.evse_id,
                "amount": doc_format.money(receipt.total_incl_vat, receipt.payment.currency),
                "number": receipt.number,
                "support": receipt.operator.support_contact,
                # A signed link that outlives the status page: the receipt again, or an invoice.
                "link": receipt_link(receipt, absolute=True),
            },
            receipt_pdf,
        )


def mail_document(document, session, template: str, make_context, pdf) -> None:
    """Send a numbered document (receipt, credit note) with its PDF to the driver, and mark it sent.

    The caller holds the document's row lock and has checked it is not sent yet. Subject and body
    come from templates/emails/<template>_subject.txt and <template>.txt, in the language of the
    page that paid (`make_context` is called in it, so amounts are formatted for that language).
    """
    with translation.override(session.language or settings.LANGUAGE_CODE):
        context = make_context()
        subject = render_to_string(f"emails/{template}_subject.txt", context).strip()
        body = render_to_string(f"emails/{template}.txt", context)
    message = EmailMessage(subject=subject, body=body, to=[session.email])
    message.attach(f"{document.number}.pdf", pdf(document), "application/pdf")
    message.send()
    document.emailed_at = timezone.now()
    document.save(update_fields=["emailed_at"])


def receipt_labels() -> dict[str, str]:
    return {
        "ENERGY": pgettext("receipt line", "Energy"),
        "TIME": pgettext("receipt line", "Charging time"),
        "PARKING_TIME": pgettext("receipt line", "Idle time"),
        "FLAT": pgettext("receipt line", "Session fee"),
        "minimum_price": _("Minimum price of the tariff"),
        "maximum_price": _("Maximum price of the tariff"),
        "shortfall": _("Not charged (above your hold)"),
        "csms_lower": _("Reduced to the operator's final record"),
        "adjustment": _("Adjustment"),
    }


UNITS = {"ENERGY": "kWh", "TIME": "h", "PARKING_TIME": "h", "FLAT": ""}


def _volume(kind: str, volume) -> str:
    # kWh rounded as everywhere else (checkout.energy), so the line agrees with the Energy row.
    shown = energy.kwh_value(volume) if kind == "ENERGY" else volume
    return doc_format.decimal(shown, 3)


def price_rows(page, doc: dict, money, *, unit_price=None, unit_note: str = "") -> None:
    """One row per priced component (quantity × unit price, VAT rate, amount) and adjustment.

    unit_price: the price per unit printed (default: incl. VAT, as the tariff shows it)."""
    labels = receipt_labels()
    for item in doc["items"]:
        kind = item["type"]
        text = labels.get(kind, kind)
        if kind != "FLAT":
            price = unit_price(item) if unit_price else item["unit_price_incl_vat"]
            text = (
                f"{text}: {_volume(kind, item['volume'])} {UNITS.get(kind, '')} "
                f"× {doc_format.decimal(price, 4)}{unit_note}"
            )
        text += f" ({pgettext('receipt line', 'VAT')} {doc_format.rate(item['rate'])} %)"
        page.row(text, money(item["gross"]), indent=4)
    for kind, amount in doc["adjustments"]:
        page.row(labels.get(kind, kind), money(amount, signed=True), indent=4)


def render_pdf(receipt: Receipt, invoice: Invoice | None) -> bytes:
    """One A4 page: seller, number, where and when, what was delivered, each price component, VAT;
    marked as replaced if `invoice` replaced it."""
    payment = receipt.payment
    session = payment.session
    with translation.override(session.language or settings.LANGUAGE_CODE):
        return _render(receipt, payment, session, invoice)


class Sheet:
    """One A4 page of a document: a seller's heading, rows of label and right-aligned value."""

    def __init__(self, title: str, author: str):
        self.buf = io.BytesIO()
        self.pdf = canvas.Canvas(self.buf, pagesize=A4, pageCompression=1)
        self.pdf.setTitle(title)
        self.pdf.setAuthor(author)
        self.width, height = A4
        self.y = height - 20 * mm

    def line(self, text, *, size=10, bold=False, gap=5.5):
        self.pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        self.pdf.drawString(20 * mm, self.y, text)
        self.y -= gap * mm

    def row(self, label, value, *, bold=False, indent=0):
        self.pdf.setFont("Helvetica-Bold" if bold else "Helvetica", 10)
        self.pdf.drawString((20 + indent) * mm, self.y, label)
        self.pdf.drawRightString(self.width - 20 * mm, self.y, value)
        self.y -= 5.5 * mm

    def columns(self, cells, *, bold=False):
        """A row of a VAT table: rate on the left, net, VAT and gross right-aligned."""
        self.pdf.setFont("Helvetica-Bold" if bold else "Helvetica", 10)
        self.pdf.drawString(24 * mm, self.y, cells[0])
        for x, cell in zip((110, 145, self.width / mm - 20), cells[1:], strict=True):
            self.pdf.drawRightString(x * mm, self.y, cell)
        self.y -= 5.5 * mm

    def gap(self, size=3):
        self.y -= size * mm

    def seller(self, operator):
        self.line(operator.legal_name, size=14, bold=True, gap=6)
        for part in operator.address.splitlines():
            self.line(part)
        self.line(_("VAT id: %(vat_id)s") % {"vat_id": operator.vat_id})
        self.gap(4)

    def vat_table(self, vat_lines, *, country: str, money) -> None:
        self.line(_("VAT"), bold=True)
        self.columns([_("Rate"), _("Net"), pgettext("receipt line", "VAT"), _("Gross")], bold=True)
        for v in vat_lines:
            self.columns(
                [
                    f"{doc_format.rate(v['rate'])} % ({country})",
                    money(v["net"]),
                    money(v["vat"]),
                    money(v["gross"]),
                ]
            )

    def finish(self) -> bytes:
        self.pdf.showPage()
        self.pdf.save()
        return self.buf.getvalue()


def local_time(zone: ZoneInfo):
    return lambda moment: doc_format.moment(moment, zone)


def money_in(currency: str):
    def money(amount: int, *, signed: bool = False) -> str:
        return doc_format.money(amount, currency, signed=signed)

    return money


def _render(receipt: Receipt, payment: Payment, session, invoice: Invoice | None) -> bytes:
    operator = receipt.operator
    location = session.evse.location
    doc = receipt.document or receipt_document(payment, operator).as_dict()
    local = local_time(first_zone(location.time_zone, session.time_zone))
    money = money_in(payment.currency)

    page = Sheet(_("Receipt %(number)s") % {"number": receipt.number}, operator.legal_name)
    page.seller(operator)
    page.line(_("Receipt %(number)s") % {"number": receipt.number}, size=13, bold=True, gap=7)
    if invoice:
        page.line(
            _("Replaced by invoice %(number)s of %(date)s: use the invoice for your VAT records.")
            % {"number": invoice.number, "date": local(invoice.issued_at)},
            bold=True,
        )
    page.row(_("Date of issue"), local(receipt.issued_at))
    page.row(_("Location"), f"{location.name}, {location.full_address}, {location.country}")
    page.row(_("EVSE ID"), session.evse.evse_id)
    if session.started_at:
        page.row(_("Start"), local(session.started_at))
    if session.ended_at:
        page.row(_("End"), local(session.ended_at))
    page.row(_("Energy"), f"{doc_format.decimal(energy.kwh_value(session.kwh), 3)} kWh")
    page.gap()
    meter_data.receipt_section(page, session)

    page.line(_("Price components (incl. VAT)"), bold=True)
    price_rows(page, doc, money)
    page.row(_("Charged"), money(doc["charged"]), bold=True)
    page.gap()

    page.vat_table(doc["vat_lines"], country=location.country, money=money)
    page.row(_("Net (excl. VAT)"), money(doc["net"]))
    page.row(pgettext("receipt total", "VAT"), money(doc["vat"]))
    page.row(_("Total (incl. VAT)"), money(doc["net"] + doc["vat"]), bold=True)
    if any(Decimal(v["rate"]) == 0 and v["gross"] for v in doc["vat_lines"]):
        page.line(operator.vat_exemption_text or _("VAT exemption: reason not stated"), size=9)
    page.gap()

    if payment.is_terminal:
        # Settled by the charger's own terminal: nothing was held, nothing is released.
        page.row(_("Paid with"), _("Payment terminal at the charger"))
        page.row(_("Payment reference"), payment.psp_reference[:60])
        page.gap(6)
        if operator.support_contact:
            page.line(_("Questions? %(contact)s") % {"contact": operator.support_contact}, size=9)
        return page.finish()
    if payment.wallet:
        method = payment.wallet.replace("_", " ").title()
    else:
        method = (payment.card_brand or pgettext("payment method", "card")).title()
    if payment.card_last4:
        method = _("%(method)s ending %(last4)s") % {"method": method, "last4": payment.card_last4}
    page.row(_("Paid with"), method)
    page.row(_("Amount held"), money(payment.amount_held))
    page.row(_("Released to you"), money(payment.amount_held - payment.amount_captured))
    page.gap(6)
    if operator.support_contact:
        page.line(_("Questions? %(contact)s") % {"contact": operator.support_contact}, size=9)
    return page.finish()
