"""Two OCPP gateway processes, the demo stations spread over them (one each), every other part a
process too (gunicorn, Celery on Redis, localstripe): a worker's start and stop reach each station
through the gateway that holds its socket, as the station row names it."""

from decimal import Decimal

import pytest

from tests.stack import Driver, require_stack, stack_fixture_body
from tests.test_ocpp_stack import AC_201, DC_21, transaction_of

pytestmark = [pytest.mark.stack]


@pytest.fixture(scope="module")
def stack(request):
    require_stack()
    yield from stack_fixture_body(request, ocpp=True, ocpp_gateways=2)


def test_each_station_is_held_by_its_own_gateway(stack):
    rows = stack.query("SELECT identity, gateway, connected FROM stations_chargingstation")
    held = {row["identity"]: row["gateway"] for row in rows if row["connected"]}
    controls = {f"127.0.0.1:{control}" for _, control in stack.ocpp_gateways}
    assert set(held) == {"DPY-AC-201", "DPY-DC-21"}
    assert set(held.values()) == controls and len(controls) == 2


@pytest.mark.parametrize("evse_id", [AC_201, DC_21])
def test_start_and_stop_reach_the_station_through_its_gateway(stack, evse_id):
    driver = Driver(stack, evse_id)
    code, answer = driver.pay(hold=5000)
    assert (code, answer["ok"]) == (200, True)
    driver.wait_for(
        lambda s: s["status"] == "charging" and Decimal(s["kwh"]) > 0, what="metered energy"
    )
    # It charges: our RequestStartTransaction reached the charger through its gateway.
    driver.stop()
    final = driver.wait_for(lambda s: s["receipt"], timeout=60, what="the receipt")
    assert (final["status"], final["payment_status"]) == ("finished", "captured")
    session, tx = transaction_of(stack, evse_id)
    assert tx["state"] == "ended"
    if evse_id == AC_201:  # 22 kW: far from its cap, so only our RequestStopTransaction ended it
        assert tx["stopped_reason"] == "Remote"
    else:  # 150 kW at this speed-up may reach its cap (and stop itself) before our Stop arrives
        assert tx["stopped_reason"] in ("Remote", "LocalOutOfCredit")
    assert 0 < session["amount_captured"] <= 5000
