"""Abuse limits on Pay, in process: 429 before Stripe, the generic decline, the audit, the spike flag.

The same attacks against the real stack (gunicorn, Redis, localstripe) are in test_attack_card_testing.py.
"""

import pytest
from django.urls import reverse

from checkout import pay_challenge, pay_limits, payments
from checkout.models import ChargingSession, Payment, PaymentEvent
from checkout.states import PaymentStatus as P
from stations import qr
from tests.factories import ConnectorFactory

VISA = "4242424242424242"
DECLINED = "4000000000000341"
ISSUER_REASON = "Your card has insufficient funds."


@pytest.fixture
def evses(db, stripe, settings):
    # Each test turns on the limit it is about; the others stay out of its way.
    settings.PAY_RATE_PER_IP = settings.PAY_RATE_PER_EVSE = settings.PAY_RATE_PER_CARD = ""
    settings.PAY_DECLINES_PER_EVSE = settings.PAY_DECLINES_SPIKE_TOTAL = ""
    return [ConnectorFactory().evse for _ in range(3)]


def pay(client, evse, stripe, card=DECLINED, ip="127.0.0.1", **headers):
    connector = evse.connectors.get()
    data = {
        "connector": connector.pk,
        "hold_amount": 2000,
        "price": connector.tariff.price_digest,  # the price the page showed
        "payment_method": stripe.card_token(card),
    }
    return client.post(
        reverse("checkout:pay", args=[qr.code_for(evse)]), data, REMOTE_ADDR=ip, **headers
    )


def assert_refused(response):
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert body["ok"] is False and body["held"] is False
    assert "Nothing has been charged" in body["message"] and "try again in" in body["message"]
    assert body["retry_after"] == int(response["Retry-After"])


def test_declines_at_one_evse_pause_pay_there_and_flag_it(client, evses, stripe, settings):
    settings.PAY_DECLINES_PER_EVSE = "3/h"
    evse, other = evses[0], evses[1]
    for _ in range(3):
        assert pay(client, evse, stripe).status_code == 402
    intents_before = Payment.objects.exclude(stripe_payment_intent_id=None).count()

    assert_refused(pay(client, evse, stripe))
    assert_refused(
        pay(client, evse, stripe, card=VISA)
    )  # a good card waits too: the EVSE is paused
    # Nothing reached Stripe: no session, no payment, no PaymentIntent.
    assert ChargingSession.objects.filter(evse=evse).count() == 3
    assert Payment.objects.exclude(stripe_payment_intent_id=None).count() == intents_before

    # Staff see it: the third decline's session needs attention, said once.
    flagged = ChargingSession.objects.exclude(attention="")
    assert [s.evse for s in flagged] == [evse]
    assert "possible card testing" in flagged[0].attention and evse.evse_id in flagged[0].attention
    assert PaymentEvent.objects.filter(kind="attention").count() == 1

    # Another charger is not affected.
    assert pay(client, other, stripe, card=VISA).status_code == 200


def test_one_client_is_limited_and_another_is_not(client, evses, stripe, settings):
    settings.PAY_RATE_PER_IP = "2/10m"
    for evse in evses[:2]:
        assert pay(client, evse, stripe, ip="203.0.113.7").status_code == 402
    assert_refused(pay(client, evses[2], stripe, ip="203.0.113.7"))
    assert pay(client, evses[2], stripe, card=VISA, ip="198.51.100.1").status_code == 200


def test_one_card_is_limited_across_clients_and_chargers(client, evses, stripe, settings):
    settings.PAY_RATE_PER_CARD = "2/h"
    assert payments.card_fingerprint(stripe.card_token(DECLINED))  # localstripe has fingerprints
    for n, evse in enumerate(evses[:2]):
        assert pay(client, evse, stripe, ip=f"192.0.2.{n + 1}").status_code == 402
    assert_refused(pay(client, evses[2], stripe, ip="192.0.2.9"))  # a new token, the same card
    assert pay(client, evses[2], stripe, card=VISA, ip="192.0.2.9").status_code == 200


def test_a_card_without_fingerprint_is_only_counted_by_the_other_limits(
    client, evses, stripe, settings, monkeypatch
):
    settings.PAY_RATE_PER_CARD = "1/h"
    monkeypatch.setattr(payments, "card_fingerprint", lambda pm: "")
    for evse in evses[:3]:
        assert pay(client, evse, stripe).status_code == 402


def test_plain_form_gets_a_page(client, evses, stripe, settings):
    settings.PAY_RATE_PER_EVSE = "1/10m"
    assert pay(client, evses[0], stripe).status_code == 402
    response = pay(client, evses[0], stripe, HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    html = response.content.decode()
    assert "Too many payment attempts" in html and "Nothing has been charged" in html


def test_driver_sees_a_generic_decline_and_staff_the_reason(client, evses, stripe, monkeypatch):
    def refused(**kwargs):
        raise payments.PaymentDeclined(ISSUER_REASON)

    monkeypatch.setattr(payments, "create", refused)
    response = pay(client, evses[0], stripe, card=VISA)
    assert response.status_code == 402
    body = response.json()
    assert body == {
        "ok": False,
        "held": False,
        "message": "Your card was declined. Nothing has been charged. "
        "Try another card or payment method.",
    }
    session = ChargingSession.objects.get()
    assert session.failure_reason == "Your card was declined."  # the status page shows this
    assert ISSUER_REASON not in client.get(f"/s/{session.public_id}/").content.decode()
    assert session.payment.status == P.FAILED and session.payment.decline_message == ISSUER_REASON
    assert session.events.filter(kind="payment_status", message=ISSUER_REASON).exists()


def test_a_spike_across_chargers_is_flagged(client, evses, stripe, settings):
    settings.PAY_DECLINES_SPIKE_TOTAL = "2/h"
    for evse in evses[:3]:
        assert pay(client, evse, stripe).status_code == 402
    flagged = ChargingSession.objects.exclude(attention="")
    assert len(flagged) == 1 and "across all chargers" in flagged[0].attention


def test_a_failing_cache_lets_drivers_pay(client, evses, stripe, settings, monkeypatch):
    settings.PAY_RATE_PER_IP = "1/10m"

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(pay_limits, "get_usage", broken)
    for evse in evses[:2]:
        assert pay(client, evse, stripe).status_code == 402


def test_challenge_is_checked_by_the_replaceable_hook(client, evses, stripe, settings, monkeypatch):
    settings.PAY_CHALLENGE_SECRET_KEY, settings.PAY_CHALLENGE_SITE_KEY = "test-secret", "site"
    assert (
        'class="cf-turnstile" data-sitekey="site"'
        in client.get(reverse("checkout:scan", args=[qr.code_for(evses[0])])).content.decode()
    )
    seen = []
    monkeypatch.setattr(pay_challenge, "verify", lambda token, ip: seen.append(token) or False)
    response = pay(client, evses[0], stripe, card=VISA)
    assert response.status_code == 403 and "Nothing has been charged" in response.json()["message"]
    assert seen == [] and not Payment.objects.exists()  # no token: Cloudflare is not even asked

    connector = evses[0].connectors.get()
    data = {"connector": connector.pk, "hold_amount": 2000, "price": connector.tariff.price_digest}
    data["payment_method"] = stripe.card_token(VISA)
    data[pay_challenge.FIELD] = "tok"
    url = reverse("checkout:pay", args=[qr.code_for(evses[0])])
    assert client.post(url, data).status_code == 403 and seen == ["tok"]
    monkeypatch.setattr(pay_challenge, "verify", lambda token, ip: True)
    assert client.post(url, data).status_code == 200


def test_radar_session_goes_to_stripe_only(settings, monkeypatch):
    sent = []

    def fake_call(fn, *args, params=None, **kwargs):
        sent.append(params)
        raise payments.PaymentGatewayError("stop here")

    monkeypatch.setattr(payments, "_call", fake_call)
    for base in ("", "http://127.0.0.1:1"):
        settings.STRIPE_API_BASE = base
        with pytest.raises(payments.PaymentGatewayError):
            payments.create(
                amount=2000,
                currency="EUR",
                payment_method="pm_1",
                metadata={},
                idempotency_key="k",
                radar_session="rse_123",
            )
    assert sent[0]["radar_options"] == {"session": "rse_123"}
    assert "radar_options" not in sent[1]  # localstripe refuses unknown parameters


def test_production_needs_a_shared_cache(settings):
    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [e.id for e in pay_limits.check_shared_cache()] == ["pay_limits.E001"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/1",
        }
    }
    assert pay_limits.check_shared_cache() == []
