"""Numbered VAT receipts: gapless numbers per operator and year, a PDF, an e-mail."""

from __future__ import annotations

import io
from decimal import Decimal

from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from .models import Payment, Receipt, ReceiptCounter
from .states import PaymentStatus as P


def _money(cents: int | Decimal, currency: str) -> str:
    return f"{Decimal(cents) / 100:,.2f} {currency}"


def receipt_issue(*, payment_id: int) -> Receipt | None:
    """Issue the one receipt of a captured payment (a retry returns the existing one)."""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update()
            .select_related("session__evse__location__operator", "session__connector")
            .get(pk=payment_id)
        )
        existing = Receipt.objects.filter(payment=payment).first()
        if existing or payment.status != P.CAPTURED:
            return existing
        operator = payment.session.evse.location.operator
        issued_at = timezone.now()
        year = timezone.localtime(issued_at).year
        ReceiptCounter.objects.get_or_create(operator=operator, year=year)
        counter = ReceiptCounter.objects.select_for_update().get(operator=operator, year=year)
        counter.last += 1
        counter.save(update_fields=["last"])
        receipt = Receipt(
            payment=payment,
            operator=operator,
            year=year,
            sequence=counter.last,
            number=f"{operator.receipt_prefix}-{year}-{counter.last:06d}",
            issued_at=issued_at,
            total_incl_vat=payment.amount_captured,
        )
        receipt.pdf = render_pdf(receipt)
        receipt.save()
        payment.session.events.create(
            kind="receipt_issued", message=receipt.number, amount=receipt.total_incl_vat
        )
    return receipt


def receipt_email(*, receipt_id: int) -> None:
    with transaction.atomic():
        receipt = (
            Receipt.objects.select_for_update()
            .select_related("payment__session")
            .get(pk=receipt_id)
        )
        session = receipt.payment.session
        if receipt.emailed_at or not session.email:
            return
        message = EmailMessage(
            subject=f"Your charging receipt {receipt.number}",
            body=(
                f"Thank you for charging at {session.evse.evse_id}.\n\n"
                f"Charged: {_money(receipt.total_incl_vat, receipt.payment.currency)}. "
                f"The rest of your hold has been released.\n"
                f"Your receipt {receipt.number} is attached.\n"
            ),
            to=[session.email],
        )
        message.attach(f"{receipt.number}.pdf", bytes(receipt.pdf), "application/pdf")
        message.send()
        receipt.emailed_at = timezone.now()
        receipt.save(update_fields=["emailed_at"])


def render_pdf(receipt: Receipt) -> bytes:
    """One A4 page: seller, number, where and when, what was delivered, each price component, VAT."""
    payment = receipt.payment
    session = payment.session
    operator = receipt.operator
    location = session.evse.location
    cur = payment.currency
    breakdown = session.final_breakdown or {}
    local = timezone.localtime

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"Receipt {receipt.number}")
    pdf.setAuthor(operator.legal_name)
    width, height = A4
    y = height - 20 * mm

    def line(text, *, size=10, bold=False, x=20 * mm, gap=5.5):
        nonlocal y
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(x, y, text)
        y -= gap * mm

    def row(label, value, *, bold=False):
        nonlocal y
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", 10)
        pdf.drawString(20 * mm, y, label)
        pdf.drawRightString(width - 20 * mm, y, value)
        y -= 5.5 * mm

    line(operator.legal_name, size=14, bold=True, gap=6)
    for part in operator.address.splitlines():
        line(part)
    line(f"VAT id: {operator.vat_id}")
    y -= 4 * mm
    line(f"Receipt {receipt.number}", size=13, bold=True, gap=7)
    row("Date of issue", f"{local(receipt.issued_at):%Y-%m-%d %H:%M}")
    row("Location", f"{location.name}, {location.full_address}")
    row("EVSE ID", session.evse.evse_id)
    if session.started_at:
        row("Start", f"{local(session.started_at):%Y-%m-%d %H:%M}")
    if session.ended_at:
        row("End", f"{local(session.ended_at):%Y-%m-%d %H:%M}")
    row("Energy", f"{Decimal(session.kwh):.3f} kWh")
    y -= 3 * mm
    line("Price components", bold=True)
    labels = {
        "ENERGY": "Energy",
        "TIME": "Charging time",
        "PARKING_TIME": "Idle time",
        "FLAT": "Session fee",
    }
    units = {"ENERGY": "kWh", "TIME": "h", "PARKING_TIME": "h", "FLAT": ""}
    vat_by_rate: dict[str, list[Decimal]] = {}
    for comp in breakdown.get("components", []):
        kind = comp["type"]
        volume = Decimal(comp["volume"])
        label = f"{labels.get(kind, kind)}: {volume:.3f} {units.get(kind, '')} x {Decimal(comp['price']):.4f} excl. VAT"
        row(label, f"{Decimal(comp['excl_vat']):.2f} {cur}")
        rate = comp.get("vat") or "0"
        totals = vat_by_rate.setdefault(rate, [Decimal(0), Decimal(0)])
        totals[0] += Decimal(comp["excl_vat"])
        totals[1] += Decimal(comp["incl_vat"])
    y -= 3 * mm
    total_excl = Decimal(breakdown.get("total_excl_vat", "0"))
    total_incl = Decimal(breakdown.get("total_incl_vat", "0"))
    row("Net (excl. VAT)", f"{total_excl:.2f} {cur}")
    for rate, (net, gross) in sorted(vat_by_rate.items()):
        row(f"VAT {Decimal(rate).normalize():f}% on {net:.2f}", f"{gross - net:.2f} {cur}")
    row("Total (incl. VAT)", f"{total_incl:.2f} {cur}", bold=True)
    if payment.shortfall:
        row("Not charged (above your hold)", _money(payment.shortfall, cur))
    # The operator's own final record came out lower than our price: the driver pays the lower.
    lowered = int(total_incl * 100) - payment.shortfall - payment.amount_captured
    if lowered > 0:
        row("Reduced to the operator's final record", f"-{_money(lowered, cur)}")
    row("Charged", _money(payment.amount_captured, cur), bold=True)
    y -= 3 * mm
    method = (
        payment.wallet.replace("_", " ").title()
        if payment.wallet
        else (payment.card_brand or "card").title()
    )
    row("Paid with", f"{method} ending {payment.card_last4}" if payment.card_last4 else method)
    row("Amount held", _money(payment.amount_held, cur))
    row("Released to you", _money(payment.amount_held - payment.amount_captured, cur))
    y -= 6 * mm
    if operator.support_contact:
        line(f"Questions? {operator.support_contact}", size=9)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
