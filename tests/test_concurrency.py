"""Races on real PostgreSQL row locks: drivers tapping at once, workers capturing at once, staff refunding at once.

Each test starts its contenders on a barrier in threads (each thread its own database connection)
and checks that exactly one wins, at Stripe as well as in our database.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connections

from checkout import refunds, services
from checkout.models import ChargingSession, Payment
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.csms import simulator
from stations.models import SimulatedSession
from tests.factories import ConnectorFactory
from tests.faultproxy import stripe_behind_proxy
from tests.taskqueue import TaskQueue

VISA = "4242424242424242"
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("requires_postgres")]


def race(*calls):
    """Run the calls at the same moment; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.fixture
def proxy(settings, localstripe):
    with stripe_behind_proxy(settings, localstripe) as proxy:
        yield proxy


def intents_for(localstripe, evse_id):
    return [pi for pi in localstripe.payment_intents() if pi["metadata"].get("evse_id") == evse_id]


def checkout(connector, card, attempt=None):
    def call():
        session = services.session_create(
            evse=connector.evse, connector=connector, hold_amount=2000, attempt=attempt
        )
        return services.payment_authorize(session_id=session.pk, payment_method_id=card)

    return call


def test_two_drivers_paying_for_one_evse_at_once(localstripe, proxy, monkeypatch):
    TaskQueue(monkeypatch)  # the start is not the point here
    connector = ConnectorFactory()
    results = race(
        checkout(connector, localstripe.card_token(VISA)),
        checkout(connector, localstripe.card_token(VISA)),
    )
    won = [r for r in results if isinstance(r, Payment)]
    lost = [r for r in results if isinstance(r, services.CheckoutError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "Another driver" in str(lost[0]) and "Nothing has been charged" in str(lost[0])
    assert won[0].status == P.AUTHORIZED
    assert len(intents_for(localstripe, connector.evse.evse_id)) == 1
    assert ChargingSession.objects.filter(evse=connector.evse).count() == 1


def test_a_double_tapped_pay_opens_one_session_and_one_intent(localstripe, proxy, monkeypatch):
    TaskQueue(monkeypatch)
    connector = ConnectorFactory()
    card = localstripe.card_token(VISA)
    results = race(
        checkout(connector, card, attempt="tap-1234abcd"),
        checkout(connector, card, attempt="tap-1234abcd"),
    )
    assert all(isinstance(r, Payment) for r in results), results
    assert results[0].pk == results[1].pk
    assert len(intents_for(localstripe, connector.evse.evse_id)) == 1
    assert proxy.count("POST", r"/confirm$") == 1


def hold_first_answer(proxy, path, seconds=1.0):
    """The first matching write reaches Stripe at once, but its answer comes `seconds` later."""
    proxy.fail("POST", path, "hold")
    threading.Thread(
        target=lambda: (proxy.wait_held(), threading.Event().wait(seconds), proxy.release()),
        daemon=True,
    ).start()


def finished_session(localstripe, monkeypatch):
    queue = TaskQueue(monkeypatch)
    connector = ConnectorFactory()
    checkout(connector, localstripe.card_token(VISA))()
    queue.run()
    session = ChargingSession.objects.get(evse=connector.evse)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    simulator.tick(now=sim.accept_at)
    services.session_request_stop(session_id=session.pk)
    queue.run(skip=("payment_capture",))
    end = sim.accept_at + timedelta(minutes=30)
    SimulatedSession.objects.filter(pk=sim.pk).update(stop_requested_at=end)
    simulator.tick(now=end)
    queue.pending.clear()  # the capture the session queued: the race below runs it instead
    session.refresh_from_db()
    assert session.status == S.FINISHED
    return session, queue


def test_two_workers_capturing_at_once_capture_once(localstripe, proxy, monkeypatch):
    session, _ = finished_session(localstripe, monkeypatch)
    payment_id = session.payment.pk
    hold_first_answer(
        proxy, r"/capture$"
    )  # the first capture is slow: the second arrives meanwhile
    results = race(
        lambda: services.payment_capture(payment_id=payment_id),
        lambda: services.payment_capture(payment_id=payment_id),
    )
    assert results == [None, None]
    payment = Payment.objects.get(pk=payment_id)
    assert payment.status == P.CAPTURED and payment.amount_captured == 666
    assert proxy.count("POST", r"/capture$", ok_only=False) == 1


def test_two_refunds_at_once_never_exceed_the_capture(localstripe, proxy, monkeypatch):
    session, queue = finished_session(localstripe, monkeypatch)
    payment_id = session.payment.pk
    services.payment_capture(payment_id=payment_id)

    def refund(amount, who):
        return lambda: refunds.payment_refund(
            payment_id=payment_id, amount=amount, reason="duplicate", requested_by=who
        )

    hold_first_answer(proxy, r"^/v1/refunds$")
    results = race(refund(400, "ann"), refund(400, "bob"))  # each fits in 6.66; both do not
    assert sum(isinstance(r, refunds.RefundError) for r in results) == 1, results
    queue.run()
    payment = Payment.objects.get(pk=payment_id)
    assert payment.amount_refunded == 400 and payment.status == P.PARTIALLY_REFUNDED
    assert proxy.count("POST", r"^/v1/refunds$") == 1
