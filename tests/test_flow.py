"""The purchase, service by service, against a real localstripe: pay, start, charge, stop, capture, receipt."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from checkout import services
from checkout.models import ChargingSession, Receipt
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.models import Evse, SimulatedSession

VISA = "4242424242424242"
VISA_3DS = "4000002500003155"
DECLINED = "4000000000000341"


def test_pay_charge_stop_capture_receipt(
    connector, pay, tick, stripe, django_capture_on_commit_callbacks
):
    session = pay(connector, email="driver@example.com")
    assert session.status == S.STARTING
    assert session.payment.status == P.AUTHORIZED
    intent = stripe.intent(session.payment.stripe_payment_intent_id)
    assert intent["status"] == "requires_capture" and intent["amount"] == 2000
    assert intent["capture_method"] == "manual"

    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    t0 = sim.accept_at
    tick(t0)
    session.refresh_from_db()
    assert session.status == S.CHARGING
    # 22 kW for half an hour = 11 kWh at 0.50 + 21% VAT = 6.655 -> 6.66 EUR
    tick(t0 + timedelta(minutes=30))
    session.refresh_from_db()
    assert session.kwh == Decimal("11.0000")
    assert session.cost_incl_vat == Decimal("6.66")

    with django_capture_on_commit_callbacks(execute=True):
        services.session_request_stop(session_id=session.pk)
    session.refresh_from_db()
    assert session.status == S.STOPPING
    SimulatedSession.objects.filter(pk=sim.pk).update(stop_requested_at=t0 + timedelta(minutes=30))
    tick(t0 + timedelta(minutes=30, seconds=5))

    session.refresh_from_db()
    payment = session.payment
    assert session.status == S.FINISHED
    assert payment.status == P.CAPTURED
    assert payment.amount_captured == 666
    intent = stripe.intent(payment.stripe_payment_intent_id)
    assert intent["status"] == "succeeded"
    charge = intent["latest_charge"]  # localstripe expands it; it releases the rest as a refund
    assert charge["captured"] and charge["amount"] - charge["amount_refunded"] == 666
    receipt = Receipt.objects.get(payment=payment)
    assert receipt.total_incl_vat == 666
    assert (
        receipt.number == f"{connector.evse.location.operator.receipt_prefix}-{receipt.year}-000001"
    )
    assert bytes(receipt.pdf).startswith(b"%PDF")
    assert mail.outbox and mail.outbox[0].to == ["driver@example.com"]
    assert mail.outbox[0].attachments[0][0] == f"{receipt.number}.pdf"
    kinds = list(session.events.values_list("kind", flat=True))
    assert "receipt_issued" in kinds and "csms_start" in kinds


def test_capture_is_capped_at_the_hold(
    connector, pay, tick, stripe, django_capture_on_commit_callbacks
):
    session = pay(connector, hold=2000)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    tick(sim.accept_at)
    # 3 hours at 22 kW = 66 kWh, but the car holds 60: 60 * 0.605 = 36.30 EUR > 20 EUR hold.
    with django_capture_on_commit_callbacks(execute=True):
        services.session_request_stop(session_id=session.pk)
    SimulatedSession.objects.filter(pk=sim.pk).update(
        stop_requested_at=sim.accept_at + timedelta(hours=3)
    )
    tick(sim.accept_at + timedelta(hours=3))
    session.refresh_from_db()
    payment = session.payment
    assert payment.status == P.CAPTURED
    assert payment.amount_captured == payment.amount_held == 2000
    assert payment.shortfall == 3630 - 2000
    # The receipt's VAT is on the 20.00 charged: 20.00 - round(20.00 / 1.21 = 16.5289) = 3.47.
    receipt = Receipt.objects.get(payment=payment)
    assert (receipt.total_excl_vat, receipt.vat_amount, receipt.total_incl_vat) == (1653, 347, 2000)


def test_zero_cost_cancels_the_hold(
    connector, pay, tick, stripe, django_capture_on_commit_callbacks
):
    session = pay(connector)
    ChargingSession.objects.filter(pk=session.pk).update(status=S.STOPPING)
    session.refresh_from_db()
    from stations.csms.base import SessionStatus, SessionUpdate

    with django_capture_on_commit_callbacks(execute=True):
        services.session_apply_update(
            SessionUpdate(
                reference=session.csms_reference,
                status=SessionStatus.COMPLETED,
                kwh=Decimal(0),
                started_at=timezone.now(),
                ended_at=timezone.now(),
                final=True,
            )
        )
    session.payment.refresh_from_db()
    assert session.payment.status == P.CANCELED
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert not Receipt.objects.exists()


def test_declined_card_holds_nothing(connector, pay, stripe):
    session = pay(connector, card=DECLINED)
    assert session.status == S.FAILED
    assert session.payment.status == P.FAILED
    assert "declined" in session.payment.decline_message.lower()
    # The EVSE is free again for the next driver.
    assert pay(connector).payment.status == P.AUTHORIZED


def test_three_d_secure_then_refresh(connector, pay, stripe, django_capture_on_commit_callbacks):
    session = pay(connector, card=VISA_3DS)
    payment = session.payment
    assert payment.status == P.REQUIRES_ACTION
    assert session.status == S.AUTHORIZING
    stripe.authenticate(payment.stripe_payment_intent_id, payment.client_secret)
    with django_capture_on_commit_callbacks(execute=True):
        services.payment_refresh(session_id=session.pk)
    session.refresh_from_db()
    assert session.payment.status == P.AUTHORIZED
    assert session.status == S.STARTING


def test_three_d_secure_failed(connector, pay, stripe, django_capture_on_commit_callbacks):
    session = pay(connector, card=VISA_3DS)
    stripe.authenticate(
        session.payment.stripe_payment_intent_id, session.payment.client_secret, success=False
    )
    services.payment_refresh(session_id=session.pk)
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.payment.status == P.FAILED


@pytest.mark.parametrize("behaviour", [Evse.SimBehaviour.REJECT, Evse.SimBehaviour.OCCUPIED])
def test_rejected_start_cancels_the_hold(connector, pay, stripe, behaviour):
    Evse.objects.filter(pk=connector.evse.pk).update(sim_behaviour=behaviour)
    connector.evse.refresh_from_db()
    session = pay(connector)
    assert session.status == S.FAILED
    assert session.payment.status == P.CANCELED
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"


def test_start_that_never_answers_times_out(
    connector, pay, stripe, settings, django_capture_on_commit_callbacks
):
    Evse.objects.filter(pk=connector.evse.pk).update(sim_behaviour=Evse.SimBehaviour.TIMEOUT)
    connector.evse.refresh_from_db()
    session = pay(connector)
    assert session.status == S.STARTING  # the eager timeout check ran too early to fail it
    waited = (session.start_deadline - session.start_requested_at).total_seconds()
    assert settings.CSMS_START_TIMEOUT_SECONDS <= waited < settings.CSMS_START_TIMEOUT_SECONDS + 1
    with django_capture_on_commit_callbacks(execute=True):
        services.session_check_start_timeout(
            session_id=session.pk, now=session.start_deadline - timedelta(seconds=1)
        )
    session.refresh_from_db()
    assert session.status == S.STARTING
    with django_capture_on_commit_callbacks(execute=True):
        services.session_check_start_timeout(session_id=session.pk, now=session.start_deadline)
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.failure_reason == "The charger did not respond."
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"


def test_late_start_after_failure_is_stopped(
    connector, pay, tick, stripe, settings, django_capture_on_commit_callbacks
):
    Evse.objects.filter(pk=connector.evse.pk).update(sim_behaviour=Evse.SimBehaviour.SLOW)
    connector.evse.refresh_from_db()
    session = pay(connector)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_fail(session_id=session.pk, reason="The charger did not respond.")
    tick(timezone.now() + timedelta(seconds=settings.SIMULATOR_SLOW_START_SECONDS + 1))
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert "late_start_stopped" in session.events.values_list("kind", flat=True)
    assert (
        SimulatedSession.objects.get(reference=session.csms_reference).stop_requested_at is not None
    )


def test_one_active_session_per_evse(connector, pay):
    pay(connector)
    with pytest.raises(services.CheckoutError, match="already"):
        services.session_create(evse=connector.evse, connector=connector, hold_amount=2000)


def test_double_tapped_pay_creates_one_intent(
    connector, stripe, django_capture_on_commit_callbacks
):
    session = services.session_create(evse=connector.evse, connector=connector, hold_amount=2000)
    card = stripe.card_token(VISA)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.payment_authorize(session_id=session.pk, payment_method_id=card)
        second = services.payment_authorize(session_id=session.pk, payment_method_id=card)
    assert first.stripe_payment_intent_id == second.stripe_payment_intent_id
    assert session.events.filter(kind="stripe_intent_created").count() == 1


def test_hold_must_be_an_offered_amount(connector, stripe):
    with pytest.raises(services.CheckoutError, match="amounts offered"):
        services.session_create(evse=connector.evse, connector=connector, hold_amount=1)


def test_evse_out_of_order_cannot_be_paid(connector, stripe):
    Evse.objects.filter(pk=connector.evse.pk).update(status=Evse.Status.OUT_OF_ORDER)
    connector.evse.refresh_from_db()
    with pytest.raises(services.CheckoutError, match="not available"):
        services.session_create(evse=connector.evse, connector=connector, hold_amount=2000)


def test_abandoned_checkout_is_failed_and_its_hold_released(
    connector, pay, stripe, settings, django_capture_on_commit_callbacks
):
    from checkout import tasks

    session = pay(connector, card=VISA_3DS)  # the driver never finishes 3-D Secure
    assert session.status == S.AUTHORIZING
    tasks.sweep_abandoned_checkouts()
    session.refresh_from_db()
    assert session.status == S.AUTHORIZING  # not yet: the driver may still be typing
    ChargingSession.objects.filter(pk=session.pk).update(
        created_at=timezone.now() - timedelta(minutes=settings.CHECKOUT_ABANDON_MINUTES + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep_abandoned_checkouts()
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.payment.status == P.CANCELED
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert pay(connector).payment.status == P.AUTHORIZED  # the EVSE is free again


def test_spending_cap_stops_charging_before_the_hold_is_reached(connector, pay, tick, stripe):
    session = pay(connector, hold=2000)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    tick(sim.accept_at)
    # 0.605 EUR/kWh at 22 kW: 30 kWh (81 min 49 s) cost 18.15, below 20.00 - 1.00 margin; 32 kWh cost 19.36.
    tick(sim.accept_at + timedelta(hours=30 / 22))
    session.refresh_from_db()
    assert session.status == S.CHARGING
    tick(sim.accept_at + timedelta(hours=32 / 22))
    session.refresh_from_db()
    assert session.status == S.STOPPING
    assert "spending cap" in session.events.get(kind="stop_requested").message
    assert SimulatedSession.objects.get(pk=sim.pk).stop_requested_at is not None


def test_start_retried_after_a_transient_csms_error(
    connector, pay, stripe, monkeypatch, django_capture_on_commit_callbacks
):
    from celery.exceptions import Retry

    from stations.csms.base import CsmsError
    from stations.csms.simulator import SimulatorAdapter

    real_start = SimulatorAdapter.start_session
    calls = []

    def flaky_start(self, **kwargs):  # the CSMS times out once, then answers
        calls.append(kwargs["reference"])
        if len(calls) == 1:
            raise CsmsError("timed out")
        return real_start(self, **kwargs)

    monkeypatch.setattr(SimulatorAdapter, "start_session", flaky_start)
    session = services.session_create(evse=connector.evse, connector=connector, hold_amount=2000)
    # The task asks Celery to retry it with backoff.
    with pytest.raises(Retry), django_capture_on_commit_callbacks(execute=True):
        services.payment_authorize(session_id=session.pk, payment_method_id=stripe.card_token(VISA))
    session.refresh_from_db()
    assert session.status == S.STARTING
    services.session_request_start(session_id=session.pk)  # what the task's retry does
    services.session_request_start(session_id=session.pk)  # a duplicate retry sends nothing more
    assert calls == [session.csms_reference, session.csms_reference]
    assert SimulatedSession.objects.filter(reference=session.csms_reference).count() == 1
