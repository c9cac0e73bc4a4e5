# ruff: noqa: F811 (the fixtures imported from tests.test_browser are used as arguments)
"""The production checkout path in Chromium: checkout.js's Stripe.js wallet, ConfirmationTokens.

Stripe.js cannot load here, so the page gets a stand-in of the part of its API the script calls
(tests/stripe_js_standin.js) at the URL it loads Stripe.js from, and is told it is in production
mode (the one attribute, data-stripe-mode, that differs from the embedded default's page). What the
stand-in would send to Stripe, the test answers with Stripe's test helpers against localstripe
(tests/localstripe_tokens.py); everything after that is the real stack's server path. The tests
run in order on one stack: the 3-D Secure test uses the DC EVSE the declined wallet left free.
"""

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.stack import EXTRA_LOGS
from tests.test_browser import (  # noqa: F401 (the stack and browser fixtures)
    AC,
    DC,
    DECLINED,
    PAY,
    VISA,
    VISA_3DS,
    browser,
    stack,
)

pytestmark = [pytest.mark.browser, pytest.mark.stack]

STANDIN = Path(__file__).with_name("stripe_js_standin.js")


@pytest.fixture
def page(browser, stack, request):
    """A phone whose checkout page runs the production path; `page.stripe_calls` lists what the
    stand-in sent to "Stripe" (the Elements options each ConfirmationToken was made with)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    request.node.stash[EXTRA_LOGS] = {"browser console": console}
    page.stripe_calls = []
    ls = stack.localstripe

    def production_page(route):
        response = route.fetch()
        body = response.text()
        assert 'data-stripe-mode="localstripe"' in body
        route.fulfill(
            response=response,
            body=body.replace('data-stripe-mode="localstripe"', 'data-stripe-mode="stripe"'),
        )

    def stripe_api(route):
        call = route.request.post_data_json
        page.stripe_calls.append(call)
        if route.request.url.endswith("/confirmation_tokens"):
            token = ls.confirmation_token(call["number"])
            answer = requests.get(
                f"{ls.base}/v1/confirmation_tokens/{token}",
                auth=("sk_test_localstripe", ""),
                timeout=10,
            ).json()
        else:  # handle_next_action: the driver passes the 3-D Secure challenge
            secret = call["client_secret"]
            ls.authenticate(secret.split("_secret_")[0], secret)
            answer = ls.intent(secret.split("_secret_")[0])
        route.fulfill(json=answer)

    page.route(re.compile(r".*/q/[^/?]+(\?.*)?$"), production_page)
    page.route(
        re.compile(r".*/js\.stripe\.com/v3/?$"),
        lambda route: route.fulfill(path=STANDIN, content_type="application/javascript"),
    )
    page.route(re.compile(r".*/__stripe_js_standin__/.*"), stripe_api)
    yield page
    context.close()


def open_checkout(page, stack, evse_id):
    response = page.goto(stack.checkout_url(evse_id))
    assert response.status == 200
    pay_button = page.get_by_role("button", name=PAY)
    expect(pay_button).to_be_enabled()
    return pay_button


def test_a_card_is_held_through_a_confirmation_token(stack, page):
    pay_button = open_checkout(page, stack, AC)
    page.get_by_label("20.00 EUR").check()
    page.get_by_label("Card number").fill(VISA)
    pay_button.click()
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))  # the hold is made before this answer

    session = stack.latest_session(AC)
    assert session["payment_status"] == "authorized" and session["amount_held"] == 2000
    assert session["card_last4"] == "4242"
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert intent["status"] == "requires_capture" and intent["capture_method"] == "manual"
    # The token was made from Elements set up as the intent is: the chosen hold, manual capture.
    (call,) = [c for c in page.stripe_calls if "number" in c]
    options = call["elements"]
    assert (options["mode"], options["amount"], options["currency"]) == ("payment", 2000, "eur")
    assert options["captureMethod"] == "manual" and options["paymentMethodTypes"] == ["card"]
    assert "paymentMethodCreation" not in options


def test_a_declined_wallet_is_told_to_its_sheet_and_holds_nothing(stack, page):
    open_checkout(page, stack, DC)
    page.get_by_label("Wallet card").fill(DECLINED)
    page.get_by_role("button", name="Wallet pay").click()
    alert = page.locator("#pay-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Your card was declined. Nothing has been charged.")
    expect(page.get_by_role("button", name="Wallet pay")).to_have_attribute(
        "data-payment-failed", "fail"
    )
    session = stack.latest_session(DC)
    assert session["status"] == "failed" and session["payment_status"] == "failed"
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert intent["status"] == "requires_payment_method"


def test_3d_secure_after_a_confirmation_token(stack, page):
    pay_button = open_checkout(page, stack, DC)
    page.get_by_label("Card number").fill(VISA_3DS)
    pay_button.click()
    page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))
    session = stack.latest_session(DC)
    assert session["payment_status"] == "authorized" and session["card_last4"] == "3155"
    assert [c for c in page.stripe_calls if "client_secret" in c]  # handleNextAction ran
