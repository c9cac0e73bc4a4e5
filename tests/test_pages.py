"""What drivers and staff see: checkout, invalid codes, paying over HTTP, status, receipt download, admin QR."""

import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from checkout import services
from checkout.models import ChargingSession, Payment
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import demo, qr
from stations.csms.base import SessionStatus as Cs
from stations.csms.base import SessionUpdate
from stations.models import ChargingStation, Evse

VISA = "4242424242424242"
DECLINED = "4000000000000341"


@pytest.fixture
def dc(db, stripe):
    """The demo DC charger: a start fee, a price per kWh and a per-minute fee after a grace period."""
    demo.seed()
    return Evse.objects.get(evse_id="NL*DPY*E0002*1")


def checkout_path(evse):
    return reverse("checkout:scan", args=[qr.code_for(evse)])


def test_checkout_page_shows_everything_before_any_script(
    client, dc, django_assert_max_num_queries
):
    with django_assert_max_num_queries(
        4
    ):  # the budget (docs/design.md §11); the 4th counts the scan
        response = client.get(checkout_path(dc))
    assert response.status_code == 200
    html = response.content.decode()
    for text in [
        "A10 Fast Charging Hub",
        "Ringweg-Zuid 12, 1083 HP Amsterdam",
        "NL*DPY*E0002*1",
        "CCS",
        "DC",
        "150 kW",
        "Available",
        "Prices include VAT",
        "Amount to hold",
        "E-mail for the receipt",
    ]:
        assert text in html, text
    # AFIR order: per kWh, per minute, per session. 0.59 + 21% VAT = 0.7139; 6.00/h + 21% = 0.121/min.
    rows = re.findall(r'<th scope="row">(.*?)</th>\s*<td>(.*?)</td>', html, re.DOTALL)
    labels = [re.sub(r"<.*?>|\s+", " ", label).strip() for label, _ in rows]
    assert [label.split(" ")[1] for label in labels] == ["kWh", "minute", "session"]
    assert [value for _, value in rows] == ["0.7139 EUR", "0.121 EUR", "1.21 EUR"]
    assert "after 1 h" in labels[1] or "1 h" in labels[1]
    holds = re.findall(r'name="hold_amount" value="(\d+)"[^>]*?(checked)?>', html)
    assert [(value, bool(checked)) for value, checked in holds] == [
        ("2000", False),
        ("3500", True),
        ("5000", False),
    ]
    assert re.search(r"<button[^>]*>Pay</button>", html)


@pytest.mark.parametrize("mangle", ["tag", "unknown", "voided", "garbage"])
def test_invalid_code_is_a_clear_404_with_no_payment(client, dc, mangle, settings, caplog):
    code = qr.code_for(dc)
    if mangle == "tag":
        code = code[:-1] + ("a" if code[-1] != "a" else "b")
    elif mangle == "unknown":
        code = qr.code_for(Evse(pk=987654, sticker_version=1))
    elif mangle == "voided":
        Evse.objects.filter(pk=dc.pk).update(sticker_version=2)
    else:
        code = "not-a-code"
    response = client.get(f"/q/{code}")
    assert response.status_code == 404
    html = response.content.decode()
    assert "This code is not valid" in html
    # No form but the language switch's (which posts to Django's set_language, not to Pay).
    assert re.findall(r'<form[^>]*action="([^"]*)"', html) == [reverse("set_language")]
    assert "Pay" not in html
    assert "invalid QR code scanned" in caplog.text
    assert client.post(f"/q/{code}/pay", {"connector": 1}).status_code == 404


def test_rotated_keys_still_verify_old_stickers(dc, settings):
    old_code = qr.code_for(dc)
    settings.QR_SIGNING_KEYS = ["new-key", *settings.QR_SIGNING_KEYS]
    assert qr.code_for(dc) != old_code
    assert qr.verify(old_code) == dc
    settings.QR_SIGNING_KEYS = ["new-key"]
    with pytest.raises(qr.InvalidCode):
        qr.verify(old_code)


def price_shown(html: str) -> str:
    """The digest of the price a checkout page showed, as its form posts it back."""
    return re.search(r'name="price" value="([0-9a-f]+)"', html)[1]


def _pay(client, evse, stripe, card=VISA, **extra):
    page = client.get(checkout_path(evse)).content.decode()
    data = {
        "connector": evse.connectors.get().pk,
        "hold_amount": 2000,
        "payment_method": stripe.card_token(card),
        # A busy EVSE's page has no form: post what a page loaded a moment earlier showed.
        "price": price_shown(page)
        if 'name="price"' in page
        else evse.connectors.get().tariff.price_digest,
    }
    data.update(extra)
    return client.post(reverse("checkout:pay", args=[qr.code_for(evse)]), data)


def test_pay_over_http_lands_on_the_status_page(
    client, dc, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _pay(client, dc, stripe, email="me@example.com")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] and body["next"] == "status"
    session = ChargingSession.objects.get()
    assert body["status_url"] == f"/s/{session.public_id}/"
    assert session.email == "me@example.com"
    page = client.get(body["status_url"]).content.decode()
    assert "Starting" in page and "20.00 EUR" in page


def test_declined_card_says_nothing_was_charged(client, dc, stripe):
    response = _pay(client, dc, stripe, card=DECLINED)
    assert response.status_code == 402
    assert response.json()["held"] is False
    assert "Nothing has been charged" in response.json()["message"]
    assert Payment.objects.get().status == P.FAILED


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("hold_amount", "1234", "amounts offered"),
        ("payment_method", "tok_<script>", "could not be read"),
        ("email", "not-an-email", "valid email"),
        ("connector", "999999", "does not belong"),
    ],
)
def test_bad_input_is_refused_and_holds_nothing(client, dc, stripe, field, value, message):
    response = _pay(client, dc, stripe, **{field: value})
    assert response.status_code in (400, 409)
    assert (
        message in response.json()["message"]
        and "Nothing has been charged" in response.json()["message"]
    )
    assert not Payment.objects.exclude(status=P.PENDING).exists()
    assert not Payment.objects.filter(stripe_payment_intent_id__isnull=False).exists()


def test_busy_evse_is_refused(client, dc, stripe, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert _pay(client, dc, stripe).status_code == 200
    response = _pay(client, dc, stripe)
    assert response.status_code == 409
    assert "already paying for or using this charger" in response.json()["message"]


def _finished_session(connector, stripe, capture):
    with capture(execute=True):
        session = services.session_create(
            evse=connector.evse, connector=connector, hold_amount=2000
        )
        services.payment_authorize(session_id=session.pk, payment_method_id=stripe.card_token(VISA))
    with capture(execute=True):
        now = timezone.now()
        services.session_apply_update(
            SessionUpdate(
                reference=session.csms_reference,
                status=Cs.ACTIVE,
                kwh=Decimal(1),
                started_at=now - timedelta(hours=1),
            )
        )
        services.session_request_stop(session_id=session.pk)
        services.session_apply_update(
            SessionUpdate(
                reference=session.csms_reference,
                status=Cs.COMPLETED,
                kwh=Decimal(10),
                started_at=now - timedelta(hours=1),
                ended_at=now,
                final=True,
            )
        )
    session.refresh_from_db()
    assert session.status == S.FINISHED
    return session


def test_status_page_charging_then_finished_with_receipt(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert _pay(client, connector.evse, stripe).status_code == 200  # this browser paid
    session = ChargingSession.objects.get()
    ChargingSession.objects.filter(pk=session.pk).update(status=S.CHARGING)
    page = client.get(f"/s/{session.public_id}/").content.decode()
    assert "Charging" in page and "Stop charging" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/s/{session.public_id}/stop")
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == S.STOPPING


def test_receipt_download(client, connector, stripe, django_capture_on_commit_callbacks):
    session = _finished_session(connector, stripe, django_capture_on_commit_callbacks)
    page = client.get(f"/s/{session.public_id}/").content.decode()
    assert "Finished" in page and "Receipt" in page and "6.05 EUR" in page  # 10 kWh * 0.50 * 1.21
    assert "13.95 EUR" in page  # released: 20.00 - 6.05
    assert "<dt>Cost</dt>" in page and "Cost so far" not in page
    assert ">1 h 0 min</span>" in page  # the duration is shown without any script
    response = client.get(f"/s/{session.public_id}/receipt.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    receipt = session.payment.receipt
    for expected in [
        receipt.number,
        connector.evse.evse_id,
        "VAT id",
        "Total (incl. VAT)",
        "6.05 EUR",
        "Released to you",
        "13.95 EUR",
        "21 % (NL)",  # the VAT table: rate, net 5.00, VAT 1.05
        "5.00 EUR",
        "1.05 EUR",
        "Visa ending 4242",
    ]:
        assert expected in text, expected


def test_failed_start_page_says_the_hold_was_released(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    Evse.objects.filter(pk=connector.evse.pk).update(sim_behaviour=Evse.SimBehaviour.REJECT)
    connector.evse.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        session = services.session_create(
            evse=connector.evse, connector=connector, hold_amount=2000
        )
        services.payment_authorize(session_id=session.pk, payment_method_id=stripe.card_token(VISA))
    page = client.get(f"/s/{session.public_id}/").content.decode()
    assert "Not started — nothing charged, your hold of 20.00 EUR was released." in page
    assert "The charger refused to start." in page
    assert f'href="{checkout_path(connector.evse)}">Try again</a>' in page


def test_unknown_status_page_is_404(client, db):
    assert client.get("/s/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/s/00000000-0000-0000-0000-000000000000/receipt.pdf").status_code == 404


def test_admin_shows_and_downloads_the_qr(admin_client, dc):
    page = admin_client.get(reverse("admin:stations_evse_change", args=[dc.pk])).content.decode()
    assert "<svg" in page and qr.url_for(dc) in page
    svg = admin_client.get(reverse("admin:stations_evse_qr", args=[dc.pk, "svg"]))
    assert (
        svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content
    )
    png = admin_client.get(reverse("admin:stations_evse_qr", args=[dc.pk, "png"]))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_admin_qr_needs_staff(client, dc):
    response = client.get(reverse("admin:stations_evse_qr", args=[dc.pk, "svg"]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_qr_url_command(dc, capsys):
    call_command("qr_url", "NL*DPY*E0002*1")
    assert capsys.readouterr().out.strip() == qr.url_for(dc)
    with pytest.raises(CommandError, match="No EVSE"):
        call_command("qr_url", "NL*XXX*E9999*1")


def test_seed_demo_is_idempotent(db):
    call_command("seed_demo", "--admin-password", "pw-for-test-only")
    first = (Evse.objects.count(), list(Evse.objects.order_by("pk").values_list("pk", "evse_id")))
    call_command("seed_demo")
    assert (
        Evse.objects.count(),
        list(Evse.objects.order_by("pk").values_list("pk", "evse_id")),
    ) == first
    # three on the simulator (AC, DC, DC with CCS and CHAdeMO), two OCPP direct (2.0.1 AC, 2.1 DC)
    assert first[0] == 5
    stations = {s.identity: s for s in ChargingStation.objects.all()}
    assert {i: s.protocol for i, s in stations.items()} == demo.OCPP_STATIONS
    assert all(s.password_matches(demo.ocpp_password(i)) for i, s in stations.items())


def test_evse_in_use_shows_in_use_and_no_pay_form(
    client, dc, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert _pay(client, dc, stripe).status_code == 200
    html = client.get(checkout_path(dc)).content.decode()
    assert "In use" in html and 'id="pay-form"' not in html
    assert "cannot be paid for right now. Nothing has been charged." in html


def test_unknown_card_is_a_clear_decline(client, dc, stripe):
    response = _pay(client, dc, stripe, payment_method="pm_doesnotexist")
    assert response.status_code == 402
    # The driver gets the one decline message; staff see what was wrong.
    assert "declined" in response.json()["message"]
    assert "Try another card" in response.json()["message"]
    payment = Payment.objects.get()
    assert payment.status == P.FAILED and "could not be used" in payment.decline_message


def test_stripe_unreachable_fails_cleanly_and_frees_the_evse(
    client, dc, stripe, settings, django_capture_on_commit_callbacks
):
    from tests.peers import free_port

    card = stripe.card_token(VISA)
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    page = client.get(checkout_path(dc)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("checkout:pay", args=[qr.code_for(dc)]),
            {
                "connector": dc.connectors.get().pk,
                "hold_amount": 2000,
                "payment_method": card,
                "price": price_shown(page),
            },
        )
    assert response.status_code == 503
    assert "Nothing will be charged" in response.json()["message"]
    session = ChargingSession.objects.get()
    assert session.status == S.FAILED and session.payment.status == P.CANCELED
    settings.STRIPE_API_BASE = stripe.base
    with django_capture_on_commit_callbacks(execute=True):
        assert _pay(client, dc, stripe).status_code == 200


def test_admin_refuses_a_tariff_the_engine_cannot_price(admin_client, dc):
    tariff = dc.connectors.get().tariff
    response = admin_client.post(
        reverse("admin:stations_tariff_change", args=[tariff.pk]),
        {
            "operator": tariff.operator_id,
            "name": tariff.name,
            "ocpi": '{"currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": -1}]}]}',
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "price" in response.content.decode() and "errorlist" in response.content.decode()
    tariff.refresh_from_db()
    assert tariff.ocpi["elements"][0]["price_components"][0]["price"] == "0.5900"
