"""A driver who closed the page finds the receipt again: four facts, the wallet's digits too, no
oracle for what did not match, a limit per client, and signed links that outlive the status page."""

import io
from datetime import date

import pytest
from django.core import mail, signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pypdf import PdfReader

from checkout import lookup, payments, receipts
from checkout.models import Payment
from tests.test_receipts import energy, finished_payment, issue

DAY = date(2026, 7, 15)  # START in test_receipts: 15:05 UTC, 17:05 in Amsterdam


@pytest.fixture
def receipt(db, settings):
    settings.RECEIPT_LOOKUP_RATE_PER_IP = settings.RECEIPT_LOOKUP_RATE_PER_EVSE = ""
    payment = finished_payment(energy("0.50", vat_rate=21), kwh="10.4")
    Payment.objects.filter(pk=payment.pk).update(
        card_last4="4242", wallet="apple_pay", wallet_last4="8731"
    )
    return issue(payment)


def facts(receipt, **changes):
    data = {
        "day": DAY.isoformat(),
        "evse_id": receipt.payment.session.evse.evse_id,
        "amount": f"{receipt.total_incl_vat // 100}.{receipt.total_incl_vat % 100:02d}",
        "last4": "4242",
    }
    return {**data, **changes}


def find(client, data, ip="198.51.100.20"):
    return client.post(reverse("checkout:receipt_find"), data, REMOTE_ADDR=ip)


def test_the_page_explains_the_wallet_digits(client, db):
    page = client.get(reverse("checkout:receipt_find")).content.decode()
    assert "Apple Pay" in page and "device account number" in page


def test_found_with_the_cards_digits_leads_to_the_receipt(client, receipt):
    assert receipt.total_incl_vat == 629  # 10.4 kWh x 0.50 + 21 % = 6.292
    response = find(client, facts(receipt))
    assert response.status_code == 302
    assert response["Location"] == lookup.receipt_link(receipt)
    page = client.get(response["Location"])
    assert page.status_code == 200 and receipt.number in page.content.decode()


def test_found_with_the_wallets_digits_and_a_typed_evse_id(client, receipt):
    typed = receipt.payment.session.evse.evse_id.replace("*", " ").lower()
    response = find(client, facts(receipt, last4="8731", evse_id=typed, amount="6,29"))
    assert response.status_code == 302
    assert lookup.receipt_from_token(response["Location"].split("/")[-2]) == receipt


@pytest.mark.parametrize("change", [{"last4": "4243"}, {"amount": "6.30"}, {"amount": "6.28"}])
def test_not_found_when_one_fact_is_off(client, receipt, change):
    response = find(client, facts(receipt, **change))
    assert response.status_code == 404
    assert "We found no receipt" in response.content.decode()
    assert receipt.number not in response.content.decode()


def test_not_found_on_another_day(client, receipt):
    assert find(client, facts(receipt, day="2026-07-16")).status_code == 404


def test_no_such_evse_and_wrong_digits_answer_alike(client, receipt):
    """Same status, same page (apart from the typed values echoed back), same queries."""
    right = facts(receipt)
    no_evse = facts(receipt, evse_id="XX*NOPE*E1*1")
    wrong_digits = facts(receipt, last4="0000")
    answers = []
    for data in (no_evse, wrong_digits):
        with CaptureQueriesContext(connection) as queries:
            response = find(client, data)
        page = response.content.decode()
        for key in ("evse_id", "last4"):
            page = page.replace(f'value="{data[key]}"', 'value="?"')
        page = page.replace(right["evse_id"], "?")
        csrf_free = [line for line in page.splitlines() if "csrfmiddlewaretoken" not in line]
        answers.append((response.status_code, csrf_free, len(queries)))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404


def test_a_bad_format_is_shown_next_to_its_field(client, receipt):
    response = find(client, facts(receipt, last4="42", amount="five"))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"last4", "amount"}
    assert "4 digits" in response.content.decode()


def test_too_many_lookups_from_one_client(client, receipt, settings):
    settings.RECEIPT_LOOKUP_RATE_PER_IP = "3/h"
    for _ in range(3):
        assert find(client, facts(receipt, last4="0000"), ip="203.0.113.9").status_code == 404
    refused = find(client, facts(receipt), ip="203.0.113.9")  # even the right facts now
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    text = refused.content.decode()
    assert "Please try again in" in text and "receipt e-mail" in text
    # Another client is not affected.
    assert find(client, facts(receipt), ip="198.51.100.77").status_code == 302


def test_too_many_lookups_for_one_evse_id(client, receipt, settings):
    settings.RECEIPT_LOOKUP_RATE_PER_EVSE = "2/h"
    for n in range(2):
        assert find(client, facts(receipt, last4="0000"), ip=f"203.0.113.{n}").status_code == 404
    assert find(client, facts(receipt), ip="203.0.113.50").status_code == 429


def test_lookup_needs_the_csrf_token(receipt):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(reverse("checkout:receipt_find"), facts(receipt)).status_code == 403


def test_the_signed_link_opens_the_receipt_and_its_pdf(client, receipt):
    link = lookup.receipt_link(receipt)
    assert client.get(link).status_code == 200
    token = link.split("/")[-2]
    pdf = client.get(reverse("checkout:document_receipt", args=[token]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert receipt.number in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()


def test_a_tampered_or_foreign_link_is_404(client, receipt):
    token = lookup.receipt_token(receipt)
    value, stamp, sig = token.split(":")
    tampered = [
        f"{receipt.pk + 1}:{stamp}:{sig}",  # another receipt's number, same signature
        f"{value}:{stamp}:{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        signing.TimestampSigner(salt="another-purpose").sign(str(receipt.pk)),
        "nonsense",
    ]
    for bad in tampered:
        assert client.get(reverse("checkout:document", args=[bad])).status_code == 404, bad
        assert client.get(reverse("checkout:document_receipt", args=[bad])).status_code == 404


def test_an_expired_link_is_404(client, receipt, settings):
    link = lookup.receipt_link(receipt)
    settings.RECEIPT_LINK_MAX_AGE_DAYS = -1
    assert client.get(link).status_code == 404


def test_the_status_page_and_the_email_carry_the_link(client, receipt, settings):
    session = receipt.payment.session
    link = lookup.receipt_link(receipt, absolute=True)
    assert link.startswith(settings.PUBLIC_BASE_URL)
    page = client.get(reverse("checkout:status", args=[session.public_id])).content.decode()
    assert link in page
    session.email = "driver@example.org"
    session.save(update_fields=["email"])
    receipts.receipt_email(receipt_id=receipt.pk)
    assert len(mail.outbox) == 1 and link in mail.outbox[0].body
    # The link in the e-mail opens the receipt.
    assert client.get(link.removeprefix(settings.PUBLIC_BASE_URL)).status_code == 200


def test_the_wallets_digits_are_read_from_the_payment_method():
    """Stripe's PaymentMethod of an Apple Pay payment: card.last4 is the card's, the wallet's
    dynamic_last4 is the device account number's."""
    intent = {
        "id": "pi_1",
        "status": "requires_capture",
        "created": 1784120700,
        "amount": 2000,
        "payment_method": {
            "id": "pm_1",
            "object": "payment_method",
            "type": "card",
            "card": {
                "brand": "visa",
                "last4": "4242",
                "wallet": {"type": "apple_pay", "dynamic_last4": "8731", "apple_pay": {}},
            },
        },
    }
    state = payments._state(intent)  # as Stripe's JSON parses
    assert (state.card_last4, state.wallet, state.wallet_last4) == ("4242", "apple_pay", "8731")
    intent["payment_method"]["card"]["wallet"] = None
    assert payments._state(intent).wallet_last4 == ""
