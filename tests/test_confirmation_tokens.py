"""The production checkout path: Pay with a Stripe.js ConfirmationToken, confirmed on the server.

Real Stripe cannot run here: localstripe plays it, with Stripe's ConfirmationToken added
(tests/localstripe_tokens.py). Tokens are made as a test integration makes them with real Stripe,
through the stripe library's test helper (POST /v1/test_helpers/confirmation_tokens).
"""

import pytest
import requests
import stripe as stripe_lib
from django.urls import reverse

from checkout import payments, services
from checkout.models import ChargingSession, Payment
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import qr
from tests.factories import ConnectorFactory

VISA = "4242424242424242"
VISA_3DS = "4000002500003155"
DECLINED = "4000000000000341"
CARD = {"exp_month": "12", "exp_year": "2034", "cvc": "123"}
UNUSABLE = (
    "These card details can no longer be used. Please enter them again. Nothing has been charged."
)


@pytest.fixture
def api(stripe):
    """The stripe library against the stand-in, as the app's own calls go."""
    return stripe_lib.StripeClient("sk_test_localstripe", base_addresses={"api": stripe.base})


@pytest.fixture
def evses(db, stripe, settings):
    settings.PAY_RATE_PER_IP = settings.PAY_RATE_PER_EVSE = settings.PAY_RATE_PER_CARD = ""
    settings.PAY_DECLINES_PER_EVSE = settings.PAY_DECLINES_SPIKE_TOTAL = ""
    return [ConnectorFactory().evse for _ in range(3)]


def post_pay(client, evse, ip="127.0.0.1", **card):
    connector = evse.connectors.get()
    data = {
        "connector": connector.pk,
        "hold_amount": 2000,
        "price": connector.tariff.price_digest,
        **card,
    }
    return client.post(reverse("checkout:pay", args=[qr.code_for(evse)]), data, REMOTE_ADDR=ip)


def intent_of(evse) -> str:
    return Payment.objects.get(session__evse=evse).stripe_payment_intent_id


# --- the stand-in, against Stripe's documented behaviour ---------------------------------------


def test_the_stand_in_keeps_stripes_confirmation_token_contract(api, stripe):
    made = api.v1.test_helpers.confirmation_tokens.create(
        params={"payment_method_data": {"type": "card", "card": {"number": VISA, **CARD}}}
    )
    token = api.v1.confirmation_tokens.retrieve(made.id).to_dict()
    assert token["id"].startswith("ctoken_") and token["object"] == "confirmation_token"
    assert token["payment_intent"] is None and token["use_stripe_sdk"] is True
    assert token["expires_at"] > token["created"]
    preview = token["payment_method_preview"]
    assert preview["type"] == "card" and preview["card"]["last4"] == "4242"
    assert preview["card"]["brand"] == "visa" and preview["card"]["fingerprint"]

    # Confirmed with the token, the intent holds the amount on the token's card.
    intent = api.v1.payment_intents.create(
        params={"amount": 2000, "currency": "eur", "capture_method": "manual"}
    )
    assert intent.status == "requires_payment_method"
    intent = api.v1.payment_intents.confirm(intent.id, params={"confirmation_token": made.id})
    assert intent.status == "requires_capture"
    card = api.v1.payment_methods.retrieve(intent.payment_method).card
    assert card.fingerprint == preview["card"]["fingerprint"] and card.last4 == "4242"
    assert api.v1.confirmation_tokens.retrieve(made.id).payment_intent == intent.id

    # Single use; an unknown id is Stripe's resource_missing; both name the parameter.
    other = api.v1.payment_intents.create(params={"amount": 2000, "currency": "eur"})
    with pytest.raises(stripe_lib.InvalidRequestError) as used:
        api.v1.payment_intents.confirm(other.id, params={"confirmation_token": made.id})
    assert used.value.http_status == 400 and used.value.param == "confirmation_token"
    with pytest.raises(stripe_lib.InvalidRequestError) as unknown:
        api.v1.payment_intents.confirm(other.id, params={"confirmation_token": "ctoken_unknown"})
    assert unknown.value.http_status == 404 and unknown.value.code == "resource_missing"
    assert unknown.value.param == "confirmation_token"

    # Create-and-confirm in one call takes it too, only with confirm=true.
    fresh = api.v1.test_helpers.confirmation_tokens.create(
        params={"payment_method": "pm_card_visa"}
    )
    with pytest.raises(stripe_lib.InvalidRequestError):
        api.v1.payment_intents.create(
            params={"amount": 2000, "currency": "eur", "confirmation_token": fresh.id}
        )
    held = api.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "capture_method": "manual",
            "confirm": True,
            "confirmation_token": fresh.id,
        }
    )
    assert held.status == "requires_capture"


def test_an_expired_token_is_refused(api, stripe):
    config = f"{stripe.base}/_config/confirmation_tokens"
    requests.post(config, data={"lifetime": "0"}, timeout=10).raise_for_status()
    try:
        token = stripe.confirmation_token(VISA)
    finally:
        requests.post(config, data={"lifetime": str(12 * 3600)}, timeout=10).raise_for_status()
    intent = api.v1.payment_intents.create(params={"amount": 2000, "currency": "eur"})
    with pytest.raises(stripe_lib.InvalidRequestError) as expired:
        api.v1.payment_intents.confirm(intent.id, params={"confirmation_token": token})
    assert expired.value.param == "confirmation_token" and "expired" in str(expired.value)


# --- Pay with a token --------------------------------------------------------------------------


def test_pay_with_a_token_holds_the_amount(client, evses, stripe):
    evse = evses[0]
    token = stripe.confirmation_token(VISA)
    response = post_pay(client, evse, confirmation_token=token)
    assert response.status_code == 200 and response.json()["ok"] is True

    payment = Payment.objects.get(session__evse=evse)
    assert payment.status == P.AUTHORIZED and payment.amount_held == 2000
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    intent = stripe.intent(payment.stripe_payment_intent_id)
    assert intent["status"] == "requires_capture" and intent["capture_method"] == "manual"
    assert intent["amount"] == 2000 and intent["payment_method"].startswith("pm_")
    assert payment.session.status == S.AUTHORIZED


def test_a_token_whose_card_asks_for_3ds_is_held_after_the_challenge(client, evses, stripe):
    first = post_pay(client, evses[0], confirmation_token=stripe.confirmation_token(VISA_3DS))
    assert first.status_code == 200 and first.json()["next"] == "authenticate"
    payment = Payment.objects.get(session__evse=evses[0])
    assert payment.status == P.REQUIRES_ACTION
    assert first.json()["client_secret"] == payment.client_secret
    # What stripe.handleNextAction does in the browser, then the page tells us.
    stripe.authenticate(payment.stripe_payment_intent_id, payment.client_secret)
    answer = client.post(first.json()["confirm_url"])
    assert answer.json()["next"] == "status"
    payment.refresh_from_db()
    assert payment.status == P.AUTHORIZED and payment.card_last4 == "3155"
    assert stripe.intent(payment.stripe_payment_intent_id)["status"] == "requires_capture"


def test_a_declined_token_holds_nothing(client, evses, stripe):
    response = post_pay(client, evses[0], confirmation_token=stripe.confirmation_token(DECLINED))
    assert response.status_code == 402
    assert response.json() == {
        "ok": False,
        "held": False,
        "message": "Your card was declined. Nothing has been charged. "
        "Try another card or payment method.",
    }
    payment = Payment.objects.get(session__evse=evses[0])
    assert payment.status == P.FAILED and payment.decline_message
    assert stripe.intent(payment.stripe_payment_intent_id)["status"] == "requires_payment_method"


@pytest.mark.parametrize("reuse", [True, False], ids=["used", "unknown"])
def test_a_used_or_unknown_token_is_refused_and_not_a_decline(
    client, evses, stripe, settings, reuse
):
    settings.PAY_DECLINES_PER_EVSE = "1/h"  # one counted decline would pause Pay at the EVSE
    if reuse:
        token = stripe.confirmation_token(VISA)
        assert post_pay(client, evses[0], confirmation_token=token).status_code == 200
    else:
        token = "ctoken_NoSuchToken1"

    response = post_pay(client, evses[1], confirmation_token=token)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "held": False, "message": UNUSABLE}
    session = ChargingSession.objects.get(evse=evses[1])
    assert session.status == S.FAILED and session.failure_reason == services.CARD_DETAILS_UNUSABLE
    assert session.payment.status == P.FAILED
    assert stripe.intent(intent_of(evses[1]))["status"] == "requires_payment_method"  # no hold

    # Not an issuer's decline: Pay at that EVSE is not paused, and a new token pays.
    response = post_pay(client, evses[1], confirmation_token=stripe.confirmation_token(VISA))
    assert response.status_code == 200


def test_pay_needs_exactly_one_card(client, evses, stripe):
    both = post_pay(
        client,
        evses[0],
        payment_method=stripe.card_token(VISA),
        confirmation_token=stripe.confirmation_token(VISA),
    )
    assert both.status_code == 400
    assert both.json()["message"] == (
        "The card details could not be read. Please enter them again. Nothing has been charged."
    )
    neither = post_pay(client, evses[0])
    assert neither.status_code == 400
    assert neither.json()["message"] == "Please enter your card details. Nothing has been charged."
    malformed = post_pay(client, evses[0], confirmation_token="pm_not_a_token")
    assert malformed.status_code == 400 and "could not be read" in malformed.json()["message"]
    assert not ChargingSession.objects.exists()


def test_the_card_limit_counts_a_tokens_card(client, evses, stripe, settings):
    settings.PAY_RATE_PER_CARD = "2/h"
    token = stripe.confirmation_token(DECLINED)
    fingerprint = payments.token_card_fingerprint(token)
    assert fingerprint and fingerprint == payments.card_fingerprint(stripe.card_token(DECLINED))

    for n, evse in enumerate(evses[:2]):
        response = post_pay(
            client,
            evse,
            ip=f"192.0.2.{n + 1}",
            confirmation_token=stripe.confirmation_token(DECLINED),
        )
        assert response.status_code == 402
    # A third try with the same card, from another client at another charger, reaches no Stripe write.
    third = post_pay(
        client, evses[2], ip="192.0.2.9", confirmation_token=stripe.confirmation_token(DECLINED)
    )
    assert third.status_code == 429 and "Nothing has been charged" in third.json()["message"]
    assert not ChargingSession.objects.filter(evse=evses[2]).exists()
    # Another card is not limited.
    other = post_pay(
        client, evses[2], ip="192.0.2.9", confirmation_token=stripe.confirmation_token(VISA)
    )
    assert other.status_code == 200


def test_a_confirm_lost_on_the_way_is_sent_again_with_the_token(connector, stripe, monkeypatch):
    """The first confirm never reached Stripe (a crash after the intent was created): the same
    press of Pay, arriving again, confirms the remembered intent with its token, once."""
    session = services.session_create(evse=connector.evse, connector=connector, hold_amount=2000)
    token = stripe.confirmation_token(VISA)
    real_confirm = payments.confirm

    def lost(*args, **kwargs):
        raise payments.PaymentGatewayError("timed out")

    monkeypatch.setattr(payments, "confirm", lost)
    with pytest.raises(payments.PaymentGatewayError):
        services.payment_authorize(session_id=session.pk, confirmation_token=token)
    payment = Payment.objects.get(session=session)
    assert payment.write_in_flight == "confirm" and payment.status == P.PENDING
    assert stripe.intent(payment.stripe_payment_intent_id)["status"] == "requires_payment_method"

    monkeypatch.setattr(payments, "confirm", real_confirm)
    again = services.payment_authorize(session_id=session.pk, confirmation_token=token)
    assert again.status == P.AUTHORIZED
    assert again.stripe_payment_intent_id == payment.stripe_payment_intent_id
    assert stripe.intent(again.stripe_payment_intent_id)["status"] == "requires_capture"
    assert session.events.filter(kind="stripe_intent_created").count() == 1
