"""Receipts that are legally right: the VAT is on what was charged, lines add up, local dates and years.

Hand-computed cases; each checks the stored amounts and the text of the PDF itself.
"""

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from checkout import credit_notes, receipts, refunds, services, sweeps, vat
from checkout.models import (
    ChargingSession,
    CreditNote,
    Payment,
    Receipt,
    ReceiptCounter,
    Refund,
)
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from tests.factories import ConnectorFactory
from tests.taskqueue import TaskQueue


def energy(price, vat_rate=None, **extra):
    component = {"type": "ENERGY", "price": price, "step_size": 1}
    if vat_rate is not None:
        component["vat"] = vat_rate
    return {
        "currency": "EUR",
        "elements": [{"price_components": [component]}],
        **extra,
    }


MIXED = {
    "currency": "EUR",
    "elements": [
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.50", "vat": 21, "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "vat": 9, "step_size": 1},
            ]
        }
    ],
}

START = datetime(2026, 7, 15, 15, 5, tzinfo=UTC)


def finished_payment(
    tariff,
    *,
    kwh,
    minutes=60,
    parking=0,
    hold=5000,
    csms_total=None,
    zone="Europe/Amsterdam",
    country="NL",
    start=START,
    language="en",
    seller=None,
    **operator,
):
    """A finished session settled as payment_capture settles it: min(ours, CSMS), capped at the hold."""
    where = {"evse__location__operator": seller} if seller else {}
    connector = ConnectorFactory(
        evse__location__time_zone=zone,
        evse__location__country=country,
        **where,
        **{f"evse__location__operator__{k}": v for k, v in operator.items()},
    )
    session = ChargingSession.objects.create(
        evse=connector.evse,
        connector=connector,
        tariff_snapshot=tariff,
        time_zone=zone,
        language=language,
        csms_reference=f"T{uuid.uuid4().hex[:20]}",
        status=S.FINISHED,
        kwh=Decimal(kwh),
        parking_minutes=Decimal(parking),
        started_at=start,
        ended_at=start + timedelta(minutes=minutes),
        cdr={"total_cost": {"incl_vat": csms_total}} if csms_total is not None else {},
    )
    priced = services.price_session(session)
    session.final_breakdown = priced.as_dict()
    session.save()
    cost = vat.cents(priced.total_incl_vat)
    if csms_total is not None:
        cost = min(cost, vat.cents(csms_total))
    return Payment.objects.create(
        session=session,
        currency="EUR",
        status=P.CAPTURED,
        amount_held=hold,
        amount_captured=min(cost, hold),
        shortfall=max(0, cost - hold),
        card_brand="visa",
        card_last4="4242",
    )


def issue(payment) -> Receipt:
    receipt = receipts.receipt_issue(payment_id=payment.pk)
    assert receipt is not None
    return receipts.receipt_render(receipt_id=receipt.pk)


def pdf_text(receipt) -> str:
    reader = PdfReader(io.BytesIO(bytes(receipt.pdf)))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


CASES = {
    # 20.005 kWh x 0.59 + 19 %: 14.0455 -> 14.05 charged; net 14.05 / 1.19 = 11.8067 -> 11.81.
    "19% half cent": {
        "tariff": energy("0.59", 19),
        "kwh": "20.005",
        "charged": 1405,
        "lines": [("19", 1181, 224)],
        "printed": ["Energy: 20.005 kWh × 0.7021 (VAT 19 %) 14.05 EUR"],
    },
    # 10.13 kWh x 0.50 + 21 %: 6.12865 -> 6.13; net 5.0661 -> 5.07 (line and net agree).
    "21% half-even trap": {
        "tariff": energy("0.50", 21),
        "kwh": "10.13",
        "charged": 613,
        "lines": [("21", 507, 106)],
        "printed": ["Energy: 10.130 kWh × 0.6050 (VAT 21 %) 6.13 EUR"],
    },
    # Priced 30.25, hold 20.00: VAT on the 20.00 charged = 20.00 - 16.81 = 3.19.
    "shortfall": {
        "tariff": energy("25.42", 19),
        "kwh": "1",
        "hold": 2000,
        "charged": 2000,
        "lines": [("19", 1681, 319)],
        "printed": ["30.25 EUR", "Not charged (above your hold) -10.25 EUR"],
    },
    # Our price 6.13, the CSMS's final record 4.84: the driver pays 4.84, VAT 0.84 of it.
    "csms lower": {
        "tariff": energy("0.50", 21),
        "kwh": "10.13",
        "csms_total": "4.84",
        "charged": 484,
        "lines": [("21", 400, 84)],
        "printed": ["Reduced to the operator's final record -1.29 EUR"],
    },
    # 0.5 kWh x 0.50 = 0.2975 incl. 19 %, raised to the minimum 1.19: VAT 0.19, not 0.05.
    "minimum price": {
        "tariff": energy("0.50", 19, min_price={"excl_vat": "1.00", "incl_vat": "1.19"}),
        "kwh": "0.5",
        "charged": 119,
        "lines": [("19", 100, 19)],
        "printed": ["Minimum price of the tariff +0.89 EUR"],
    },
    # No VAT in the tariff: the operator's 21 % applies to the 5.00 the driver saw and paid.
    "tariff without vat": {
        "tariff": energy("0.50"),
        "kwh": "10",
        "operator": {"vat_rate": Decimal(21)},
        "charged": 500,
        "lines": [("21", 413, 87)],
        "printed": ["21 % (NL) 4.13 EUR 0.87 EUR 5.00 EUR"],
    },
    # Energy 6.05 at 21 % + half an hour idle at 6.00/h = 3.27 at 9 %.
    "mixed rates": {
        "tariff": MIXED,
        "kwh": "10",
        "parking": 30,
        "charged": 932,
        "lines": [("9", 300, 27), ("21", 500, 105)],
        "printed": ["9 % (NL) 3.00 EUR 0.27 EUR 3.27 EUR", "21 % (NL) 5.00 EUR 1.05 EUR 6.05 EUR"],
    },
    # The same, capped at a 5.00 hold: 5.00 x 6.05/9.32 = 3.2457 -> 3.25 and 1.75 (largest remainder).
    "mixed rates capped": {
        "tariff": MIXED,
        "kwh": "10",
        "parking": 30,
        "hold": 500,
        "charged": 500,
        "lines": [("9", 161, 14), ("21", 269, 56)],
        "printed": ["Not charged (above your hold) -4.32 EUR"],
    },
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_vat_is_split_from_what_was_charged(db, case):
    payment = finished_payment(
        case["tariff"],
        kwh=case["kwh"],
        parking=case.get("parking", 0),
        hold=case.get("hold", 5000),
        csms_total=case.get("csms_total"),
        **case.get("operator", {}),
    )
    assert payment.amount_captured == case["charged"]
    receipt = issue(payment)
    net = sum(n for _, n, _ in case["lines"])
    tax = sum(v for _, _, v in case["lines"])
    assert net + tax == payment.amount_captured
    text = pdf_text(receipt)
    money = vat.fmt_money
    assert f"Charged {money(payment.amount_captured)} EUR" in text
    assert f"Net (excl. VAT) {money(net)} EUR" in text
    assert f"VAT {money(tax)} EUR" in text
    assert f"Total (incl. VAT) {money(payment.amount_captured)} EUR" in text
    for expected in case["printed"]:
        assert expected in text

    doc = receipt.document
    assert [(r["rate"], r["net"], r["vat"]) for r in doc["vat_lines"]] == [
        (rate, net, v) for rate, net, v in case["lines"]
    ]
    assert receipt.total_excl_vat == net and receipt.vat_amount == tax
    assert receipt.total_incl_vat == payment.amount_captured
    # The printed lines add up to the charge as well.
    items = sum(i["gross"] for i in doc["items"]) + sum(a for _, a in doc["adjustments"])
    assert items == payment.amount_captured
    payment.session.refresh_from_db()
    assert payment.session.attention == ""


def test_a_zero_rate_without_an_exemption_reason_is_issued_and_flagged(db):
    payment = finished_payment(energy("0.50", 0), kwh="10")
    receipt = issue(payment)
    assert receipt.vat_amount == 0 and receipt.total_excl_vat == 500
    payment.session.refresh_from_db()
    assert "0 % VAT with no exemption reason" in payment.session.attention
    assert "VAT exemption: reason not stated" in pdf_text(receipt)


def test_a_zero_rate_prints_the_operators_exemption_text(db):
    payment = finished_payment(
        energy("0.50", 0), kwh="10", vat_exemption_text="VAT reverse-charged (Art. 196)"
    )
    receipt = issue(payment)
    payment.session.refresh_from_db()
    assert payment.session.attention == ""
    assert "VAT reverse-charged (Art. 196)" in pdf_text(receipt)


def test_a_tariff_without_vat_and_an_operator_without_a_rate_uses_the_default_and_flags(
    db, settings
):
    settings.DEFAULT_VAT_PERCENT = "19"
    payment = finished_payment(energy("0.50"), kwh="10", country="DE")
    receipt = issue(payment)
    assert (receipt.total_excl_vat, receipt.vat_amount) == (420, 80)  # 5.00 / 1.19 = 4.2017
    assert "19 % (DE) 4.20 EUR 0.80 EUR 5.00 EUR" in pdf_text(receipt)
    payment.session.refresh_from_db()
    assert "DEFAULT_VAT_PERCENT" in payment.session.attention


# --- refunds before the receipt ---------------------------------------------------------------


def test_a_refund_before_the_receipt_still_gets_the_receipt_of_what_was_captured(
    db, settings, monkeypatch
):
    payment = finished_payment(energy("0.50", 21), kwh="11")
    # Staff refunded 1.00 before the receipts queue got to it (refund_send's bookkeeping).
    Payment.objects.filter(pk=payment.pk).update(
        status=P.PARTIALLY_REFUNDED,
        amount_refunded=100,
        updated_at=timezone.now() - timedelta(hours=1),
    )
    queue = TaskQueue(monkeypatch)
    sweeps.strays()
    assert queue.names() == ["receipt_issue"]
    queue.run()
    receipt = Receipt.objects.get(payment=payment)
    assert receipt.total_incl_vat == 666 and receipt.rendered_at is not None
    assert "Charged 6.66 EUR" in pdf_text(receipt)
    sweeps.strays()
    assert queue.names() == []  # the sweep stops asking once the receipt exists


# --- dates, zones and years ---------------------------------------------------------------------


def test_times_are_printed_in_the_locations_zone(db):
    # 17:05 in Lisbon (WEST, UTC+1) is 16:05 UTC and 18:05 on the server's Amsterdam clock.
    start = datetime(2026, 7, 15, 16, 5, tzinfo=UTC)
    payment = finished_payment(
        energy("0.50", 23), kwh="10", zone="Europe/Lisbon", country="PT", start=start
    )
    text = pdf_text(issue(payment))
    assert "Start Jul 15, 2026 17:05" in text
    assert "End Jul 15, 2026 18:05" in text
    assert "18:05" not in text.split("End")[0]


@pytest.mark.parametrize("server_zone", ["Pacific/Auckland", "America/New_York"])
@pytest.mark.parametrize(
    "zone, now, year",
    [
        # 23:30 on New Year's Eve in Helsinki (21:30 UTC): still this year's series.
        ("Europe/Helsinki", datetime(2026, 12, 31, 21, 30, tzinfo=UTC), 2026),
        # 00:30 on New Year's Day in Lisbon (00:30 UTC): next year's.
        ("Europe/Lisbon", datetime(2027, 1, 1, 0, 30, tzinfo=UTC), 2027),
    ],
)
def test_the_number_series_year_is_the_year_where_the_operator_is(
    db, settings, monkeypatch, server_zone, zone, now, year
):
    settings.TIME_ZONE = server_zone
    payment = finished_payment(
        energy("0.50", 21), kwh="10", zone=zone, start=now - timedelta(hours=2)
    )
    monkeypatch.setattr(timezone, "now", lambda: now)
    receipt = issue(payment)
    prefix = payment.session.evse.location.operator.receipt_prefix
    assert (receipt.year, receipt.number) == (year, f"{prefix}-{year}-000001")
    local = now.astimezone(ZoneInfo(zone))
    assert f"Date of issue {local:%b} {local.day}, {local.year} {local:%H:%M}" in pdf_text(receipt)


def test_the_operators_own_zone_decides_the_year_when_set(db, monkeypatch):
    now = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)  # 00:30 in Helsinki, 22:30 in Lisbon
    payment = finished_payment(
        energy("0.50", 21), kwh="10", zone="Europe/Lisbon", time_zone="Europe/Helsinki"
    )
    monkeypatch.setattr(timezone, "now", lambda: now)
    assert issue(payment).year == 2027


def test_new_year_passing_while_waiting_for_the_counter_takes_next_years_first_number(
    db, monkeypatch
):
    # The year is read, the counter taken (under its lock), and only then the date of issue:
    # here New Year in Lisbon passes in between, so the number taken is given back.
    payment = finished_payment(energy("0.50", 21), kwh="10", zone="Europe/Lisbon")
    operator = payment.session.evse.location.operator
    ReceiptCounter.objects.create(operator=operator, year=2026, last=7)
    eve, day = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    clock = iter([eve, day])
    monkeypatch.setattr(timezone, "now", lambda: next(clock, day))
    receipt = issue(payment)
    assert (receipt.year, receipt.sequence, receipt.issued_at) == (2027, 1, day)
    assert ReceiptCounter.objects.get(operator=operator, year=2026).last == 7  # no gap left


# --- finance in the admin -----------------------------------------------------------------------


def staff(client, *codenames):
    user = User.objects.create_user(
        f"staff{uuid.uuid4().hex[:6]}", password="pw-for-test-only", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="checkout", codename__in=codenames)
    )
    client.force_login(user)
    return client


def test_finance_downloads_the_receipt_pdf_from_the_admin(db, client):
    receipt = issue(finished_payment(energy("0.50", 21), kwh="10.13"))
    finance = staff(client, "view_receipt")
    url = reverse("admin:checkout_receipt_pdf", args=[receipt.pk])
    for page in (
        reverse("admin:checkout_receipt_changelist"),
        reverse("admin:checkout_receipt_change", args=[receipt.pk]),
    ):
        html = finance.get(page).content.decode()
        assert url in html
        assert "6.13 EUR" in html and "5.07 EUR" in html and "1.06 EUR" in html
    response = finance.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{receipt.number}.pdf"' in response["Content-Disposition"]
    assert response.content == bytes(receipt.pdf)


def test_the_admin_download_needs_the_view_permission(db, client):
    receipt = issue(finished_payment(energy("0.50", 21), kwh="10.13"))
    other = staff(client, "view_chargingsession")
    assert other.get(reverse("admin:checkout_receipt_pdf", args=[receipt.pk])).status_code == 403


def test_a_receipt_not_rendered_yet_is_rendered_on_download(db, client):
    receipt = receipts.receipt_issue(payment_id=finished_payment(energy("0.50", 21), kwh="10").pk)
    assert receipt.rendered_at is None and not bytes(receipt.pdf)
    session = receipt.payment.session
    response = client.get(reverse("checkout:receipt", args=[session.public_id]))
    assert response.status_code == 200 and response.content.startswith(b"%PDF")


def test_numbers_stay_gapless_and_one_per_payment(db):
    first = finished_payment(energy("0.50", 21), kwh="10")
    seller = first.session.evse.location.operator
    payments = [first] + [
        finished_payment(energy("0.50", 21), kwh="10", seller=seller) for _ in range(2)
    ]
    for payment in payments + payments:
        receipts.receipt_issue(payment_id=payment.pk)
    assert Receipt.objects.count() == 3
    assert sorted(Receipt.objects.values_list("sequence", flat=True)) == [1, 2, 3]


def test_allocate_sums_exactly():
    assert vat.allocate(500, [Decimal("6.05"), Decimal("3.27")]) == [325, 175]
    assert vat.allocate(100, [Decimal(1)] * 3) == [34, 33, 33]
    assert vat.allocate(7, [Decimal(0), Decimal(0)]) == [7, 0]
    assert vat.fmt_money(123456) == "1,234.56" and vat.fmt_money(-5) == "-0.05"
    assert vat.fmt_decimal(Decimal("5.065"), 2) == "5.07"  # half up, where :.2f gives 5.06


def test_an_operator_zone_must_be_a_real_zone(db):
    from django.core.exceptions import ValidationError

    from tests.factories import OperatorFactory

    operator = OperatorFactory(time_zone="Europe/Lisbn")
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        operator.full_clean()
    operator.time_zone = "Europe/Lisbon"
    operator.full_clean()


# --- credit notes -------------------------------------------------------------------------------


def refund(payment, amount, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        refunds.payment_refund(
            payment_id=payment.pk,
            amount=amount,
            reason="requested_by_customer",
            requested_by="finance",
        )


def test_refunds_get_credit_notes_that_together_reverse_the_receipt(
    request, client, django_capture_on_commit_callbacks
):
    session = request.getfixturevalue("finished")
    payment = session.payment
    receipt = payment.receipt
    assert (receipt.total_excl_vat, receipt.vat_amount) == (550, 116)  # 6.66 / 1.21 = 5.504
    refund(payment, 100, django_capture_on_commit_callbacks)
    first = CreditNote.objects.get(refund__payment=payment)
    prefix = receipt.operator.receipt_prefix
    assert first.number == f"{prefix}-CN-{first.year}-000001" and first.receipt == receipt
    # 1.00 at 21 %: net 1.00 / 1.21 = 0.826 -> 0.83, VAT 0.17.
    assert (first.total_incl_vat, first.total_excl_vat, first.vat_amount) == (100, 83, 17)
    refund(payment, 566, django_capture_on_commit_callbacks)
    second = CreditNote.objects.exclude(pk=first.pk).get(refund__payment=payment)
    assert second.number == f"{prefix}-CN-{second.year}-000002"
    # Everything refunded: the credit notes give back exactly the receipt's net and VAT.
    assert (first.total_excl_vat + second.total_excl_vat, first.vat_amount + second.vat_amount) == (
        550,
        116,
    )
    assert second.total_excl_vat + second.vat_amount == 566

    text = " ".join(
        PdfReader(io.BytesIO(credit_notes.credit_note_pdf(first))).pages[0].extract_text().split()
    )
    assert f"Credit note {first.number}" in text and f"Corrects receipt {receipt.number}" in text
    assert "Net (excl. VAT) -0.83 EUR" in text and "Refunded (incl. VAT) -1.00 EUR" in text
    page = client.get(reverse("checkout:status", args=[session.public_id])).content.decode()
    url = reverse("checkout:credit_note", args=[session.public_id, first.pk])
    assert url in page
    response = client.get(url)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")


def test_a_refund_before_the_receipt_gets_its_credit_note_with_the_receipt(
    db, django_capture_on_commit_callbacks
):
    payment = finished_payment(energy("0.50", 21), kwh="11")
    Refund.objects.create(
        payment=payment,
        amount=100,
        reason="requested_by_customer",
        requested_by="finance",
        status=Refund.Status.SUCCEEDED,
    )
    Payment.objects.filter(pk=payment.pk).update(status=P.PARTIALLY_REFUNDED, amount_refunded=100)
    with django_capture_on_commit_callbacks(execute=True):
        receipt = receipts.receipt_issue(payment_id=payment.pk)
    note = CreditNote.objects.get(refund__payment=payment)
    assert note.receipt == receipt and note.total_incl_vat == 100
    assert note.total_excl_vat + note.vat_amount == 100


def test_the_sweep_issues_a_lost_credit_note_but_not_for_old_refunds(db, monkeypatch):
    payment = finished_payment(energy("0.50", 21), kwh="11")
    issue(payment)  # in the test's transaction: what it queues on commit never runs
    lost, old = (
        Refund.objects.create(
            payment=payment,
            amount=amount,
            reason="requested_by_customer",
            requested_by="finance",
            status=Refund.Status.SUCCEEDED,
        )
        for amount in (100, 50)
    )
    Refund.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=30))
    queue = TaskQueue(monkeypatch)
    sweeps.strays(now=timezone.now() + timedelta(hours=1))
    assert queue.names() == ["receipt_credit_note"]
    queue.run()
    assert list(CreditNote.objects.values_list("refund", flat=True)) == [lost.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgres")
def test_receipts_issued_at_once_are_one_per_payment_and_gapless():
    from tests.test_concurrency import race

    first = finished_payment(energy("0.50", 21), kwh="10")
    seller = first.session.evse.location.operator
    payments = [first] + [
        finished_payment(energy("0.50", 21), kwh="10", seller=seller) for _ in range(4)
    ]
    # Every payment twice (a redelivered task), all at the same moment.
    results = race(
        *[lambda pk=p.pk: receipts.receipt_issue(payment_id=pk) for p in payments + payments]
    )
    assert not [r for r in results if isinstance(r, Exception)]
    issued = Receipt.objects.filter(operator=seller).order_by("sequence")
    assert [r.sequence for r in issued] == [1, 2, 3, 4, 5]
    assert sorted(r.payment_id for r in issued) == sorted(p.pk for p in payments)
    # Numbers and dates of issue rise together (the date is taken under the counter's lock).
    dates = [r.issued_at for r in issued]
    assert dates == sorted(dates)


# --- languages ----------------------------------------------------------------------------------


def test_a_receipt_is_printed_in_the_sessions_language(db):
    # 10.13 kWh x 0.50 + 19 %: 10.13 x 0.595 = 6.027 -> 6.03; net 6.03 / 1.19 = 5.067 -> 5.07.
    payment = finished_payment(energy("0.50", 19), kwh="10.13", country="DE", language="de")
    receipt = issue(payment)
    text = pdf_text(receipt)
    for expected in [
        f"Beleg {receipt.number}",
        "Ausstellungsdatum",
        "Beginn 15.07.2026 17:05",
        "Energie: 10,130 kWh × 0,5950 (MwSt. 19 %) 6,03 EUR",
        "19 % (DE) 5,07 EUR 0,96 EUR 6,03 EUR",
        "Gesamt (inkl. MwSt.) 6,03 EUR",
        "Bezahlt mit Visa, Endziffern 4242",
    ]:
        assert expected in text, expected
    assert "Receipt" not in text and "6.03" not in text


def test_a_credit_note_is_printed_in_the_sessions_language(
    request, django_capture_on_commit_callbacks
):
    session = request.getfixturevalue("finished")
    ChargingSession.objects.filter(pk=session.pk).update(language="de")
    refund(session.payment, 100, django_capture_on_commit_callbacks)
    note = CreditNote.objects.get(refund__payment=session.payment)
    text = " ".join(
        PdfReader(io.BytesIO(credit_notes.credit_note_pdf(note))).pages[0].extract_text().split()
    )
    assert f"Gutschrift {note.number}" in text
    assert f"Korrigiert Beleg {session.payment.receipt.number}" in text
    assert "Grund Auf Wunsch des Fahrers" in text
    assert "Netto (ohne MwSt.) -0,83 EUR" in text and "Erstattet (inkl. MwSt.) -1,00 EUR" in text


def test_a_credit_note_is_emailed_once_with_its_pdf_in_the_sessions_language(
    request, django_capture_on_commit_callbacks
):
    from django.core import mail

    from checkout import tasks

    session = request.getfixturevalue("finished")
    ChargingSession.objects.filter(pk=session.pk).update(language="nl", email="d@example.com")
    mail.outbox.clear()
    refund(session.payment, 100, django_capture_on_commit_callbacks)
    note = CreditNote.objects.get(refund__payment=session.payment)
    (message,) = mail.outbox
    assert message.to == ["d@example.com"]
    assert message.subject == f"Uw creditnota {note.number}"
    assert "1,00 EUR van uw laadsessie" in message.body
    assert session.payment.receipt.number in message.body and "/r/" in message.body
    ((name, pdf, kind),) = message.attachments
    assert (name, kind) == (f"{note.number}.pdf", "application/pdf") and pdf.startswith(b"%PDF")
    # A retry (a task delivered twice) sends nothing more.
    tasks.receipt_credit_note_email(note.pk)
    tasks.receipt_credit_note(note.refund_id)
    assert len(mail.outbox) == 1


def test_no_address_no_credit_note_email(request, django_capture_on_commit_callbacks):
    from django.core import mail

    session = request.getfixturevalue("finished")
    mail.outbox.clear()
    refund(session.payment, 100, django_capture_on_commit_callbacks)
    assert CreditNote.objects.filter(refund__payment=session.payment).exists()
    assert mail.outbox == []


def test_documents_are_drawn_with_reportlabs_c_speedups():
    """reportlab's C accelerator (the rl_accel package, separate since reportlab 4) is installed and
    used: without it, number formatting and escaping fall back to Python (a page 40 % slower)."""
    from reportlab.lib import rl_accel

    assert rl_accel.fp_str.__module__ == "_rl_accel"
    assert rl_accel.fp_str(1.5, 0.25) == "1.5 .25"
