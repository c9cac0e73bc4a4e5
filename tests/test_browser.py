"""A driver's phone, end to end: Chromium on the checkout page against the whole product.

The stack (tests/stack.py) runs gunicorn, a Celery worker and beat on Redis, PostgreSQL, localstripe
and the simulated CSMS as separate processes. The tests run in order on one stack: the 3-D Secure
and declined-card tests use E0001 after the happy path has finished with it.

Screenshots for a person to look at are saved under test-artifacts/ (gitignored).
"""

import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from pypdf import PdfReader

from tests.stack import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXTRA_LOGS,
    poll,
    require_stack,
    stack_fixture_body,
)

pytestmark = [pytest.mark.browser, pytest.mark.stack]

AC = "NL*DPY*E0001*1"  # 22 kW AC, 0.45 EUR/kWh + 21% VAT
DC = "NL*DPY*E0002*1"  # 150 kW DC
VISA = "4242424242424242"
VISA_3DS = "4000002500003155"
DECLINED = "4000000000000341"

PAY = re.compile("^Pay")
# Starting goes web -> Redis -> worker -> simulated charger -> beat's next tick -> status page poll.
SLOW = 30_000


@pytest.fixture(scope="module")
def stack(request):
    require_stack(browser=True)
    yield from stack_fixture_body(request)


@pytest.fixture(scope="module")
def browser(stack):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A phone: small viewport, touch, mobile user agent behaviour."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    page.on(
        "framenavigated",
        lambda frame: frame == page.main_frame and console.append(f"[navigated] {frame.url}"),
    )
    # Every Content-Security-Policy violation on any page, reported by the page itself.
    page.csp_violations = []
    page.on(
        "console",
        lambda message: (
            "CSP violation" in message.text and page.csp_violations.append(message.text)
        ),
    )
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI));"
    )
    request.node.stash[EXTRA_LOGS] = {"browser console": console}
    yield page
    context.close()


@pytest.fixture(scope="module", autouse=True)
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def figure(page, name):
    """The value of one of the status page's figures (Energy, Cost so far, Charged, Released...)."""
    return (
        page.locator(".figures > div")
        .filter(has=page.locator("dt", has_text=re.compile(f"^{name}$")))
        .locator("dd")
    )


def open_checkout(page, stack, evse_id):
    response = page.goto(stack.checkout_url(evse_id))
    assert response.status == 200, response.status
    policy = response.headers["content-security-policy"]
    assert "script-src 'self' " in policy and "unsafe-inline" not in policy, policy
    assert "payment=(self" in response.headers["permissions-policy"]
    pay_button = page.get_by_role("button", name=PAY)
    # Enabled once localstripe's card element is mounted.
    expect(pay_button).to_be_enabled()
    return pay_button


def fill_card(page, number):
    """localstripe's card element: five plain inputs named by their placeholders."""
    card = page.locator("#card-element")
    card.get_by_placeholder("number", exact=True).fill(number)
    card.get_by_placeholder("exp_month", exact=True).fill("12")
    card.get_by_placeholder("exp_year", exact=True).fill("34")
    card.get_by_placeholder("cvc", exact=True).fill("123")
    card.get_by_placeholder("postal_code", exact=True).fill("1012")


def assert_evse_free(stack, evse_id):
    row = stack.latest_session(evse_id)
    assert row is None or row["status"] in ("finished", "failed"), (
        f"{evse_id} is still busy with session {row['session_id']} ({row['status']}): an earlier test left it"
    )


def stop_and_wait_for_receipt(page):
    page.get_by_role("button", name="Stop charging").click()
    expect(page.get_by_role("status")).to_have_text("Finished", timeout=SLOW)
    receipt_link = page.get_by_role("link", name=re.compile("Receipt"))
    expect(receipt_link).to_be_visible(timeout=SLOW)
    return receipt_link


def test_pay_charge_stop_and_download_the_receipt(stack, page):
    assert_evse_free(stack, AC)
    pay_button = open_checkout(page, stack, AC)

    # Everything AFIR asks for is on the page before paying: which charger, the price, the hold.
    expect(page.locator(".evse-id")).to_have_text(AC)
    expect(page.get_by_text("Central Station Garage")).to_be_visible()
    # 0.45 EUR/kWh + 21% VAT = 0.5445, shown with 2 or more decimals.
    expect(page.get_by_role("row", name=re.compile("per kWh"))).to_contain_text(
        re.compile(r"0\.54(45)? EUR")
    )
    expect(page.get_by_role("radio")).to_have_count(3)
    for amount in ("20.00 EUR", "35.00 EUR", "50.00 EUR"):
        expect(page.get_by_label(amount)).to_be_visible()
    expect(page.get_by_label("35.00 EUR")).to_be_checked()
    expect(pay_button).to_have_text("Pay 35.00 EUR")
    page.get_by_label("20.00 EUR").check()
    expect(pay_button).to_have_text("Pay 20.00 EUR")

    page.get_by_label("E-mail for the receipt").fill("driver@example.com")
    fill_card(page, VISA)
    page.screenshot(path=str(ARTIFACTS / "browser-1-checkout.png"), full_page=True)
    pay_button.click()

    page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))
    state = page.get_by_role("status")
    expect(state).to_have_text("Charging", timeout=SLOW)
    session = stack.latest_session(AC)
    assert session["payment_status"] == "authorized" and session["amount_held"] == 2000
    assert session["card_last4"] == "4242"
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert (intent["status"], intent["amount"], intent["capture_method"]) == (
        "requires_capture",
        2000,
        "manual",
    )

    # Let it charge: the page's figures move (the simulator delivers 22 kW, 60x faster than the clock).
    expect(page.locator("#kwh")).not_to_have_text("0.000", timeout=SLOW)
    # ...until about a kWh has been delivered (22 kW at 60x: some 3 seconds).
    # (Matched as text: a wait_for_function string would be an eval, which the page's CSP refuses.)
    expect(page.locator("#kwh")).to_have_text(re.compile(r"^[1-9]\d*\.\d+$"), timeout=SLOW)
    expect(page.locator("#cost")).not_to_have_text("0.00", timeout=SLOW)
    page.screenshot(path=str(ARTIFACTS / "browser-2-charging.png"), full_page=True)

    receipt_link = stop_and_wait_for_receipt(page)
    page.screenshot(path=str(ARTIFACTS / "browser-3-finished.png"), full_page=True)

    session = stack.latest_session(AC)
    assert session["status"] == "finished" and session["payment_status"] == "captured"
    number, total, held = (
        session["receipt_number"],
        session["receipt_total"],
        session["amount_held"],
    )
    assert re.fullmatch(r"DPY-\d{4}-\d{6}", number), number
    assert 0 < total == session["amount_captured"] <= held
    # The total charged is the final cost the session was priced at.
    assert Decimal(total) / 100 == session["cost_incl_vat"]
    expect(figure(page, "Held on your card")).to_have_text(f"{Decimal(held) / 100:.2f} EUR")
    expect(figure(page, "Charged")).to_have_text(f"{Decimal(total) / 100:.2f} EUR")
    expect(figure(page, "Released")).to_have_text(f"{Decimal(held - total) / 100:.2f} EUR")

    with page.expect_download() as download_info:
        receipt_link.click()
    download = download_info.value
    assert download.suggested_filename == f"{number}.pdf"
    pdf = Path(download.path()).read_bytes()
    (ARTIFACTS / "browser-receipt.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert number in text
    assert f"{Decimal(total) / 100:,.2f} EUR" in text
    assert AC in text

    # What the card was really charged: localstripe captures part and releases the rest as a refund.
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert intent["status"] == "succeeded"
    charge = intent["latest_charge"]
    if isinstance(charge, str):
        charge = stack.localstripe.charge(charge)
    assert charge["captured"] is True
    net = charge["amount"] - charge["amount_refunded"]
    assert net == total <= held

    # localstripe's webhook for the capture reached the web app and a worker processed it.
    poll(
        lambda: stack.query(
            "SELECT 1 FROM checkout_stripeevent WHERE type = 'payment_intent.succeeded' AND processed_at IS NOT NULL"
            " AND payload->'data'->'object'->>'id' = %s",
            (intent["id"],),
        ),
        timeout=30,
        what="the payment_intent.succeeded webhook to be processed",
    )

    # The receipt was e-mailed (receipts queue, Django's file e-mail backend).
    mail = poll(
        lambda: next((m for m in stack.mails() if number in m), None),
        timeout=30,
        what=f"an e-mail with receipt {number}",
    )
    assert "To: driver@example.com" in mail
    assert f'filename="{number}.pdf"' in mail
    # The whole way (checkout, localstripe's card element, status page, receipt) within the CSP.
    assert page.csp_violations == []


def test_find_the_receipt_again_and_ask_for_an_invoice(stack, page):
    """The driver of the happy path closed the page: a new browser finds the receipt by the four
    facts, then asks for an invoice for the company (a wrong VAT id first)."""
    session = stack.latest_session(AC)
    assert session and session["receipt_number"], "runs after the happy path"
    number, total = session["receipt_number"], session["receipt_total"]
    day = stack.one(
        "SELECT (s.started_at AT TIME ZONE l.time_zone)::date AS day FROM checkout_chargingsession s"
        " JOIN stations_evse e ON e.id = s.evse_id JOIN stations_location l ON l.id = e.location_id"
        " WHERE s.id = %s",
        (session["session_id"],),
    )["day"]

    page.goto(stack.url("/receipt/find"))
    expect(page.get_by_text("device account number")).to_be_visible()
    page.get_by_label("Day of charging").fill(day.isoformat())
    page.get_by_label("EVSE ID").fill(AC.replace("*", " ").lower())
    page.get_by_label("Amount charged").fill(f"{Decimal(total) / 100:.2f}".replace(".", ","))
    page.get_by_label("Last 4 digits of the card").fill("4243")  # a digit wrong first
    page.get_by_role("button", name="Find receipt").click()
    expect(page.get_by_role("alert").first).to_contain_text("We found no receipt")
    page.get_by_label("Last 4 digits of the card").fill("4242")
    page.get_by_role("button", name="Find receipt").click()
    page.wait_for_url(re.compile(r"/r/[^/]+/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Receipt {number}")

    page.get_by_label("Company name").fill("Acme Logistics B.V.")
    page.get_by_label("Address").fill("Keizersgracht 1\n1015 CJ Amsterdam")
    page.get_by_label("Country").select_option("NL")
    page.get_by_label("VAT id").fill("NL004495446B01")
    page.get_by_role("button", name="Issue invoice").click()
    vat_field = page.get_by_label("VAT id")
    expect(vat_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_vat_id_error")).to_contain_text("not a valid VAT id")
    vat_field.fill("NL004495445B01")
    page.get_by_role("button", name="Issue invoice").click()
    expect(page.get_by_text(re.compile(r"replaced by invoice DPY-INV-\d{4}-\d{6}"))).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "browser-4-invoice.png"), full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("^Invoice")).click()
    pdf = Path(download_info.value.path()).read_bytes()
    (ARTIFACTS / "browser-invoice.pdf").write_bytes(pdf)
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Acme Logistics B.V." in text and "NL004495445B01" in text
    assert f"Total (incl. VAT) {Decimal(total) / 100:.2f} EUR" in text
    assert f"Replaces receipt {number}" in text
    assert page.csp_violations == []


def test_rejected_start_releases_the_hold(stack, page):
    assert_evse_free(stack, DC)
    stack.set_sim_behaviour(DC, "reject")
    try:
        pay_button = open_checkout(page, stack, DC)
        fill_card(page, VISA)
        pay_button.click()
        page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))
        expect(page.get_by_role("status")).to_have_text("Not started", timeout=SLOW)
        expect(
            page.get_by_text(re.compile(r"nothing charged, your hold of 35\.00 EUR was released"))
        ).to_be_visible(timeout=SLOW)
        expect(page.get_by_text("The charger refused to start.")).to_be_visible()
        expect(page.get_by_role("button", name="Stop charging")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "browser-4-not-started.png"), full_page=True)
    finally:
        stack.set_sim_behaviour(DC, "accept")

    session = stack.latest_session(DC)
    assert (session["status"], session["payment_status"]) == ("failed", "canceled")
    assert session["receipt_number"] is None
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert intent["status"] == "canceled"


def test_three_d_secure(stack, page):
    assert_evse_free(stack, AC)
    pay_button = open_checkout(page, stack, AC)
    fill_card(page, VISA_3DS)
    pay_button.click()

    # localstripe's stand-in for the bank's 3-D Secure page.
    complete = page.get_by_role("button", name="Complete authentication")
    expect(complete).to_be_visible()
    expect(page.get_by_role("button", name="Fail authentication")).to_be_visible()
    session = stack.latest_session(AC)
    assert session["payment_status"] == "requires_action"
    page.screenshot(path=str(ARTIFACTS / "browser-5-3ds.png"), full_page=True)
    complete.click()

    page.wait_for_url(re.compile(r"/s/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("status")).to_have_text("Charging", timeout=SLOW)
    session = stack.latest_session(AC)
    assert session["payment_status"] == "authorized" and session["card_last4"] == "3155"
    assert (
        stack.localstripe.intent(session["stripe_payment_intent_id"])["status"]
        == "requires_capture"
    )

    # Stop, so that the EVSE is free for the next test, and see the money settle.
    stop_and_wait_for_receipt(page)
    session = stack.latest_session(AC)
    assert (
        session["payment_status"] == "captured"
        and 0 < session["receipt_total"] <= session["amount_held"]
    )
    assert page.csp_violations == []  # localstripe's authentication modal included


def test_declined_card_holds_nothing(stack, page):
    assert_evse_free(stack, AC)
    before = stack.latest_session(AC)
    checkout_url = stack.checkout_url(AC)
    pay_button = open_checkout(page, stack, AC)
    fill_card(page, DECLINED)
    pay_button.click()

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("declined")
    expect(alert).to_contain_text("Nothing has been charged")
    expect(pay_button).to_be_enabled()  # the driver may try another card
    assert page.url == checkout_url
    page.screenshot(path=str(ARTIFACTS / "browser-6-declined.png"), full_page=True)

    session = stack.latest_session(AC)
    assert before is None or session["session_id"] != before["session_id"]
    assert (session["status"], session["payment_status"]) == ("failed", "failed")
    # The declined attempt is known to us (its webhooks find the payment), and nothing is held on it.
    attempts = [
        pi
        for pi in stack.payment_intents()
        if pi["metadata"].get("session") == str(session["public_id"])
    ]
    assert [(pi["id"], pi["status"]) for pi in attempts] == [
        (session["stripe_payment_intent_id"], "requires_payment_method")
    ]


def phone_in(browser, locale):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale=locale
    )
    context.set_default_timeout(15_000)
    return context


def test_a_dutch_phone_gets_dutch_pages_and_script_messages(stack, browser):
    assert_evse_free(stack, AC)
    context = phone_in(browser, "nl-NL")
    try:
        page = context.new_page()
        checkout_url = stack.checkout_url(AC)
        assert page.goto(checkout_url).status == 200
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        pay_button = page.get_by_role("button", name=re.compile("^Betalen"))
        expect(pay_button).to_be_enabled()
        expect(pay_button).to_have_text(re.compile(r"^Betalen \d+,\d\d EUR$"))  # 35,00 EUR
        # The script's own messages come from the catalogue of the page's language.
        assert page.evaluate("gettext('Something went wrong. Nothing has been charged.')") == (
            "Er ging iets mis. Er is niets afgeschreven."
        )
        fill_card(page, DECLINED)
        pay_button.click()
        alert = page.get_by_role("alert")
        expect(alert).to_have_text(
            "Uw kaart is geweigerd. Er is niets afgeschreven. "
            "Probeer een andere kaart of betaalmethode."
        )
        page.screenshot(path=str(ARTIFACTS / "browser-nl-declined.png"), full_page=True)
        # The switch changes the language and keeps the driver on the same page.
        page.get_by_role("button", name="Deutsch").click()
        expect(page.locator("html")).to_have_attribute("lang", "de")
        assert page.url == checkout_url
        expect(page.get_by_role("button", name=re.compile("^Bezahlen"))).to_be_enabled()
    finally:
        context.close()


def test_checkout_works_when_the_translation_script_fails(stack, browser):
    assert_evse_free(stack, AC)
    context = phone_in(browser, "fr-FR")
    try:
        context.route(re.compile(r".*/jsi18n/.*"), lambda route: route.abort())
        # A proxy's error page instead of Pay's answer: the script's own message must show. (Pay
        # never reaches the server, so this test spends none of the stack's per-IP Pay limit.)
        context.route(
            re.compile(r".*/q/[^/]+/pay$"),
            lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>502</h1>"),
        )
        page = context.new_page()
        assert page.goto(stack.checkout_url(AC)).status == 200
        pay_button = page.get_by_role("button", name=re.compile("^Payer"))
        expect(pay_button).to_be_enabled()  # the script ran without its catalogue
        expect(pay_button).to_have_text(re.compile(r"^Payer \d+,\d\d EUR$"))
        assert page.evaluate("typeof gettext") == "undefined"
        fill_card(page, VISA)
        pay_button.click()
        # Without the catalogue the script falls back to its English text.
        expect(page.get_by_role("alert")).to_have_text(
            "Unexpected answer from the server. If an amount is held, it is released automatically."
        )
        expect(pay_button).to_be_enabled()
    finally:
        context.close()


def test_altered_code_is_not_valid(stack, page):
    url = stack.checkout_url(AC)
    last = url[-1]
    altered = url[:-1] + ("a" if last != "a" else "b")
    response = page.goto(altered)
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_contain_text("not valid")
    expect(page.get_by_text("nothing has been charged")).to_be_visible()
    expect(page.get_by_role("button", name=PAY)).to_have_count(0)
    expect(page.locator("#card-element")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "browser-7-invalid-code.png"), full_page=True)


@pytest.mark.parametrize("evse_id", [AC, DC])
def test_checkout_fits_a_360_px_phone(stack, browser, evse_id):
    """docs/design.md §11: every driver-facing page works at 360 px wide: nothing scrolls sideways."""
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        assert page.goto(stack.checkout_url(evse_id)).status == 200
        expect(page.get_by_role("button", name=PAY)).to_be_enabled(
            timeout=SLOW
        )  # the card form is mounted
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the screen"
        expect(page.get_by_text(evse_id, exact=True)).to_be_in_viewport()
    finally:
        context.close()


def test_staff_work_in_the_admin_within_the_csp(stack, page):
    """Django's admin scripts (filters, actions, inlines, widgets) run under the same policy."""
    password = "admin-pw-for-the-test-stack-only"
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.filter(username='csp-admin').exists() or User.objects.create_superuser("
        f"'csp-admin', password='{password}')",
    )
    page.goto(stack.url("/admin/login/"))
    page.get_by_label("Username").fill("csp-admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(
        page.get_by_role("link", name="Log out").or_(page.get_by_role("button", name="Log out"))
    ).to_be_visible()
    for path in (
        "/admin/stations/evse/",
        "/admin/stations/evse/1/change/",
        "/admin/stations/location/import/",
        "/admin/checkout/chargingsession/",
        "/admin/stations/tariff/add/",
    ):
        response = page.goto(stack.url(path))
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
    # The action bar is driven by admin/js/actions.js: selecting a row counts it.
    page.goto(stack.url("/admin/stations/evse/"))
    page.locator("input.action-select").first.check()
    expect(page.locator(".action-counter")).to_contain_text("1 of")
    assert page.csp_violations == []
