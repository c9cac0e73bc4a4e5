"""The bookkeeping CSV from the admin: one row per receipt and credit note, money, zones, escaping.

Rows are checked cell by cell against hand-computed amounts (6.13 EUR at 21 %: net 5.07, VAT 1.06;
a 1.00 refund: net 0.83, VAT 0.17). The export streams and never reads the PDF column.
"""

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from checkout import credit_notes, currencies, exports
from checkout.models import CreditNote, Payment, Receipt, Refund
from stations.models import Evse
from tests.test_receipts import energy, finished_payment, issue, staff

EXPORT = reverse("admin:checkout_receipt_export")
EVIL = '=HYPERLINK("http://127.0.0.1/x","click")'
# 23:30 UTC on 31 July is already 1 August in Lisbon (UTC+1 in summer).
ISSUED = datetime(2026, 7, 31, 23, 30, tzinfo=UTC)


def refund(payment, amount) -> CreditNote:
    made = Refund.objects.create(
        payment=payment, amount=amount, reason="requested_by_customer", requested_by="finance"
    )
    Refund.objects.filter(pk=made.pk).update(status=Refund.Status.SUCCEEDED)
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=amount)
    return credit_notes.credit_note_issue(refund_id=made.pk)


@pytest.fixture
def documents(db):
    """A receipt of 6.13 EUR at a Lisbon charger with a formula for an EVSE ID, refunded 1.00."""
    payment = finished_payment(
        energy("0.50", 21), kwh="10.13", zone="Europe/Lisbon", country="PT", vat_id="PT999999990"
    )
    Evse.objects.filter(pk=payment.session.evse_id).update(evse_id=EVIL)
    Payment.objects.filter(pk=payment.pk).update(
        stripe_payment_intent_id="pi_export_1", stripe_charge_id="ch_export_1", stripe_fee=47
    )
    receipt = issue(payment)
    Receipt.objects.filter(pk=receipt.pk).update(issued_at=ISSUED)
    note = refund(payment, 100)
    CreditNote.objects.filter(pk=note.pk).update(issued_at=ISSUED)
    return receipt, note


def read(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_receipt_and_credit_note_with_money_zones_and_escaping(documents, client):
    receipt, note = documents
    finance = staff(client, "view_receipt", "view_creditnote")
    response = finance.get(EXPORT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    first, second = read(response)
    assert first == {
        "number": receipt.number,
        "type": "receipt",
        "corrects_receipt": "",
        "issue_date": "2026-08-01",
        "issued_at": "2026-08-01T00:30:00+01:00",
        "time_zone": "Europe/Lisbon",
        "session_started_at": "2026-07-15T16:05:00+01:00",
        "session_ended_at": "2026-07-15T17:05:00+01:00",
        "operator": receipt.operator.legal_name,
        "operator_vat_id": "PT999999990",
        "location": receipt.payment.session.evse.location.name,
        "country": "PT",
        "evse_id": "'" + EVIL,  # a spreadsheet shows it, does not run it
        "kwh": "10.1300",
        "currency": "EUR",
        "net": "5.07",
        "vat": "1.06",
        "gross": "6.13",
        "refunded": "1.00",
        "payment_intent": "pi_export_1",
        "method": "card",
        "psp_reference": "",
        "stripe_charge_id": "ch_export_1",
        "stripe_fee": "0.47",
        "net 21%": "5.07",
        "vat 21%": "1.06",
    }
    assert second["number"] == note.number and second["type"] == "credit note"
    assert second["corrects_receipt"] == receipt.number
    assert (second["net"], second["vat"], second["gross"]) == ("-0.83", "-0.17", "-1.00")
    assert (second["net 21%"], second["vat 21%"]) == ("-0.83", "-0.17")
    assert second["issue_date"] == "2026-08-01" and second["kwh"] == second["refunded"] == ""
    assert second["evse_id"] == "'" + EVIL and second["payment_intent"] == "pi_export_1"
    assert second["stripe_charge_id"] == second["stripe_fee"] == ""
    assert second["method"] == "card"


def test_the_export_follows_the_lists_filters_and_omits_notes_without_their_permission(
    documents, client
):
    receipt, _ = documents
    other = issue(finished_payment(energy("0.50", 21), kwh="20"))
    finance = staff(client, "view_receipt")  # not view_creditnote
    everything = read(finance.get(EXPORT))
    assert sorted(r["number"] for r in everything) == sorted([receipt.number, other.number])
    assert {r["type"] for r in everything} == {"receipt"}
    one = read(finance.get(EXPORT, {"operator__id__exact": other.operator_id}))
    assert [r["number"] for r in one] == [other.number]
    by_country = read(finance.get(EXPORT, {"country": "PT"}))
    assert [r["number"] for r in by_country] == [receipt.number]
    august = read(finance.get(EXPORT, {"issued_at__year": 2026, "issued_at__month": 8}))
    assert [r["number"] for r in august] == [receipt.number]


def test_the_export_streams_and_never_reads_the_pdf(documents, client, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK", 1)  # a chunk per row: the body comes in pieces
    finance = staff(client, "view_receipt", "view_creditnote")
    with CaptureQueriesContext(connection) as queries:
        response = finance.get(EXPORT)
        assert response.streaming
        chunks = list(response.streaming_content)
    assert len(chunks) >= 3  # header + receipt, credit note, the rest
    sql = "\n".join(q["sql"] for q in queries.captured_queries)
    assert "checkout_receipt" in sql and "checkout_creditnote" in sql
    assert '"pdf"' not in sql
    # Of the document JSON only its VAT lines are read, never the whole column.
    assert "\"document\" -> 'vat_lines'" in sql
    assert re.findall(r'"document"(?! -> \'vat_lines\')', sql) == []


def test_money_uses_the_currencys_exponent():
    assert currencies.decimal_str(5000, "EUR") == "50.00"  # not "50"
    assert currencies.decimal_str(1577, "EUR") == "15.77"
    assert currencies.decimal_str(-5, "EUR") == "-0.05"
    assert currencies.decimal_str(1577, "JPY") == "1577"
    assert currencies.decimal_str(1577, "KWD") == "1.577"


def test_the_export_needs_the_view_permission(documents, client):
    other = staff(client, "view_chargingsession", "export_receipts")
    assert other.get(EXPORT).status_code == 403
