"""Stripe webhooks: signature checked, stored once, processed by retrieving the object from Stripe."""

import pytest

from checkout import services
from checkout.models import StripeEvent
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from tests.peers import intent_event, signed


@pytest.mark.parametrize("secret", ["whsec_wrong", None])
def test_bad_or_missing_signature_is_400(client, settings, db, secret):
    if secret is None:
        response = client.post("/webhooks/stripe/", "{}", content_type="application/json")
    else:
        response = signed(client, settings, intent_event("evt_1", "pi_1"), secret=secret)
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_event_is_stored_once_and_unknown_intent_reported(
    client, settings, db, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert signed(client, settings, intent_event("evt_dup", "pi_unknown")).status_code == 200
        assert signed(client, settings, intent_event("evt_dup", "pi_unknown")).status_code == 200
    event = StripeEvent.objects.get()
    assert event.processed_at is not None
    assert "no payment for pi_unknown" in event.outcome


def test_webhook_completes_a_3ds_payment_by_asking_stripe(
    client, settings, connector, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        session = services.session_create(
            evse=connector.evse, connector=connector, hold_amount=2000
        )
        payment = services.payment_authorize(
            session_id=session.pk, payment_method_id=stripe.card_token("4000002500003155")
        )
    assert payment.status == P.REQUIRES_ACTION
    # The body claims success before it happened: we retrieve the intent and see it still needs action.
    with django_capture_on_commit_callbacks(execute=True):
        signed(client, settings, intent_event("evt_early", payment.stripe_payment_intent_id))
    payment.refresh_from_db()
    assert payment.status == P.REQUIRES_ACTION
    stripe.authenticate(payment.stripe_payment_intent_id, payment.client_secret)
    with django_capture_on_commit_callbacks(execute=True):
        signed(client, settings, intent_event("evt_late", payment.stripe_payment_intent_id))
    payment.refresh_from_db()
    session.refresh_from_db()
    assert payment.status == P.AUTHORIZED
    assert session.status == S.STARTING
