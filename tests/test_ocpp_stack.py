"""OCPP direct with every part a process: gunicorn, Celery workers on Redis, the OCPP gateway
(`manage.py ocpp_gateway`) and the demo's simulated chargers (`manage.py ocpp_charger`), as
`make run` runs them. The csms worker reaches the chargers through the gateway's control port."""

from decimal import Decimal

import pytest

from tests.stack import Driver, require_stack, stack_fixture_body

pytestmark = [pytest.mark.stack]

AC_201 = "NL*DPY*E0101*1"  # station DPY-AC-201, OCPP 2.0.1, 22 kW
DC_21 = "NL*DPY*E0102*1"  # station DPY-DC-21, OCPP 2.1, 150 kW


@pytest.fixture(scope="module")
def stack(request):
    require_stack()
    yield from stack_fixture_body(request, ocpp=True)


def transaction_of(stack, evse_id):
    session = stack.latest_session(evse_id)
    return session, stack.one(
        "SELECT t.state, t.stopped_reason, t.max_cost FROM stations_ocpptransaction t"
        " JOIN checkout_chargingsession s ON s.csms_reference = t.reference WHERE s.id = %s",
        (session["session_id"],),
    )


def test_201_driver_stops_worker_sends_the_stop_through_the_gateway(stack):
    driver = Driver(stack, AC_201)
    code, answer = driver.pay(hold=5000)
    assert (code, answer["ok"]) == (200, True)
    charging = driver.wait_for(
        lambda s: s["status"] == "charging" and Decimal(s["kwh"]) > 0, what="metered energy"
    )
    assert charging["payment_status"] == "authorized"
    driver.stop()
    final = driver.wait_for(lambda s: s["receipt"], timeout=60, what="the receipt")
    assert (final["status"], final["payment_status"]) == ("finished", "captured")
    session, tx = transaction_of(stack, AC_201)
    assert (tx["state"], tx["stopped_reason"]) == ("ended", "Remote")
    assert 0 < session["receipt_total"] == session["amount_captured"] <= 5000
    assert Decimal(final["cost"]) == Decimal(session["amount_captured"]) / 100


def test_21_charger_stops_itself_at_the_cap(stack):
    driver = Driver(stack, DC_21)
    code, answer = driver.pay(hold=2000)
    assert (code, answer["ok"]) == (200, True)
    final = driver.wait_for(lambda s: s["receipt"], timeout=90, what="the receipt")
    assert (final["status"], final["payment_status"]) == ("finished", "captured")
    session, tx = transaction_of(stack, DC_21)
    assert tx["state"] == "ended" and tx["max_cost"] == Decimal("19.00")  # 20.00 hold - 1.00 margin
    assert tx["stopped_reason"] == "LocalOutOfCredit"  # the charger ended it, not our stop
    assert 0 < session["amount_captured"] <= session["amount_held"] == 2000
