# ruff: noqa: F811 (the fixtures imported from tests.test_browser are used as arguments)
"""A driver on a weak signal (issue 12), in Chromium at 390x844 against the whole product.

The connection is dropped with Playwright's context.set_offline (Chromium's network emulation: the
page's requests fail and it gets offline/online events); Stripe.js is kept from loading with a route
that aborts it. The tests run in order on one stack and each leaves the AC charger free.
"""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from checkout import energy
from tests.stack import ARTIFACTS, poll, require_stack, stack_fixture_body
from tests.test_browser import (  # noqa: F401 (the browser and page fixtures)
    AC,
    DECLINED,
    PAY,
    SLOW,
    VISA,
    assert_evse_free,
    browser,
    fill_card,
    open_checkout,
    page,
)

pytestmark = [pytest.mark.browser, pytest.mark.stack]

# This module presses Pay a dozen times from one address with one card; the abuse limits on Pay
# have their own tests (tests/test_pay_limits.py), so here they are only raised out of the way.
RAISED_LIMITS = {
    "PAY_RATE_PER_IP": "100/10m",
    "PAY_RATE_PER_EVSE": "100/10m",
    "PAY_RATE_PER_CARD": "100/h",
    "PAY_DECLINES_PER_EVSE": "100/h",
}


@pytest.fixture(scope="module")
def stack(request):
    require_stack(browser=True)
    yield from stack_fixture_body(request, environ=RAISED_LIMITS)


STATUS_URL = re.compile(r"/s/[0-9a-f-]{36}/$")
STRIPE_JS = re.compile(r"/js\.stripe\.com/v3/")
PAY_POST = re.compile(r"/q/[^/]+/pay$")


# WCAG 2.0-2.2 A and AA, the EAA's bar; axe-core's own copy ships in the package (no download).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
    "resultTypes": ["violations"],
}


def assert_no_axe_violations(page, what):
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{what}:\n{results.generate_report()}"


def pay_and_follow(stack, page, evse_id=AC, hold="50.00 EUR"):
    """Pay with a good card and land on the status page."""
    assert_evse_free(stack, evse_id)
    pay_button = open_checkout(page, stack, evse_id)
    page.get_by_label(hold).check()
    fill_card(page, VISA)
    pay_button.click()
    page.wait_for_url(STATUS_URL)


def kwh_on_page(page) -> float:
    return float(page.locator("#kwh").text_content())


def shown(session) -> float:
    """The session's kWh as the page rounds them."""
    return float(energy.kwh_text(session["kwh"]))


def stop_and_wait(page):
    page.get_by_role("button", name="Stop charging").click()
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)


def test_checkout_is_compressed_and_pay_shows_without_scrolling(stack, page, browser):
    response = page.goto(stack.checkout_url(AC))
    assert response.status == 200
    assert response.all_headers().get("content-encoding") == "gzip"
    pay_button = page.get_by_role("button", name=PAY)
    expect(pay_button).to_be_enabled()
    # The whole Pay button on the first screen of a 390x844 phone, card form mounted.
    expect(pay_button).to_be_in_viewport(ratio=1)
    page.screenshot(path=str(ARTIFACTS / "signal-1-checkout-390.png"))

    # Each amount on one line ("20.00 EUR", never "20.00" above "EUR"), here and on a 320 px phone.
    one_line = (
        "labels => labels.map(label => [...label.childNodes]"
        ".filter(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim())"
        ".map(n => { const r = document.createRange(); r.selectNodeContents(n);"
        " return r.getClientRects().length; }).reduce((a, b) => a + b, 0))"
    )
    assert page.locator(".hold").evaluate_all(one_line) == [1, 1, 1]
    # A 320 px phone with the browser's text size doubled (16 -> 32 px): the text follows (rem).
    narrow = browser.new_context(
        viewport={"width": 320, "height": 640}, is_mobile=True, has_touch=True
    )
    try:
        small = narrow.new_page()
        narrow.new_cdp_session(small).send("Page.setFontSizes", {"fontSizes": {"standard": 32}})
        small.goto(stack.checkout_url(AC))
        expect(small.get_by_role("button", name=PAY)).to_be_enabled()
        sizes = small.evaluate(
            "['body', '.prices td', '.hold', '#pay-button'].map("
            "s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))"
        )
        assert sizes[0] == 32 and min(sizes) >= 28, sizes
        assert small.locator(".hold").evaluate_all(one_line) == [1, 1, 1]
        overflow = small.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    finally:
        narrow.close()


def test_stripe_js_that_does_not_load_is_explained_with_a_retry(stack, page):
    page.route(STRIPE_JS, lambda route: route.abort())
    assert page.goto(stack.checkout_url(AC)).status == 200
    pay_button = page.get_by_role("button", name=PAY)
    problem = page.locator("#card-load-error")
    # After the 10 s the page gives Stripe.js: why, that nothing was charged, and a way out.
    expect(problem).to_be_visible(timeout=20_000)
    expect(problem).to_have_attribute("role", "alert")
    expect(problem).to_contain_text("nothing has been charged")
    expect(problem).to_be_focused()
    expect(pay_button).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "signal-2-stripe-blocked.png"))

    page.unroute(STRIPE_JS)
    problem.get_by_role("button", name="Retry").click()
    expect(pay_button).to_be_enabled(timeout=SLOW)
    expect(problem).to_be_hidden()
    assert page.csp_violations == []


def test_processing_state_and_focus_on_the_decline(stack, page):
    assert_evse_free(stack, AC)
    open_checkout(page, stack, AC)
    pay_button = page.locator("#pay-button")  # its name changes to Processing… while paying
    fill_card(page, DECLINED)
    held = []
    page.route(
        PAY_POST, lambda route: held.append(route)
    )  # the press is kept on its way until the test lets it go
    pay_button.click()
    for _ in range(150):  # Playwright hands over the route while the test waits in the page
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the Pay request was not sent"
    expect(pay_button).to_have_attribute("aria-busy", "true")
    expect(pay_button).to_have_text("Processing…")
    expect(pay_button).to_be_disabled()
    expect(page.locator("#pay-form")).to_have_attribute("aria-busy", "true")
    held[0].continue_()

    error = page.locator("#pay-error")
    expect(error).to_contain_text("declined")
    expect(error).to_be_focused()
    expect(error).to_be_in_viewport()
    expect(pay_button).to_be_enabled()
    expect(pay_button).not_to_have_attribute("aria-busy", "true")
    expect(pay_button).to_have_text(PAY)
    page.screenshot(path=str(ARTIFACTS / "signal-3-declined.png"))


def test_status_changes_are_announced_without_a_reload(stack, page):
    stack.set_sim_behaviour(AC, "slow")  # the charger takes some seconds to start
    try:
        pay_and_follow(stack, page)
    finally:
        stack.set_sim_behaviour(AC, "accept")
    navigations = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(1))
    region = page.get_by_role("status")
    expect(region).to_have_attribute("aria-live", "polite")
    node = region.element_handle()
    assert region.text_content() != "Charging"

    expect(region).to_have_text("Charging", timeout=SLOW)
    expect(page.locator("#kwh")).not_to_have_text("0.000", timeout=SLOW)
    stop_and_wait(page)
    expect(page.get_by_role("link", name=re.compile("Receipt"))).to_be_visible(timeout=SLOW)
    # The same live region the whole way: announced in place, the page was never reloaded.
    assert node.evaluate("n => n.isConnected") is True
    assert navigations == []
    assert page.csp_violations == []


def test_offline_figures_are_marked_stale_then_the_truth_returns(stack, page):
    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    expect(page.locator("#kwh")).not_to_have_text("0.000", timeout=SLOW)
    stale = page.locator("#stale")
    expect(stale).to_be_hidden()

    page.context.set_offline(True)
    before = kwh_on_page(page)
    # Not heard from the server for 10 s: the page says so, with the time of its last figures.
    expect(stale).to_be_visible(timeout=20_000)
    expect(stale).to_have_text(re.compile(r"No update since \d{1,2}:\d{2}:\d{2}.*Reconnecting"))
    page.screenshot(path=str(ARTIFACTS / "signal-4-offline.png"))
    frozen = kwh_on_page(page)
    moved_on = poll(
        lambda: (s := stack.latest_session(AC))["kwh"] > frozen and s,
        timeout=30,
        what="the session to go on charging",
    )
    assert frozen >= before

    page.context.set_offline(False)
    expect(stale).to_be_hidden(timeout=SLOW)
    poll(lambda: kwh_on_page(page) >= shown(moved_on), timeout=30, what="the true figures")
    assert kwh_on_page(page) <= shown(stack.latest_session(AC))
    stop_and_wait(page)


def test_stop_pressed_offline_is_sent_when_the_signal_returns(stack, page):
    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    page.context.set_offline(True)
    page.get_by_role("button", name="Stop charging").click()
    progress = page.locator("#stop-progress")
    expect(progress).to_have_text(re.compile("Stop not sent yet, retrying"))
    page.screenshot(path=str(ARTIFACTS / "signal-5-stop-offline.png"))
    page.wait_for_timeout(3000)  # retries fail meanwhile
    assert stack.latest_session(AC)["status"] == "charging"  # nothing reached the server

    page.context.set_offline(False)
    poll(
        lambda: stack.latest_session(AC)["status"] in ("stopping", "finished"),
        timeout=30,
        what="the stop to reach the server",
    )
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)


def test_stop_without_javascript_still_posts(stack, page, browser):
    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    status_url = page.url
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        plain.add_cookies(page.context.cookies())  # the payer's cookie: the same phone
        nojs = plain.new_page()
        nojs.goto(status_url)
        nojs.get_by_role("button", name="Stop charging").click()
        nojs.wait_for_url(STATUS_URL)
        assert stack.latest_session(AC)["status"] in ("stopping", "finished")
    finally:
        plain.close()
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)


def test_the_weak_signal_states_pass_axe(stack, page):
    """The new states (card form not loading, Processing, a decline, stale figures, Stop retrying)
    keep axe-core at zero violations, as the pages were before."""
    page.route(STRIPE_JS, lambda route: route.abort())
    page.goto(stack.checkout_url(AC))
    expect(page.locator("#card-load-error")).to_be_visible(timeout=20_000)
    assert_no_axe_violations(page, "card form not loaded")
    page.unroute(STRIPE_JS)
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("button", name=PAY)).to_be_enabled(timeout=SLOW)
    assert_no_axe_violations(page, "checkout")
    fill_card(page, DECLINED)
    page.get_by_role("button", name=PAY).click()
    expect(page.locator("#pay-error")).to_be_focused()
    assert_no_axe_violations(page, "decline")

    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    assert_no_axe_violations(page, "charging")
    page.context.set_offline(True)
    expect(page.locator("#stale")).to_be_visible(timeout=20_000)
    page.get_by_role("button", name="Stop charging").click()
    expect(page.locator("#stop-progress")).to_be_visible()
    assert_no_axe_violations(page, "offline, stop retrying")
    page.context.set_offline(False)
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)
    assert_no_axe_violations(page, "finished")


def test_pay_whose_answer_was_lost_pressed_again_holds_once(stack, page):
    assert_evse_free(stack, AC)
    before = stack.latest_session(AC)
    checkout_url = stack.checkout_url(AC)
    pay_button = open_checkout(page, stack, AC)
    fill_card(page, VISA)
    reached = []

    def lose_the_answer(route):
        reached.append(route.fetch().status)  # the press reaches the server and is answered...
        route.abort()  # ...but the answer never comes back to the phone

    page.route(PAY_POST, lose_the_answer)
    pay_button.click()
    error = page.locator("#pay-error")
    expect(error).to_contain_text("connection dropped")
    expect(error).to_be_focused()
    assert reached == [200]
    first = stack.latest_session(AC)
    assert before is None or first["session_id"] != before["session_id"]
    assert first["payment_status"] == "authorized"

    page.unroute(PAY_POST)
    page.get_by_role("button", name=PAY).click()  # the same press again: found, not held twice
    page.wait_for_url(STATUS_URL)
    assert stack.latest_session(AC)["session_id"] == first["session_id"]
    intents = [
        pi
        for pi in stack.payment_intents()
        if pi["metadata"].get("session") == str(first["public_id"])
    ]
    assert len(intents) == 1
    # Back on the checkout page in this tab (a reload, the back button): its charge, not a new Pay.
    page.goto(checkout_url)
    page.wait_for_url(STATUS_URL)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    stop_and_wait(page)


def test_pay_whose_answer_was_lost_then_reloaded_lands_on_the_charge_and_stops_it(stack, page):
    """The answer (and with it the payer cookie) never reached the phone, and the driver reloads
    instead of pressing Pay again: the page asks which charge the press opened and goes there, with
    the right to stop it."""
    assert_evse_free(stack, AC)
    pay_button = open_checkout(page, stack, AC)
    fill_card(page, VISA)
    reached = []

    def lose_the_answer(route):
        reached.append(route.fetch().status)
        route.abort()

    page.route(PAY_POST, lose_the_answer)
    pay_button.click()
    expect(page.locator("#pay-error")).to_contain_text("connection dropped")
    assert reached == [200]
    paid = stack.latest_session(AC)
    page.unroute(PAY_POST)
    poll(lambda: stack.latest_session(AC)["status"] == "charging", timeout=30, what="charging")

    page.reload()  # the charger is now busy: no Pay form, only the question
    page.wait_for_url(STATUS_URL)
    assert page.url.endswith(f"/s/{paid['public_id']}/")
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    stop_and_wait(page)
    assert stack.latest_session(AC)["session_id"] == paid["session_id"]


def test_stop_with_a_stale_page_token_is_sent_with_a_fresh_one(stack, page):
    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    page.context.clear_cookies(name="csrftoken")  # the payer cookie stays: the same phone
    stops = []
    page.on("request", lambda r: stops.append(r.url) if r.url.endswith("/stop") else None)
    stop_and_wait(page)
    assert len(stops) == 2  # refused for the stale token, then sent again with a fresh one


def test_stop_refused_for_good_is_said_and_not_sent_forever(stack, page):
    """An answer no retry can change (here a proxy's HTML 404) stops the retries and says so."""
    pay_and_follow(stack, page)
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    tries = []

    def refuse(route):
        tries.append(route.request.url)
        route.fulfill(status=404, content_type="text/html", body="<h1>Not Found</h1>")

    page.route(re.compile(r"/stop$"), refuse)
    page.get_by_role("button", name="Stop charging").click()
    progress = page.locator("#stop-progress")
    expect(progress).to_contain_text("Stop could not be sent from this page")
    page.wait_for_timeout(4000)  # a retry would have come after 1 and 2 s
    assert len(tries) == 1
    expect(page.get_by_role("button", name="Stop charging")).to_be_enabled()
    assert stack.latest_session(AC)["status"] == "charging"  # and the page did not say otherwise
    page.unroute(re.compile(r"/stop$"))
    stop_and_wait(page)
