# ruff: noqa: F811 (the fixtures imported from tests.test_browser are used as arguments)
"""Accessibility of every driver page and state (issue 12), in Chromium at 390x844, in each language.

axe-core (WCAG 2.0-2.2 A/AA) runs on each state once per language; the rest are what axe cannot
see: the whole path by keyboard with a visible focus, 200 % text at 320 px without sideways
scrolling, 24x24 px targets, and no motion when the phone asks for less. The states in English and
German are saved as PNGs in test-artifacts/gallery/ (`make gallery` copies them to docs/gallery/).

The tests run in order on one stack. Pay's per-card limit is left low on purpose: DECLINED is
pressed once per language for the decline state, then again until it is refused: the 429 page.
"""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.stack import ARTIFACTS, poll, require_stack, stack_fixture_body
from tests.test_browser import (  # noqa: F401 (the browser fixture)
    AC,
    DC,
    DECLINED,
    SLOW,
    VISA,
    VISA_3DS,
    assert_evse_free,
    browser,
    fill_card,
)
from tests.test_weak_signal import AXE_OPTIONS, assert_no_axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.stack]

LANGUAGES = ["en", "nl", "de", "fr"]
GALLERY_LANGUAGES = ("en", "de")
GALLERY = ARTIFACTS / "gallery"
MASTERCARD = "5555555555554444"  # the failed starts and the keyboard walk: VISA's count stays low
PER_CARD = 6  # presses of one card an hour; DECLINED is pressed until refused (429)
LOOKUPS = 4  # receipt lookups per address an hour: one "not found" per language, then 429

LIMITS = {
    "PAY_RATE_PER_IP": "200/10m",
    "PAY_RATE_PER_EVSE": "200/10m",
    "PAY_RATE_PER_CARD": f"{PER_CARD}/h",
    "PAY_DECLINES_PER_EVSE": "200/h",
    "RECEIPT_LOOKUP_RATE_PER_IP": f"{LOOKUPS}/h",
    "RECEIPT_LOOKUP_RATE_PER_EVSE": "200/h",
}

PAY_LABEL = {"en": "Pay", "nl": "Betalen", "de": "Bezahlen", "fr": "Payer"}
STOP_LABEL = {
    "en": "Stop charging",
    "nl": "Laden stoppen",
    "de": "Laden beenden",
    "fr": "Arrêter la charge",
}
STATUS_URL = re.compile(r"/s/[0-9a-f-]{36}/$")
STATUS_JSON = re.compile(r"/status\.json$")


@pytest.fixture(scope="module")
def stack(request):
    require_stack(browser=True)
    yield from stack_fixture_body(request, environ=LIMITS)


@pytest.fixture(scope="module", autouse=True)
def gallery():
    GALLERY.mkdir(parents=True, exist_ok=True)
    return GALLERY


def phone(browser, stack, language, **options):
    """A 390x844 phone whose driver chose `language` (the switch's cookie and Accept-Language)."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=1,
        is_mobile=True,
        has_touch=True,
        locale=language,
        **options,
    )
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "django_language", "value": language, "url": stack.base}])
    return context


@pytest.fixture
def context(browser, stack, request):
    language = request.node.callspec.params.get("language", "en")
    context = phone(browser, stack, language)
    yield context
    context.close()


def check(page, language, state):
    """The page speaks the language, axe finds nothing, and a picture for the gallery."""
    expect(page.locator("html")).to_have_attribute("lang", language)
    page.wait_for_timeout(150)  # let a focus move or a live region settle
    assert_no_axe_violations(page, f"{state} ({language})")
    if language in GALLERY_LANGUAGES:
        page.screenshot(path=str(GALLERY / f"{state}-{language}.png"))


def pay_button(page, language):
    return page.get_by_role("button", name=re.compile(f"^{PAY_LABEL[language]}"))


def open_checkout(page, stack, evse_id, language):
    assert page.goto(stack.checkout_url(evse_id)).status == 200
    button = pay_button(page, language)
    expect(button).to_be_enabled()
    return button


def by_stop(page, language):
    return page.locator("#stop-form button")


# --- axe on every state, once per language ------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_checkout_invalid_code_and_unavailable(stack, context, language):
    page = context.new_page()
    open_checkout(page, stack, AC, language)
    check(page, language, "01-checkout")

    url = stack.checkout_url(AC)
    assert page.goto(url[:-1] + ("a" if url[-1] != "a" else "b")).status == 404
    check(page, language, "02-invalid-code")

    stack.query("UPDATE stations_evse SET status = 'OUT_OF_ORDER' WHERE evse_id = %s", (DC,))
    try:
        assert page.goto(stack.checkout_url(DC)).status == 200
        expect(page.locator(".badge.bad")).to_be_visible()
        check(page, language, "03-out-of-order")
    finally:
        stack.query("UPDATE stations_evse SET status = 'AVAILABLE' WHERE evse_id = %s", (DC,))


@pytest.mark.parametrize("language", LANGUAGES)
def test_declined(stack, context, language):
    assert_evse_free(stack, AC)
    page = context.new_page()
    button = open_checkout(page, stack, AC, language)
    fill_card(page, DECLINED)
    button.click()
    expect(page.locator("#pay-error")).to_be_focused()
    expect(page.locator("#pay-error")).to_be_visible()
    check(page, language, "04-declined")


@pytest.mark.parametrize("language", LANGUAGES)
def test_three_d_secure_charging_stopping_finished(stack, context, language):
    assert_evse_free(stack, AC)
    page = context.new_page()
    button = open_checkout(page, stack, AC, language)
    fill_card(page, VISA_3DS)
    button.click()
    complete = page.get_by_role("button", name="Complete authentication")
    expect(complete).to_be_visible()
    # localstripe's stand-in for the bank's page is not ours: axe looks at our page beneath it.
    expect(page.locator("html")).to_have_attribute("lang", language)
    check_3ds(page, language)
    complete.click()

    page.wait_for_url(STATUS_URL)
    expect(page.locator("#kwh")).not_to_have_text(re.compile(r"^0[.,]000$"), timeout=SLOW)
    check(page, language, "06-charging")

    # In use, seen by the next driver who scans the same sticker.
    other = phone(page.context.browser, stack, language)
    try:
        next_driver = other.new_page()
        assert next_driver.goto(stack.checkout_url(AC)).status == 200
        expect(next_driver.locator(".badge.bad")).to_be_visible()
        check(next_driver, language, "03-in-use")
    finally:
        other.close()

    # Stopping: the page's polls are dropped (as on a weak signal) until axe has looked, so the
    # charger's quick answer cannot turn it into Finished first.
    page.route(STATUS_JSON, lambda route: route.abort())
    by_stop(page, language).click()
    expect(page.locator("#stop-progress")).to_be_visible()
    check(page, language, "07-stopping")
    page.unroute(STATUS_JSON)
    expect(page.locator("#live")).to_have_attribute("data-status", "finished", timeout=SLOW)
    expect(page.locator("a.button[href$='receipt.pdf']")).to_be_visible(timeout=SLOW)
    check(page, language, "08-finished")


def check_3ds(page, language):
    """axe on the checkout page under localstripe's authentication box: that box (a <div> it adds
    to <body>, where our pages have none) stands in for the bank's page, which is not ours."""
    results = Axe().run(page, context={"exclude": [["body > div"]]}, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"3-D Secure ({language}):\n{results.generate_report()}"
    if language in GALLERY_LANGUAGES:
        page.screenshot(path=str(GALLERY / f"05-3ds-pending-{language}.png"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_failed_start(stack, context, language):
    assert_evse_free(stack, DC)
    stack.set_sim_behaviour(DC, "reject")
    try:
        page = context.new_page()
        button = open_checkout(page, stack, DC, language)
        fill_card(page, MASTERCARD)
        button.click()
        page.wait_for_url(STATUS_URL)
        expect(page.locator("#live")).to_have_attribute("data-status", "failed", timeout=SLOW)
        expect(page.locator("#live")).to_have_attribute("data-payment", "canceled", timeout=SLOW)
        check(page, language, "09-failed-start")
    finally:
        stack.set_sim_behaviour(DC, "accept")


@pytest.mark.parametrize("language", LANGUAGES)
def test_too_many_attempts(stack, context, language):
    """DECLINED was pressed in each language already: pressed again by the plain form (as without
    script) until its limit refuses it, the driver gets the 429 page in the page's language."""
    page = context.new_page()
    for _ in range(PER_CARD + 1):
        open_checkout(page, stack, AC, language)
        token = stack.localstripe.card_token(DECLINED)
        with page.expect_navigation() as answer:
            page.evaluate(SUBMIT_PLAINLY, token)
        if answer.value.status == 429:
            break
    assert answer.value.status == 429
    assert answer.value.headers["retry-after"]
    expect(page.locator("h1")).to_be_visible()
    check(page, language, "10-too-many")


# The checkout form posted by the browser itself (no fetch), with the card checkout.js would add.
SUBMIT_PLAINLY = """token => {
    const form = document.getElementById('pay-form');
    const input = document.createElement('input');
    input.type = 'hidden'; input.name = 'payment_method'; input.value = token;
    form.appendChild(input);
    HTMLFormElement.prototype.submit.call(form);
}"""


def receipt_link(stack) -> str:
    """The signed document link of the newest receipt, as its e-mail gives it."""
    return stack.manage(
        "shell",
        "-c",
        "from checkout.models import Receipt; from checkout import lookup; "
        "print(lookup.receipt_link(Receipt.objects.order_by('-id').first()))",
    ).split()[-1]  # after the shell's own "objects imported" line


@pytest.mark.parametrize("language", LANGUAGES)
def test_receipt_lookup_and_document(stack, context, language):
    page = context.new_page()
    assert page.goto(stack.url("/receipt/find")).status == 200
    check(page, language, "11-lookup")
    page.locator("input[name='day']").fill("2020-01-01")
    page.locator("input[name='evse_id']").fill(AC)
    page.locator("input[name='amount']").fill("1.00")
    page.locator("input[name='last4']").fill("0000")
    page.locator("form.card button[type='submit']").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    check(page, language, "12-lookup-not-found")

    assert page.goto(stack.url(receipt_link(stack))).status == 200
    expect(page.locator("input[name='vat_id']")).to_be_visible()
    check(page, language, "13-document")
    page.locator("input[name='vat_id']").fill("NL004495446B01")
    page.locator("form button[type='submit']").last.click()
    expect(page.locator("input[name='vat_id']")).to_have_attribute("aria-invalid", "true")
    check(page, language, "14-document-form-error")


@pytest.mark.parametrize("language", LANGUAGES)
def test_receipt_lookup_too_many(stack, context, language):
    """Lookups from this address, tried until the limit refuses one (its window may have just
    turned): the 429 page in the page's language."""
    page = context.new_page()
    for _ in range(LOOKUPS + 2):
        page.goto(stack.url("/receipt/find"))
        page.locator("input[name='day']").fill("2020-01-01")
        page.locator("input[name='evse_id']").fill(AC)
        page.locator("input[name='amount']").fill("1.00")
        page.locator("input[name='last4']").fill("0000")
        with page.expect_response(re.compile(r"/receipt/find$")) as answer:
            page.locator("form.card button[type='submit']").click()
        if answer.value.status == 429:
            break
        assert answer.value.status == 404
    assert answer.value.status == 429
    check(page, language, "15-lookup-too-many")


@pytest.mark.parametrize("language", LANGUAGES)
def test_page_expired(stack, context, language):
    """A form posted with a stale CSRF token (here the language switch, cookie cleared) gets our
    page in the driver's language, not Django's English one."""
    page = context.new_page()
    assert page.goto(stack.checkout_url(AC)).status == 200
    context.clear_cookies(name="csrftoken")
    with page.expect_response(re.compile(r"/i18n/setlang/$")) as answer:
        page.locator("form.languages button:not([disabled])").first.click()
    assert answer.value.status == 403
    check(page, language, "16-page-expired")
    page.locator("a.button").click()  # back to the checkout, whose reload carries a fresh token
    expect(pay_button(page, language)).to_be_enabled()


# --- what axe cannot see ------------------------------------------------------------------------

# The focused element's indicator: its own outline or box-shadow, or its label's when the input is
# drawn by the label (the amounts to hold hide their radio inside a bordered label).
FOCUS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const shown = e => { const s = getComputedStyle(e);
        return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none'; };
    const label = el.closest('label');
    return {tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute('name') || '',
            placeholder: el.getAttribute('placeholder') || '', text: (el.textContent || '').trim(),
            indicator: shown(el) || (label !== null && getComputedStyle(el).opacity === '0' && shown(label))};
}"""


def tab_to(page, wanted, *, limit=40):
    """Press Tab until the focused element satisfies `wanted`; every element on the way shows focus."""
    for _ in range(limit):
        focused = page.evaluate(FOCUS)
        if focused and wanted(focused):
            assert focused["indicator"], f"no visible focus indicator on {focused}"
            return focused
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS)
        if focused:
            assert focused["indicator"], f"no visible focus indicator on {focused}"
    raise AssertionError(f"Tab never reached the element (last: {page.evaluate(FOCUS)})")


def test_the_whole_path_by_keyboard_with_a_visible_focus(stack, browser):
    assert_evse_free(stack, AC)
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en")
    try:
        page = context.new_page()
        page.goto(stack.checkout_url(AC))
        expect(pay_button(page, "en")).to_be_enabled()
        tab_to(page, lambda f: f["name"] == "hold_amount")
        page.keyboard.press("ArrowRight")  # the radio group: arrows move, Space chooses
        page.keyboard.press("Space")
        expect(page.get_by_label("50.00 EUR")).to_be_checked()
        tab_to(page, lambda f: f["id"] == "email")
        page.keyboard.type("driver@example.com")
        for field, value in (
            ("number", VISA),
            ("exp_month", "12"),
            ("exp_year", "34"),
            ("cvc", "123"),
            ("postal_code", "1012"),
        ):
            tab_to(page, lambda f, field=field: f["placeholder"] == field)
            page.keyboard.type(value)
        focused = tab_to(page, lambda f: f["id"] == "pay-button")
        assert focused["text"] == "Pay 50.00 EUR"
        page.keyboard.press("Enter")
        page.wait_for_url(STATUS_URL)
        expect(page.locator("#live")).to_have_attribute("data-status", "charging", timeout=SLOW)
        tab_to(page, lambda f: f["tag"] == "button" and f["text"] == STOP_LABEL["en"])
        page.keyboard.press("Enter")
        expect(page.locator("#live")).to_have_attribute("data-status", "finished", timeout=SLOW)
        receipt = page.locator("a.button[href$='receipt.pdf']")
        expect(receipt).to_be_visible(timeout=SLOW)
        tab_to(page, lambda f: f["tag"] == "a" and f["text"].startswith("Receipt"))
        session = stack.latest_session(AC)
        assert (session["amount_held"], session["email"]) == (5000, "driver@example.com")
    finally:
        context.close()


def driver_pages(stack):
    """Checkout, a finished session's status page, the lookup and the document page."""
    session = stack.latest_session(AC)
    assert session and session["receipt_number"], "runs after a charge with a receipt"
    return {
        "checkout": stack.checkout_url(AC),
        "status": stack.url(f"/s/{session['public_id']}/"),
        "lookup": stack.url("/receipt/find"),
        "document": stack.url(receipt_link(stack)),
    }


OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# What sticks out on the right, innermost first: for the failure message.
WIDE = """() => [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5
        || el.scrollWidth > el.clientWidth + 0.5 && getComputedStyle(el).display !== 'inline')
    .reverse().slice(0, 6).map(el => el.outerHTML.slice(0, 80))"""


@pytest.mark.parametrize("language", ["en", "de"])
def test_double_text_at_320_px_scrolls_only_down(stack, browser, language):
    """WCAG 1.4.4 and 1.4.10: text at 200 % (the browser's text size 16 -> 32 px) on a 320 px screen."""
    narrow = browser.new_context(
        viewport={"width": 320, "height": 640}, is_mobile=True, has_touch=True, locale=language
    )
    narrow.add_cookies([{"name": "django_language", "value": language, "url": stack.base}])
    try:
        page = narrow.new_page()
        narrow.new_cdp_session(page).send("Page.setFontSizes", {"fontSizes": {"standard": 32}})
        for name, url in driver_pages(stack).items():
            assert page.goto(url).status == 200, name
            assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") == 32
            if name == "checkout":
                expect(pay_button(page, language)).to_be_enabled()
            overflow = page.evaluate(OVERFLOW)
            assert overflow <= 0, f"{name}: {overflow}px too wide: {page.evaluate(WIDE)}"
    finally:
        narrow.close()


# Every visible link, button and field with its target box; a field drawn inside its label (the
# amounts to hold) is measured by the label; a link inside a sentence is exempt (WCAG 2.5.8).
TARGETS = """() => [...document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, summary')]
    .filter(el => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
    .map(el => {
        const label = el.closest('label');
        const box = (label && getComputedStyle(el).opacity === '0' ? label : el).getBoundingClientRect();
        const block = el.parentElement;
        const inline = el.tagName === 'A' && getComputedStyle(el).display === 'inline'
            && block.textContent.trim() !== el.textContent.trim();
        return {what: el.outerHTML.slice(0, 90), width: box.width, height: box.height, inline};
    })"""


@pytest.mark.parametrize("language", ["en", "de"])
def test_targets_are_at_least_24_px(stack, browser, language):
    context = phone(browser, stack, language)
    try:
        page = context.new_page()
        for name, url in driver_pages(stack).items():
            assert page.goto(url).status == 200, name
            if name == "checkout":
                expect(pay_button(page, language)).to_be_enabled()
            targets = page.evaluate(TARGETS)
            assert len(targets) >= 3, (name, targets)
            small = [
                t for t in targets if not t["inline"] and (t["width"] < 24 or t["height"] < 24)
            ]
            assert small == [], f"{name}: targets under 24x24 px: {small}"
    finally:
        context.close()


# Every running animation, and every element (or ::before/::after) whose CSS would animate or
# transition anything: none when the phone asks for reduced motion.
MOTION = """() => {
    const moving = [];
    for (const el of document.querySelectorAll('*')) for (const pseudo of [null, '::before', '::after']) {
        const s = getComputedStyle(el, pseudo);
        const seconds = v => Math.max(...v.split(',').map(t => parseFloat(t) || 0));
        if ((s.animationName !== 'none' && seconds(s.animationDuration) > 0)
            || seconds(s.transitionDuration) > 0)
            moving.push(el.tagName + (el.id ? '#' + el.id : '') + (pseudo || ''));
    }
    return {running: document.getAnimations().length, moving,
            scroll: getComputedStyle(document.documentElement).scrollBehavior};
}"""


def test_reduced_motion_is_respected(stack, browser):
    assert_evse_free(stack, AC)
    context = phone(browser, stack, "en", reduced_motion="reduce")
    try:
        page = context.new_page()
        pages = driver_pages(stack)
        for name in ("lookup", "document"):
            page.goto(pages[name])
            assert page.evaluate(MOTION) == {"running": 0, "moving": [], "scroll": "auto"}, name
        button = open_checkout(page, stack, AC, "en")
        assert page.evaluate(MOTION) == {"running": 0, "moving": [], "scroll": "auto"}
        fill_card(page, VISA)
        button.click()  # Processing…, then the status page as it starts and charges
        page.wait_for_url(STATUS_URL)
        assert page.evaluate(MOTION) == {"running": 0, "moving": [], "scroll": "auto"}
        expect(page.locator("#live")).to_have_attribute("data-status", "charging", timeout=SLOW)
        assert page.evaluate(MOTION) == {"running": 0, "moving": [], "scroll": "auto"}
        by_stop(page, "en").click()
        expect(page.locator("#live")).to_have_attribute("data-status", "finished", timeout=SLOW)
        assert page.evaluate(MOTION) == {"running": 0, "moving": [], "scroll": "auto"}
    finally:
        context.close()
    # The same check sees motion where the phone does not ask for less (smooth scrolling).
    moving = phone(browser, stack, "en", reduced_motion="no-preference")
    try:
        page = moving.new_page()
        page.goto(pages["lookup"])
        assert page.evaluate(MOTION)["scroll"] == "smooth"
    finally:
        moving.close()
    poll(lambda: stack.latest_session(AC)["receipt_number"], timeout=30, what="the receipt")
