"""Stripe webhooks: signature checked, stored once, processed by retrieving the object from Stripe."""

import pytest

from checkout import services
from checkout.models import Payment, StripeEvent
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from tests.peers import intent_event, signed
from tests.taskqueue import TaskQueue


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


def test_an_event_about_a_settled_payment_is_concluded_as_stored_without_a_task(
    client, settings, finished, monkeypatch
):
    """A capture's payment_intent.succeeded comes after the capture is recorded: nothing to ask
    Stripe, nothing to change, so no task. An event about a held payment still queues one."""
    payment = finished.payment
    assert payment.status == P.CAPTURED
    queue = TaskQueue(monkeypatch)
    intent = payment.stripe_payment_intent_id
    for _ in range(2):  # Stripe sends again until answered; stored once either way
        succeeded = intent_event("evt_captured", intent, "succeeded", "payment_intent.succeeded")
        assert signed(client, settings, succeeded).status_code == 200
    assert queue.names() == []
    event = StripeEvent.objects.get(event_id="evt_captured")
    assert event.processed_at is not None
    assert event.outcome == f"payment {payment.pk}: nothing to do (captured when received)"

    # The same event while the payment is still held: the events worker asks Stripe.
    Payment.objects.filter(pk=payment.pk).update(status=P.AUTHORIZED)
    assert signed(client, settings, intent_event("evt_held", intent)).status_code == 200
    held = StripeEvent.objects.get(event_id="evt_held")
    assert held.processed_at is None
    assert [(q.name, q.args) for q in queue.pending] == [("stripe_event_process", (held.pk,))]
    # A refund's event is checked against Stripe's refunds whatever the payment's state.
    Payment.objects.filter(pk=payment.pk).update(status=P.CAPTURED)
    refund = {
        "id": "evt_refund",
        "type": "charge.refunded",
        "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": intent}},
    }
    assert signed(client, settings, refund).status_code == 200
    assert queue.names() == ["stripe_event_process", "stripe_event_process"]
