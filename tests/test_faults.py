"""Money under faults: Stripe failing every write in every way, tasks delivered twice, repairs.

Stripe is localstripe behind tests/faultproxy.py, which fails chosen requests (500, 429, silence,
or the worst: the write happens and its answer is lost) and counts the writes that really reached
localstripe. Tasks run through tests/taskqueue.py: retries go back on the queue, as on a broker.
Each test would fail if its rule were broken: a second capture, a hold left behind, a lost capture.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from checkout import refunds, services, sweeps
from checkout.models import ChargingSession, Payment, Receipt, Refund
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import qr
from stations.csms import simulator
from stations.models import Evse, SimulatedSession
from tests.factories import ConnectorFactory
from tests.faultproxy import stripe_behind_proxy
from tests.peers import intent_event, signed
from tests.taskqueue import TaskQueue

VISA = "4242424242424242"
FAULTS = ["500", "429", "timeout", "lost", "lost_timeout"]
WRITES = {
    "confirm": r"^/v1/payment_intents/[^/]+/confirm$",
    "capture": r"^/v1/payment_intents/[^/]+/capture$",
    "cancel": r"^/v1/payment_intents/[^/]+/cancel$",
    "refund": r"^/v1/refunds$",
}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def proxy(settings, localstripe):
    with stripe_behind_proxy(settings, localstripe, timeout=1) as proxy:
        yield proxy


@pytest.fixture
def queue(monkeypatch):
    return TaskQueue(monkeypatch)


@pytest.fixture
def connector(proxy):
    return ConnectorFactory()


def pay(client, localstripe, connector, *, card=VISA, hold=2000):
    response = client.post(
        reverse("checkout:pay", args=[qr.code_for(connector.evse)]),
        {
            "connector": connector.pk,
            "hold_amount": hold,
            "payment_method": localstripe.card_token(card),
            "price": connector.tariff.price_digest,  # what its checkout page shows
        },
    )
    return response, ChargingSession.objects.filter(evse=connector.evse).order_by("-pk").first()


def charge(queue, session, minutes=30):
    """Start, charge for `minutes`, stop: the session ends and its capture is queued."""
    queue.run()  # start
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    simulator.tick(now=sim.accept_at)
    simulator.tick(now=sim.accept_at + timedelta(minutes=minutes))
    services.session_request_stop(session_id=session.pk)
    queue.run()  # the stop reaches the simulator
    # Pretend the driver pressed Stop `minutes` in (the simulator's clock is the test's).
    end = sim.accept_at + timedelta(minutes=minutes)
    SimulatedSession.objects.filter(pk=sim.pk).update(stop_requested_at=end)
    simulator.tick(now=end)


def intents_holding(localstripe, session) -> list[dict]:
    """Intents at Stripe that hold money for this session (requires_capture), whether we know them or not."""
    return [
        pi
        for pi in localstripe.payment_intents()
        if pi["metadata"].get("session") == str(session.public_id)
        and pi["status"] == "requires_capture"
    ]


@pytest.mark.parametrize("fault", FAULTS)
def test_capture_under_fault_happens_exactly_once(
    client, localstripe, proxy, queue, connector, fault
):
    response, session = pay(client, localstripe, connector)
    assert response.json()["ok"], response.json()
    charge(queue, session)
    proxy.fail("POST", WRITES["capture"], fault)
    queue.run()
    payment = Payment.objects.get(session=session)
    assert payment.status == P.CAPTURED
    # 11 kWh at 0.50 + 21 % VAT
    assert payment.amount_captured == 666
    assert proxy.count("POST", WRITES["capture"]) == 1
    assert queue.retried >= 1  # the fault was felt, and retried
    intent = localstripe.intent(payment.stripe_payment_intent_id)
    assert intent["status"] == "succeeded"
    assert Receipt.objects.filter(payment=payment).count() == 1
    assert payment.write_in_flight == ""


@pytest.mark.parametrize("fault", FAULTS)
def test_cancel_under_fault_releases_the_hold_once(
    client, localstripe, proxy, queue, connector, fault
):
    Evse.objects.filter(pk=connector.evse_id).update(sim_behaviour=Evse.SimBehaviour.REJECT)
    _, session = pay(client, localstripe, connector)
    proxy.fail("POST", WRITES["cancel"], fault)
    queue.run()
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.payment.status == P.CANCELED
    assert proxy.count("POST", WRITES["cancel"]) == 1
    assert localstripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert not intents_holding(localstripe, session)


@pytest.mark.parametrize("fault", FAULTS)
def test_confirm_under_fault_tells_the_driver_and_leaves_no_hold(
    client, localstripe, proxy, queue, connector, fault
):
    proxy.fail("POST", WRITES["confirm"], fault)
    response, session = pay(client, localstripe, connector)
    assert response.status_code == 503
    body = response.json()
    assert body["held"] is True and "being released" in body["message"]
    queue.run()
    session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.payment.status == P.CANCELED
    assert not intents_holding(localstripe, session)  # whether the confirm reached Stripe or not
    # The charger is free again and the next press of Pay works.
    response, again = pay(client, localstripe, connector)
    assert response.json()["ok"] and again.pk != session.pk


def test_the_same_press_arriving_again_gets_the_same_answer(
    client, localstripe, proxy, queue, connector
):
    proxy.fail("POST", WRITES["confirm"], "lost")  # the hold exists; its answer never arrived
    data = {
        "connector": connector.pk,
        "hold_amount": 2000,
        "payment_method": localstripe.card_token(VISA),
        "attempt": "press-0001",
        "price": connector.tariff.price_digest,
    }
    url = reverse("checkout:pay", args=[qr.code_for(connector.evse)])
    first = client.post(url, data)
    again = client.post(url, data)  # the browser resent it, or the driver tapped twice
    assert first.status_code == 503 and first.json()["held"] is True
    assert again.status_code == 409 and again.json()["held"] is True
    assert "being released" in again.json()["message"]
    assert ChargingSession.objects.filter(evse=connector.evse).count() == 1
    queue.run()
    again = client.post(url, data)
    assert again.json() == {
        "ok": False,
        "held": False,
        "message": "The payment service could not be reached. Nothing has been charged.",
    }


@pytest.mark.parametrize("fault", ["500", "lost"])
def test_create_under_fault_holds_nothing(client, localstripe, proxy, queue, connector, fault):
    proxy.fail("POST", r"^/v1/payment_intents$", fault)
    response, session = pay(client, localstripe, connector)
    assert response.status_code == 503 and response.json()["held"] is True
    queue.run()
    session.refresh_from_db()
    assert session.status == S.FAILED and session.payment.status == P.CANCELED
    # A created intent that was never confirmed holds nothing.
    assert not intents_holding(localstripe, session)


@pytest.mark.parametrize("fault", FAULTS)
def test_refund_under_fault_refunds_once(client, localstripe, proxy, queue, connector, fault):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run()
    proxy.fail("POST", WRITES["refund"], fault)
    refunds.payment_refund(
        payment_id=session.payment.pk, amount=300, reason="service_issue", requested_by="ann"
    )
    queue.run()
    payment = Payment.objects.get(pk=session.payment.pk)
    assert payment.status == P.PARTIALLY_REFUNDED
    assert payment.amount_refunded == 300
    assert proxy.count("POST", WRITES["refund"]) == 1
    refund = Refund.objects.get(payment=payment)
    assert refund.status == Refund.Status.SUCCEEDED and refund.stripe_refund_id


def test_refunds_never_exceed_the_capture(client, localstripe, proxy, queue, connector):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run()
    payment_id = session.payment.pk
    refunds.payment_refund(
        payment_id=payment_id, amount=600, reason="requested_by_customer", requested_by="ann"
    )
    # Still pending at Stripe: the pending amount counts against what is left.
    with pytest.raises(refunds.RefundError, match="between 0.01 and 0.66"):
        refunds.payment_refund(
            payment_id=payment_id, amount=67, reason="duplicate", requested_by="bob"
        )
    queue.run()
    refunds.payment_refund(payment_id=payment_id, amount=66, reason="duplicate", requested_by="bob")
    queue.run()
    payment = Payment.objects.get(pk=payment_id)
    assert (
        payment.status == P.REFUNDED and payment.amount_refunded == payment.amount_captured == 666
    )
    with pytest.raises(refunds.RefundError):
        refunds.payment_refund(
            payment_id=payment_id, amount=1, reason="duplicate", requested_by="bob"
        )
    with pytest.raises(refunds.RefundError, match="captured"):
        _, other = pay(client, localstripe, ConnectorFactory())
        refunds.payment_refund(
            payment_id=other.payment.pk, amount=1, reason="duplicate", requested_by="bob"
        )


def test_permanent_error_stops_retrying_and_is_flagged(
    client, localstripe, proxy, queue, connector
):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    # Canceled behind our back (say, in Stripe's dashboard) between the end and the capture.
    localstripe_cancel = (
        f"{localstripe.base}/v1/payment_intents/{session.payment.stripe_payment_intent_id}/cancel"
    )
    import requests

    requests.post(
        localstripe_cancel, auth=("sk_test_localstripe", ""), timeout=10
    ).raise_for_status()
    queue.run()
    session.refresh_from_db()
    payment = session.payment
    # localstripe accepts a capture after a cancel; Stripe would refuse it. Either way we never
    # capture twice and never loop: the outcome is on the session for staff.
    assert proxy.count("POST", WRITES["capture"], ok_only=False) <= 1
    assert payment.status in (P.CAPTURED, P.CANCELED)
    assert queue.retried == 0


def test_capture_refused_by_stripe_is_flagged_not_retried(
    client, localstripe, proxy, queue, connector, monkeypatch, settings
):
    from checkout import payments

    _, session = pay(client, localstripe, connector)
    charge(queue, session)

    def refused(*args, **kwargs):
        raise payments.PaymentGatewayError(
            "This PaymentIntent could not be captured", permanent=True
        )

    monkeypatch.setattr(payments, "capture", refused)
    queue.run()
    session.refresh_from_db()
    assert session.payment.status == P.AUTHORIZED
    assert queue.retried == 0
    assert "payment_capture failed permanently" in session.attention
    assert session.events.filter(kind="attention").count() == 1
    # The sweep tries again every minute; the audit trail says it once, until staff clear the flag.
    for _ in range(2):
        sweeps.strays(now=later(settings.SWEEP_GRACE_SECONDS + 1))
    assert session.events.filter(kind="attention").count() == 2  # the sweep's own wording, once
    services.session_clear_attention(session_id=session.pk)
    sweeps.strays(now=later(settings.SWEEP_GRACE_SECONDS + 1))
    session.refresh_from_db()
    assert session.attention and session.events.filter(kind="attention").count() == 3


# --- webhooks -----------------------------------------------------------------------------------


def test_duplicate_and_out_of_order_webhooks_change_nothing_twice(
    client, settings, localstripe, proxy, queue, connector
):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run()
    intent = session.payment.stripe_payment_intent_id
    events_before = session.events.count()
    # The older event arrives after the newer one, and each arrives twice.
    for event in [
        intent_event("evt_new", intent, "succeeded", "payment_intent.succeeded"),
        intent_event("evt_old", intent, "requires_capture"),
        intent_event("evt_new", intent, "succeeded", "payment_intent.succeeded"),
        intent_event("evt_old", intent, "requires_capture"),
    ]:
        assert signed(client, settings, event).status_code == 200
    queue.run()
    payment = Payment.objects.get(pk=session.payment.pk)
    assert payment.status == P.CAPTURED and payment.amount_captured == 666
    assert proxy.count("POST", WRITES["capture"]) == 1
    assert session.events.count() == events_before
    assert Receipt.objects.filter(payment=payment).count() == 1


def test_dispute_is_recorded_once_and_flagged(
    client, settings, localstripe, proxy, queue, connector
):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run()
    intent = session.payment.stripe_payment_intent_id
    dispute = {
        "id": "evt_dispute",
        "object": "event",
        "type": "charge.dispute.created",
        "data": {
            "object": {
                "id": "dp_1",
                "object": "dispute",
                "amount": 666,
                "charge": "ch_x",
                "payment_intent": intent,
                "reason": "fraudulent",
                "status": "needs_response",
            }
        },
    }
    signed(client, settings, dispute)
    signed(client, settings, dispute)
    queue.run()
    session.refresh_from_db()
    record = session.payment.disputes.get()
    assert (record.amount, record.reason, record.status) == (666, "fraudulent", "needs_response")
    assert "dispute" in session.attention


def test_hold_canceled_at_stripe_is_noticed(client, settings, localstripe, proxy, queue, connector):
    import requests

    _, session = pay(client, localstripe, connector)
    queue.run()
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    simulator.tick(now=sim.accept_at)
    intent = session.payment.stripe_payment_intent_id
    requests.post(
        f"{localstripe.base}/v1/payment_intents/{intent}/cancel",
        auth=("sk_test_localstripe", ""),
        timeout=10,
    ).raise_for_status()
    signed(
        client,
        settings,
        intent_event("evt_canceled", intent, "canceled", "payment_intent.canceled"),
    )
    queue.run()
    session.refresh_from_db()
    assert session.payment.status == P.CANCELED
    assert session.status == S.STOPPING  # charging with no money behind it is stopped
    assert "canceled at Stripe" in session.attention


# --- repairs ------------------------------------------------------------------------------------


def later(seconds):
    return timezone.now() + timedelta(seconds=seconds)


def test_sweep_releases_a_hold_whose_cancel_was_lost(
    client, localstripe, proxy, queue, connector, settings
):
    Evse.objects.filter(pk=connector.evse_id).update(sim_behaviour=Evse.SimBehaviour.REJECT)
    _, session = pay(client, localstripe, connector)
    queue.run(skip=("payment_cancel",))  # the cancel message is lost
    session.refresh_from_db()
    assert session.status == S.FAILED and session.payment.status == P.AUTHORIZED
    assert sweeps.strays() == 0  # within the grace period the normal path may still be busy
    assert sweeps.strays(now=later(settings.SWEEP_GRACE_SECONDS + 1)) == 1
    session.refresh_from_db()
    assert session.payment.status == P.CANCELED
    assert session.events.filter(actor="sweep", kind="payment_status").exists()
    assert not intents_holding(localstripe, session)


def test_sweep_captures_a_finished_session_whose_capture_was_lost(
    client, localstripe, proxy, queue, connector, settings
):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run(skip=("payment_capture",))
    assert sweeps.strays(now=later(settings.SWEEP_GRACE_SECONDS + 1)) == 1
    queue.run()
    payment = Payment.objects.get(session=session)
    assert payment.status == P.CAPTURED and payment.amount_captured == 666
    assert Receipt.objects.filter(payment=payment).count() == 1


def test_sweep_issues_a_receipt_that_was_lost(
    client, localstripe, proxy, queue, connector, settings
):
    _, session = pay(client, localstripe, connector)
    charge(queue, session)
    queue.run(skip=("receipt_issue",))
    assert not Receipt.objects.exists()
    sweeps.strays(now=later(settings.SWEEP_GRACE_SECONDS + 1))
    queue.run()
    assert Receipt.objects.filter(payment__session=session).count() == 1


def test_sweep_asks_again_then_closes_a_session_whose_stop_never_came(
    client, localstripe, proxy, queue, connector, settings
):
    _, session = pay(client, localstripe, connector)
    queue.run()
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    simulator.tick(now=sim.accept_at)
    simulator.tick(now=sim.accept_at + timedelta(minutes=30))
    services.session_request_stop(session_id=session.pk)
    queue.run(skip=("csms_stop",))  # the CSMS never hears the stop
    sweeps.strays(now=later(settings.CSMS_STOP_TIMEOUT_SECONDS + 1))
    assert queue.names() == ["csms_stop"]
    queue.run(skip=("csms_stop",))  # ...and never hears it again
    sweeps.strays(now=later(settings.CSMS_STOP_TIMEOUT_SECONDS + 1))
    assert queue.names() == []  # asked once more, not on every sweep
    sweeps.strays(now=later(settings.CSMS_STOP_GIVE_UP_SECONDS + 1))
    queue.run()
    session.refresh_from_db()
    assert session.status == S.FINISHED
    assert session.payment.status == P.CAPTURED
    assert session.payment.amount_captured == 666  # the last meter reading, 11 kWh
    assert "without the CSMS's final record" in session.attention
    # The CSMS's record, arriving after all, changes nothing but is kept for staff.
    SimulatedSession.objects.filter(pk=sim.pk).update(
        stop_requested_at=sim.accept_at + timedelta(minutes=31)
    )
    simulator.tick(now=sim.accept_at + timedelta(minutes=31))
    session.refresh_from_db()
    assert session.cdr and session.payment.amount_captured == 666
    assert proxy.count("POST", WRITES["capture"]) == 1


@pytest.mark.parametrize("started", [True, False])
def test_sweep_settles_a_hold_before_it_expires(
    client, localstripe, proxy, queue, connector, settings, started
):
    if not started:
        Evse.objects.filter(pk=connector.evse_id).update(sim_behaviour=Evse.SimBehaviour.TIMEOUT)
    _, session = pay(client, localstripe, connector)
    queue.run(skip=("session_start_timeout",))
    if started:
        sim = SimulatedSession.objects.get(reference=session.csms_reference)
        simulator.tick(now=sim.accept_at)
        simulator.tick(now=sim.accept_at + timedelta(minutes=30))
    Payment.objects.filter(session=session).update(
        capture_before=later(settings.AUTH_EXPIRY_MARGIN_SECONDS - 60)
    )
    sweeps.strays()
    queue.run()
    session.refresh_from_db()
    if started:
        assert session.status == S.FINISHED
        assert session.payment.status == P.CAPTURED and session.payment.amount_captured == 666
        assert "hold was about to expire" in session.attention
    else:
        assert session.status == S.FAILED
        assert session.payment.status == P.CANCELED
    assert not intents_holding(localstripe, session)
