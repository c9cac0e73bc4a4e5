"""Business invoices after the fact: VAT ids checked per country, their own gapless series per
operator and year, the receipt marked replaced, the money the receipt's, one invoice per charge."""

import io
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from checkout import credit_notes, invoices, lookup, receipts
from checkout.forms import InvoiceForm
from checkout.models import Invoice, InvoiceCounter, Payment, Refund
from checkout.states import PaymentStatus as P
from tests.test_receipts import MIXED, energy, finished_payment, issue, pdf_text

VALID = {
    "DE": "DE136695976",
    "NL": "NL004495445B01",
    "FR": "FR40303265045",
    "BE": "BE0403019261",
}
INVALID = {  # one digit off: the check digits no longer match
    "DE": "DE136695978",
    "NL": "NL004495446B01",
    "FR": "FR40303265046",
    "BE": "BE0403019262",
}


def buyer(country="NL", vat_id=None, name="Acme Logistics B.V."):
    return invoices.Buyer(
        name=name,
        address="Keizersgracht 1\n1015 CJ Amsterdam",
        country=country,
        vat_id=vat_id or VALID[country],
    )


def form_data(country="NL", vat_id=None, **changes):
    return {
        "company": "Acme Logistics B.V.",
        "address": "Keizersgracht 1\n1015 CJ Amsterdam",
        "country": country,
        "vat_id": VALID[country] if vat_id is None else vat_id,
        **changes,
    }


def invoice_text(invoice) -> str:
    reader = PdfReader(io.BytesIO(invoices.invoice_pdf(invoice)))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


@pytest.fixture
def receipt(db):
    # Energy at 21 % and idle time at 9 %: two VAT rates on one invoice.
    return issue(finished_payment(MIXED, kwh="20", parking=30))


def token_of(receipt):
    return lookup.receipt_token(receipt)


# --- VAT ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("country", sorted(VALID))
def test_a_valid_vat_id_is_accepted_with_or_without_its_prefix(country):
    number = VALID[country]
    assert invoices.buyer_vat_id(country, number) == number
    spaced = f"{number[2:5]} {number[5:]}".lower()  # typed without prefix, with a space
    assert invoices.buyer_vat_id(country, spaced) == number
    assert InvoiceForm(form_data(country)).is_valid()


@pytest.mark.parametrize("country", sorted(INVALID))
def test_an_invalid_vat_id_is_refused_next_to_its_field(country):
    assert invoices.buyer_vat_id(country, INVALID[country]) is None
    form = InvoiceForm(form_data(country, INVALID[country]))
    assert not form.is_valid()
    assert list(form.errors) == ["vat_id"]
    assert "not a valid VAT id" in form.errors["vat_id"][0]


def test_a_vat_id_of_another_country_is_refused():
    assert invoices.buyer_vat_id("NL", VALID["DE"]) is None
    assert invoices.buyer_vat_id("GR", "EL094259216") == "EL094259216"
    assert invoices.buyer_vat_id("GR", "094259216") == "EL094259216"


# --- issuing ---------------------------------------------------------------------------------------


def test_the_invoice_pdf_names_the_buyer_and_adds_up_to_what_was_charged(receipt):
    invoice = invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer("BE"))
    charged = receipt.payment.amount_captured
    assert invoice.total_incl_vat == charged == receipt.total_incl_vat
    assert invoice.total_excl_vat + invoice.vat_amount == charged
    lines = invoice.document["vat_lines"]
    assert {line["rate"] for line in lines} == {"21", "9"}
    assert sum(line["net"] + line["vat"] for line in lines) == charged

    text = invoice_text(invoice)
    assert "Acme Logistics B.V." in text and "BE0403019261" in text
    assert invoice.operator.vat_id in text and invoice.operator.legal_name in text
    assert invoice.number in text and receipt.number in text
    assert "20.000 kWh" in text  # the quantity
    euros = lambda cents: f"{cents // 100}.{cents % 100:02d} EUR"
    assert f"Taxable amount (excl. VAT) {euros(invoice.total_excl_vat)}" in text
    assert f"VAT {euros(invoice.vat_amount)}" in text
    assert f"Total (incl. VAT) {euros(charged)}" in text
    for line in lines:
        assert f"{euros(line['net'])} {euros(line['vat'])} {euros(line['gross'])}" in text


def test_the_receipt_is_marked_replaced_on_its_pdf_page_and_admin(client, receipt):
    assert "Replaced by invoice" not in pdf_text(receipt)
    invoice = invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer())
    receipt.refresh_from_db()
    fresh = receipts.receipt_pdf(receipt)  # re-rendered with the mark
    receipt.pdf = fresh
    assert f"Replaced by invoice {invoice.number}" in pdf_text(receipt)

    status = client.get(reverse("checkout:status", args=[receipt.payment.session.public_id]))
    page = status.content.decode()
    assert f"replaced by invoice {invoice.number}" in page
    pdf = client.get(reverse("checkout:invoice", args=[receipt.payment.session.public_id]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"

    client.force_login(User.objects.create_superuser("root"))
    listing = client.get(reverse("admin:checkout_receipt_changelist")).content.decode()
    assert invoice.number in listing


def test_the_pdfs_are_rendered_after_commit_on_the_receipts_queue(
    receipt, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invoice = invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer())
        assert Invoice.objects.get(pk=invoice.pk).rendered_at is None  # not inside the lock
    assert len(callbacks) == 1
    invoice.refresh_from_db()
    receipt.refresh_from_db()
    assert invoice.rendered_at is not None and bytes(invoice.pdf).startswith(b"%PDF")
    assert receipt.rendered_at >= invoice.issued_at
    assert f"Replaced by invoice {invoice.number}" in pdf_text(receipt)


def test_numbers_are_gapless_per_operator_and_year(db, monkeypatch):
    first = issue(finished_payment(energy("0.50", 21), kwh="10"))
    seller = first.operator
    same = [issue(finished_payment(energy("0.50", 21), kwh="10", seller=seller)) for _ in range(3)]
    other = issue(finished_payment(energy("0.50", 21), kwh="10"))
    prefix, year = seller.receipt_prefix, timezone.now().astimezone(UTC).year
    issued = [invoices.invoice_issue(receipt_id=r.pk, buyer=buyer()) for r in [first, *same[:2]]]
    assert [i.number for i in issued] == [f"{prefix}-INV-{year}-{n:06d}" for n in (1, 2, 3)]
    # Another operator starts its own series; receipts keep theirs (the invoice takes no receipt number).
    theirs = invoices.invoice_issue(receipt_id=other.pk, buyer=buyer())
    assert theirs.sequence == 1 and theirs.operator != seller
    # The next year starts again at 1.
    monkeypatch.setattr(timezone, "now", lambda: datetime(year + 1, 3, 1, 12, tzinfo=UTC))
    next_year = invoices.invoice_issue(receipt_id=same[2].pk, buyer=buyer())
    assert (next_year.year, next_year.sequence) == (year + 1, 1)
    assert next_year.number == f"{prefix}-INV-{year + 1}-000001"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgres")
def test_invoices_requested_at_once_are_one_per_receipt_and_gapless():
    from tests.test_concurrency import race

    first = issue(finished_payment(energy("0.50", 21), kwh="10"))
    seller = first.operator
    issued = [first] + [
        issue(finished_payment(energy("0.50", 21), kwh="10", seller=seller)) for _ in range(3)
    ]
    results = race(
        *[
            lambda pk=r.pk: invoices.invoice_issue(receipt_id=pk, buyer=buyer())
            for r in issued + issued
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    made = Invoice.objects.filter(operator=seller).order_by("sequence")
    assert [i.sequence for i in made] == [1, 2, 3, 4]
    assert sorted(i.receipt_id for i in made) == sorted(r.pk for r in issued)


# --- the page --------------------------------------------------------------------------------------


def test_asking_on_the_page_issues_one_invoice_and_a_second_request_shows_it(client, receipt):
    token = token_of(receipt)
    url = reverse("checkout:document_invoice", args=[token])
    first = client.post(url, form_data("FR"))
    assert first.status_code == 302
    invoice = Invoice.objects.get(receipt=receipt)
    assert (invoice.buyer_vat_id, invoice.buyer_country) == (VALID["FR"], "FR")
    page = client.get(first["Location"]).content.decode()
    assert invoice.number in page and "replaced by invoice" in page

    again = client.post(url, form_data("DE", company="Other GmbH"))
    assert again.status_code == 302
    assert Invoice.objects.count() == 1
    assert InvoiceCounter.objects.get(operator=receipt.operator).last == 1
    assert Invoice.objects.get().buyer_name == "Acme Logistics B.V."
    pdf = client.get(reverse("checkout:document_invoice_pdf", args=[token]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


def test_the_page_shows_errors_next_to_the_fields_and_issues_nothing(client, receipt):
    url = reverse("checkout:document_invoice", args=[token_of(receipt)])
    response = client.post(url, form_data("DE", INVALID["DE"], company=""))
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"company", "vat_id"}
    assert "not a valid VAT id" in response.content.decode()
    assert not Invoice.objects.exists()
    assert not InvoiceCounter.objects.filter(last__gt=0).exists()


def test_a_tampered_link_cannot_ask_for_an_invoice(client, receipt):
    bad = token_of(receipt)[:-2] + "xx"
    url = reverse("checkout:document_invoice", args=[bad])
    assert client.post(url, form_data()).status_code == 404
    assert not Invoice.objects.exists()


def test_a_refunded_charge_gets_no_invoice(client, receipt):
    Payment.objects.filter(pk=receipt.payment_id).update(status=P.REFUNDED)
    with pytest.raises(invoices.InvoiceRefused):
        invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer())
    page = client.get(reverse("checkout:document", args=[token_of(receipt)])).content.decode()
    assert "Issue invoice" not in page


def test_too_many_invoice_requests_from_one_client(client, db, settings):
    settings.INVOICE_RATE_PER_IP = "2/h"
    made = [issue(finished_payment(energy("0.50", 21), kwh="10")) for _ in range(3)]
    for receipt in made[:2]:
        url = reverse("checkout:document_invoice", args=[token_of(receipt)])
        assert client.post(url, form_data(), REMOTE_ADDR="203.0.113.5").status_code == 302
    url = reverse("checkout:document_invoice", args=[token_of(made[2])])
    refused = client.post(url, form_data(), REMOTE_ADDR="203.0.113.5")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "No invoice was issued" in refused.content.decode()
    assert Invoice.objects.count() == 2
    assert client.post(url, form_data(), REMOTE_ADDR="198.51.100.5").status_code == 302


# --- VIES (a loopback peer answering as VIES's REST API does) -------------------------------------


@pytest.fixture
def vies(settings):
    asked = []
    answer = {"valid": True}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            asked.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({**asked[-1], **answer}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.INVOICE_VIES_URL = f"http://127.0.0.1:{server.server_port}/check-vat-number"
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    yield asked, answer
    server.shutdown()
    server.server_close()


def test_vies_is_not_asked_unless_turned_on(client, receipt, vies, settings):
    asked, _ = vies
    assert settings.INVOICE_VIES_CHECK is False
    url = reverse("checkout:document_invoice", args=[token_of(receipt)])
    assert client.post(url, form_data()).status_code == 302
    assert asked == [] and Invoice.objects.get().vies_valid is None


def test_vies_when_on_refuses_an_unknown_id_and_records_a_known_one(
    client, receipt, vies, settings
):
    asked, answer = vies
    settings.INVOICE_VIES_CHECK = True
    url = reverse("checkout:document_invoice", args=[token_of(receipt)])
    answer["valid"] = False
    refused = client.post(url, form_data("DE"))
    assert refused.status_code == 400 and "VIES" in refused.context["form"].errors["vat_id"][0]
    assert asked == [{"countryCode": "DE", "vatNumber": "136695976"}]
    answer["valid"] = True
    assert client.post(url, form_data("DE")).status_code == 302
    assert Invoice.objects.get().vies_valid is True


def test_vies_down_falls_back_to_the_format_check(client, receipt, settings):
    settings.INVOICE_VIES_CHECK = True
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.INVOICE_VIES_URL = "http://127.0.0.1:9/check-vat-number"  # discard port: refused
    url = reverse("checkout:document_invoice", args=[token_of(receipt)])
    assert client.post(url, form_data()).status_code == 302
    assert Invoice.objects.get().vies_valid is None


def test_a_credit_note_after_the_invoice_names_the_invoice(receipt):
    invoice = invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer())
    refund = Refund.objects.create(
        payment=receipt.payment, amount=100, reason="requested_by_customer", requested_by="finance"
    )
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.SUCCEEDED)
    note = credit_notes.credit_note_issue(refund_id=refund.pk)
    text = " ".join(
        PdfReader(io.BytesIO(credit_notes.credit_note_pdf(note))).pages[0].extract_text().split()
    )
    assert f"Corrects invoice {invoice.number}" in text and VALID["NL"] in text
