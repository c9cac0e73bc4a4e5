# ruff: noqa: F811 (the fixtures imported from tests.test_browser are used as arguments)
"""Choosing the connector on a phone (Chromium 390x844, the whole product): the demo's dual DC
charger, CCS 150 kW and CHAdeMO 50 kW at different prices."""

import re

import pytest
from playwright.sync_api import expect

from tests.stack import ARTIFACTS, require_stack, stack_fixture_body
from tests.test_browser import (  # noqa: F401 (the browser and page fixtures)
    SLOW,
    VISA,
    assert_evse_free,
    browser,
    fill_card,
    open_checkout,
    page,
)
from tests.test_weak_signal import assert_no_axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.stack]

DUAL = "NL*DPY*E0002*2"
CCS = "CCS · DC · 150 kW"
CHADEMO = "CHAdeMO · DC · 50 kW"


@pytest.fixture(scope="module")
def stack(request):
    require_stack(browser=True)
    yield from stack_fixture_body(request)


def test_pick_chademo_see_its_price_pay_and_charge_on_it(stack, page):
    assert_evse_free(stack, DUAL)
    pay_button = open_checkout(page, stack, DUAL)
    group = page.get_by_role("group", name="Connector and price")
    expect(group).to_be_visible()
    ccs, chademo = group.get_by_label(CCS), group.get_by_label(CHADEMO)
    expect(ccs).to_be_checked()
    expect(page.locator("#connector-chosen")).to_have_text("CCS · 150 kW: 0.7139 EUR per kWh")
    assert_no_axe_violations(page, "the checkout page of a charger with two connectors")

    # The keyboard moves between the options like any radio group.
    ccs.focus()
    page.keyboard.press("ArrowDown")
    expect(chademo).to_be_checked()
    ccs.check()
    # A tap anywhere on an option picks it: here on CHAdeMO's price list, not on its radio.
    option = page.locator(".connector-option").filter(has=page.get_by_label(CHADEMO))
    box = option.bounding_box()
    assert box["height"] >= 24 and box["width"] >= 24
    prices = option.locator("table.prices").bounding_box()  # the label lies over it
    page.touchscreen.tap(prices["x"] + prices["width"] / 2, prices["y"] + prices["height"] / 2)
    expect(chademo).to_be_checked()
    expect(ccs).not_to_be_checked()
    expect(page.locator("#connector-chosen")).to_have_text("CHAdeMO · 50 kW: 0.5929 EUR per kWh")
    expect(page.locator("input[name=price]")).to_have_value(chademo.get_attribute("data-price"))
    expect(option.get_by_role("row", name=re.compile("per kWh"))).to_contain_text("0.5929 EUR")
    page.screenshot(path=str(ARTIFACTS / "connector-1-chademo.png"), full_page=True)

    fill_card(page, VISA)
    pay_button.click()
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))
    expect(page.get_by_text(CHADEMO)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    row = stack.one(
        """
        SELECT c.standard, c.max_power_kw, sim.power_kw
        FROM checkout_chargingsession s
        JOIN stations_connector c ON c.id = s.connector_id
        JOIN stations_simulatedsession sim ON sim.reference = s.csms_reference
        WHERE s.public_id::text = %s
        """,
        (page.url.rstrip("/").rsplit("/", 1)[1],),
    )
    assert (row["standard"], row["max_power_kw"], row["power_kw"]) == ("CHADEMO", 50, 50)
    page.get_by_role("button", name="Stop charging").click()
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)
