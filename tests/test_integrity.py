"""Safe on the public internet (issue 10): a 3-D Secure wait cannot hold an EVSE for long, Pay
charges exactly the price the page showed, and only the payer's browser can press Stop.

Drivers go through HTTP as their browser does: load the checkout page, post its form fields back.
The clock is moved (timezone.now patched, or `now` passed), never waited for.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from checkout import services, sweeps
from checkout.models import ChargingSession, Payment
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import imports, qr
from stations.csms.ocpi import locations
from stations.models import Evse, Tariff
from tests.factories import ConnectorFactory, OperatorFactory
from tests.test_ocpi_locations import _location, cpo, pushed, send, tariff  # noqa: F401
from tests.test_station_import import csv_bytes, row
from tests.test_station_ops import price_change  # noqa: F401

VISA = "4242424242424242"
VISA_3DS = "4000002500003155"


def open_page(client, evse) -> dict:
    """Load the checkout page; return the form fields its Pay button would post (hidden inputs)."""
    html = client.get(reverse("checkout:scan", args=[qr.code_for(evse)])).content.decode()
    fields = dict(
        re.findall(r'<input type="hidden" (?:form="pay-form" )?name="(\w+)" value="([^"]*)"', html)
    )
    # An EVSE with several connectors: the one preselected (its radio joins the form).
    chosen = re.search(
        r'type="radio" form="pay-form" name="connector" [^>]*value="(\d+)"[^>]*checked', html
    )
    if chosen:
        fields["connector"] = chosen[1]
    return {"html": html, "fields": fields}


def press_pay(client, evse, page, stripe, card=VISA, hold=2000):
    data = {**page["fields"], "hold_amount": hold, "payment_method": stripe.card_token(card)}
    return client.post(reverse("checkout:pay", args=[qr.code_for(evse)]), data)


def at(monkeypatch, moment):
    monkeypatch.setattr(timezone, "now", lambda: moment)


@pytest.fixture
def limit(settings):
    """How long a checkout may wait for 3-D Secure (the default, set here so the test states it)."""
    settings.CHECKOUT_3DS_MINUTES = 3
    return timedelta(minutes=3)


# --- 1. a checkout waiting for 3-D Secure holds the EVSE for CHECKOUT_3DS_MINUTES at most --------


def test_an_unanswered_3ds_challenge_frees_the_evse_for_the_next_driver(
    client, connector, stripe, limit, monkeypatch, django_capture_on_commit_callbacks
):
    evse = connector.evse
    first = press_pay(client, evse, open_page(client, evse), stripe, card=VISA_3DS)
    assert first.json()["next"] == "authenticate"  # ... and the driver never answers
    stuck = ChargingSession.objects.get()
    expires = stuck.created_at + limit
    other = Client()

    at(monkeypatch, expires - timedelta(seconds=1))  # still within the limit: the EVSE is taken
    page = open_page(other, evse)
    assert "In use" in page["html"] and 'id="pay-form"' not in page["html"]

    at(monkeypatch, expires + timedelta(seconds=1))  # past it, and no sweep has run
    page = open_page(other, evse)
    assert 'id="pay-form"' in page["html"]
    with django_capture_on_commit_callbacks(execute=True):
        second = press_pay(other, evse, page, stripe)
    assert second.status_code == 200 and second.json()["next"] == "status", second.content
    stuck.refresh_from_db()
    assert stuck.status == S.FAILED and stuck.payment.status == P.CANCELED
    assert stripe.intent(stuck.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert stuck.events.filter(kind="authentication_expired").exists()
    assert ChargingSession.objects.exclude(pk=stuck.pk).get().payment.status == P.AUTHORIZED

    # The first driver finishes 3-D Secure after all: told it expired, nothing charged.
    late = client.post(first.json()["confirm_url"])
    assert late.status_code == 409
    assert late.json()["held"] is False
    assert (
        "expired" in late.json()["message"] and "Nothing has been charged" in late.json()["message"]
    )


def test_the_beat_sweep_expires_an_unanswered_challenge_at_the_limit(
    client, connector, stripe, limit, django_capture_on_commit_callbacks
):
    press_pay(client, connector.evse, open_page(client, connector.evse), stripe, card=VISA_3DS)
    session = ChargingSession.objects.get()
    expires = session.created_at + limit
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeps.abandoned_checkouts(now=expires - timedelta(seconds=1)) == 0
    session.refresh_from_db()
    assert session.status == S.AUTHORIZING  # the driver may still be typing the code
    with django_capture_on_commit_callbacks(execute=True):
        assert sweeps.abandoned_checkouts(now=expires) == 1
        assert sweeps.abandoned_checkouts(now=expires) == 0  # a second run finds nothing to do
    session.refresh_from_db()
    assert session.status == S.FAILED and session.payment.status == P.CANCELED
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert session.events.filter(kind="cancel_requested").count() == 1


def test_a_challenge_answered_after_expiry_but_before_the_cancel_is_released_not_charged(
    client, connector, stripe, limit, django_capture_on_commit_callbacks
):
    first = press_pay(client, connector.evse, open_page(client, connector.evse), stripe, VISA_3DS)
    session = ChargingSession.objects.get()
    payment = session.payment
    with django_capture_on_commit_callbacks(execute=False):  # its cancel is queued, not run yet
        sweeps.abandoned_checkouts(now=session.created_at + limit)
    session.refresh_from_db()
    assert session.status == S.FAILED
    # The driver's bank confirms the challenge now: Stripe holds the money...
    stripe.authenticate(payment.stripe_payment_intent_id, payment.client_secret)
    assert stripe.intent(payment.stripe_payment_intent_id)["status"] == "requires_capture"
    # ... and the browser reports back. The expired checkout must not become a charge.
    with django_capture_on_commit_callbacks(execute=True):
        late = client.post(first.json()["confirm_url"])
    assert late.status_code == 409, late.content
    assert late.json()["held"] is False and "Nothing has been charged" in late.json()["message"]
    payment.refresh_from_db()
    session.refresh_from_db()
    assert payment.status == P.CANCELED and session.status == S.FAILED
    assert stripe.intent(payment.stripe_payment_intent_id)["status"] == "canceled"


# --- 2. the price the page showed is the price Pay accepts and the session keeps ---------------


def assert_refused_nothing_held(response):
    assert response.status_code == 409, response.content
    assert response.json() == {"ok": False, "message": services.PRICE_CHANGED, "held": False}
    assert not ChargingSession.objects.exists() and not Payment.objects.exists()


def assert_reload_pays_the_new_price(client, evse, stripe, django_capture_on_commit_callbacks):
    page = open_page(client, evse)
    with django_capture_on_commit_callbacks(execute=True):
        assert press_pay(client, evse, page, stripe).status_code == 200
    session = ChargingSession.objects.get()
    tariff = evse.connectors.order_by("connector_id").first().tariff
    tariff.refresh_from_db()
    assert session.tariff_snapshot == tariff.ocpi
    assert page["fields"]["price"] == tariff.price_digest
    return session


def dearer(ocpi: dict, price) -> dict:
    changed = copy.deepcopy(ocpi)
    changed["elements"][0]["price_components"][0]["price"] = price
    return changed


def test_an_admin_edit_between_page_and_pay_is_refused(
    client, admin_client, connector, stripe, django_capture_on_commit_callbacks
):
    evse, tariff = connector.evse, connector.tariff
    page = open_page(client, evse)
    assert "0.61 EUR" in page["html"] or "0.605 EUR" in page["html"]
    edited = admin_client.post(
        reverse("admin:stations_tariff_change", args=[tariff.pk]),
        {
            "operator": tariff.operator_id,
            "name": tariff.name,
            "ocpi": json.dumps(dearer(tariff.ocpi, "5.00")),
        },
    )
    assert edited.status_code == 302
    tariff.refresh_from_db()
    assert tariff.ocpi["elements"][0]["price_components"][0]["price"] == "5.00"  # the same row
    assert_refused_nothing_held(press_pay(client, evse, page, stripe))
    session = assert_reload_pays_the_new_price(
        client, evse, stripe, django_capture_on_commit_callbacks
    )
    assert session.tariff_snapshot["elements"][0]["price_components"][0]["price"] == "5.00"


def test_a_save_that_changes_no_price_does_not_send_the_driver_back(
    client, admin_client, connector, stripe, django_capture_on_commit_callbacks
):
    evse, tariff = connector.evse, connector.tariff
    page = open_page(client, evse)
    admin_client.post(
        reverse("admin:stations_tariff_change", args=[tariff.pk]),
        {"operator": tariff.operator_id, "name": "Renamed", "ocpi": json.dumps(tariff.ocpi)},
    )
    assert Tariff.objects.get(pk=tariff.pk).name == "Renamed"
    with django_capture_on_commit_callbacks(execute=True):
        assert press_pay(client, evse, page, stripe).status_code == 200


def test_a_csv_import_between_page_and_pay_is_refused(
    client, db, stripe, django_capture_on_commit_callbacks
):
    operator = OperatorFactory(currency="EUR")
    assert imports.import_stations(operator=operator, file=csv_bytes([row()])).ok
    evse = Evse.objects.get()
    page = open_page(client, evse)
    result = imports.import_stations(operator=operator, file=csv_bytes([row(energy_price="5.00")]))
    assert result.ok and result.updated.get("tariff") == 1, result.summary()
    assert_refused_nothing_held(press_pay(client, evse, page, stripe))
    assert_reload_pays_the_new_price(client, evse, stripe, django_capture_on_commit_callbacks)


def test_an_ocpi_tariff_put_between_page_and_pay_is_refused(
    pushed,  # noqa: F811
    cpo,  # noqa: F811
    stripe,
    django_capture_on_commit_callbacks,
):
    driver, cpo_client = Client(), Client()
    evse = Evse.objects.get(uid="3256")
    page = open_page(driver, evse)
    changed = dearer(tariff("11"), 20.00)
    assert send(cpo_client, "put", "tariffs/BE/BEC/11", changed)["status_code"] == 1000
    assert_refused_nothing_held(press_pay(driver, evse, page, stripe))
    session = assert_reload_pays_the_new_price(
        driver, evse, stripe, django_capture_on_commit_callbacks
    )
    assert session.tariff_snapshot["elements"][0]["price_components"][0]["price"] == 20.0


def test_the_scheduled_pull_between_page_and_pay_is_refused(
    cpo,  # noqa: F811
    peer,
    client,
    stripe,
    django_capture_on_commit_callbacks,
):
    old = "2026-01-01T00:00:00Z"
    new = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    peer.lists["tariffs"] = [{**tariff("11"), "last_updated": old}]
    peer.lists["locations"] = [_location("L1", "U1", old)]
    locations.sync_pull(connection_id=cpo.pk)
    evse = Evse.objects.get(uid="U1")
    page = open_page(client, evse)
    # The CPO re-sends the tariff unchanged but for its timestamp: no reason to send anyone back.
    peer.lists["tariffs"] = [{**tariff("11"), "last_updated": new}]
    assert locations.sync_pull(connection_id=cpo.pk).tariffs == 1
    assert open_page(client, evse)["fields"].get("price") == page["fields"].get("price")
    # Then it raises the price.
    peer.lists["tariffs"] = [{**dearer(tariff("11"), 20.00), "last_updated": new}]
    assert locations.sync_pull(connection_id=cpo.pk).tariffs == 1
    assert_refused_nothing_held(press_pay(client, evse, page, stripe))
    assert_reload_pays_the_new_price(client, evse, stripe, django_capture_on_commit_callbacks)


def test_a_planned_change_taking_effect_between_page_and_pay_is_refused(
    client,
    connector,
    price_change,  # noqa: F811
    stripe,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    old, new = price_change
    page = open_page(client, connector.evse)  # before the change: the old price
    at(monkeypatch, old.valid_until + timedelta(seconds=1))
    assert_refused_nothing_held(press_pay(client, connector.evse, page, stripe))
    page = open_page(client, connector.evse)
    assert page["fields"]["price"] == new.price_digest
    with django_capture_on_commit_callbacks(execute=True):
        assert press_pay(client, connector.evse, page, stripe).status_code == 200
    assert ChargingSession.objects.get().tariff_snapshot == new.ocpi


def test_the_same_press_arriving_again_after_a_price_change_gets_its_first_answer(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    """A double tap straddling an edit: the first press was priced and held; say so again."""
    page = open_page(client, connector.evse)
    page["fields"]["attempt"] = "press-0001"
    with django_capture_on_commit_callbacks(execute=True):
        first = press_pay(client, connector.evse, page, stripe)
    Tariff.objects.filter(pk=connector.tariff.pk).update(ocpi=dearer(connector.tariff.ocpi, "5.00"))
    again = press_pay(client, connector.evse, page, stripe)
    assert first.status_code == again.status_code == 200
    assert again.json()["status_url"] == first.json()["status_url"]
    assert ChargingSession.objects.get().tariff_snapshot == connector.tariff.ocpi  # as shown


@pytest.mark.parametrize("price", [None, "", "0" * 31, "../../etc", "A" * 32])
def test_pay_without_a_price_from_a_page_is_refused(client, connector, stripe, price):
    page = open_page(client, connector.evse)
    page["fields"].pop("price")
    if price is not None:
        page["fields"]["price"] = price
    response = press_pay(client, connector.evse, page, stripe)
    assert response.status_code == 400
    assert response.json()["message"] == (
        "This page is out of date. Reload it to see the current price. Nothing has been charged."
    )
    assert not ChargingSession.objects.exists() and not Payment.objects.exists()


# --- 3. Stop needs the browser that paid ---------------------------------------------------------


@pytest.fixture
def charging(client, connector, stripe, tick, django_capture_on_commit_callbacks):
    """The `client` browser paid; the charge is running."""
    with django_capture_on_commit_callbacks(execute=True):
        answer = press_pay(client, connector.evse, open_page(client, connector.evse), stripe)
    assert answer.status_code == 200
    tick(timezone.now() + timedelta(minutes=1))
    session = ChargingSession.objects.get()
    assert session.status == S.CHARGING
    return session


def stop_url(session):
    return reverse("checkout:stop", args=[session.public_id])


def test_stop_from_another_browser_is_refused_and_the_charge_goes_on(
    client, charging, django_capture_on_commit_callbacks
):
    stranger = Client()  # has the status URL (a log, a history, a screenshot), not the cookie
    page = stranger.get(reverse("checkout:status", args=[charging.public_id])).content.decode()
    assert "Charging" in page and "Stop charging" not in page
    assert "only in the browser that paid" in page and "unplug" in page and "spending cap" in page
    with django_capture_on_commit_callbacks(execute=True):
        refused = stranger.post(stop_url(charging))
    assert refused.status_code == 403
    assert "unplug" in refused.content.decode() and "the charge goes on" in refused.content.decode()
    charging.refresh_from_db()
    assert charging.status == S.CHARGING
    assert not charging.events.filter(kind="stop_requested").exists()

    page = client.get(reverse("checkout:status", args=[charging.public_id])).content.decode()
    assert "Stop charging" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(stop_url(charging)).status_code == 302
    charging.refresh_from_db()
    assert charging.status == S.STOPPING


def test_the_payer_cookie_is_signed_scoped_and_httponly(
    client, connector, stripe, settings, django_capture_on_commit_callbacks
):
    settings.SESSION_COOKIE_SECURE = True  # as in production
    with django_capture_on_commit_callbacks(execute=True):
        answer = press_pay(client, connector.evse, open_page(client, connector.evse), stripe)
    session = ChargingSession.objects.get()
    cookie = answer.cookies[f"payer_{session.public_id.hex}"]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == f"/s/{session.public_id}/"  # sent to this session's pages only
    assert session.public_id.hex in cookie.value and cookie.value != session.public_id.hex


def test_a_cookie_for_another_session_or_a_forged_one_does_not_stop(
    client, charging, stripe, django_capture_on_commit_callbacks
):
    other = ConnectorFactory()
    mine = Client()
    with django_capture_on_commit_callbacks(execute=True):
        assert press_pay(mine, other.evse, open_page(mine, other.evse), stripe).status_code == 200
    own = ChargingSession.objects.get(evse=other.evse)
    own_cookie = mine.cookies[f"payer_{own.public_id.hex}"].value
    name = f"payer_{charging.public_id.hex}"
    for value in (
        own_cookie,  # a real cookie of my own session, under the victim's name
        client.cookies[name].value[:-2] + "xx",  # the victim's, tampered
        charging.public_id.hex,  # unsigned
    ):
        attacker = Client()
        attacker.cookies[name] = value
        assert attacker.post(stop_url(charging)).status_code == 403
    charging.refresh_from_db()
    assert charging.status == S.CHARGING


def test_another_browser_cannot_abandon_a_checkout_in_3ds(client, connector, stripe):
    first = press_pay(client, connector.evse, open_page(client, connector.evse), stripe, VISA_3DS)
    assert Client().post(first.json()["confirm_url"]).status_code == 403
    session = ChargingSession.objects.get()
    assert session.status == S.AUTHORIZING and session.payment.status == P.REQUIRES_ACTION
    # The payer's own browser, after the challenge, gets the cookie again on the answer.
    stripe.authenticate(session.payment.stripe_payment_intent_id, session.payment.client_secret)
    answer = client.post(first.json()["confirm_url"])
    assert answer.json()["next"] == "status"
    assert f"payer_{session.public_id.hex}" in answer.cookies


# --- 4. a tab that lost Pay's answer finds its charge, and only that tab -------------------------


def resume(client, evse, attempt):
    return client.post(reverse("checkout:resume", args=[qr.code_for(evse)]), {"attempt": attempt})


def test_a_lost_answer_is_found_by_the_press_id_with_the_right_to_stop(
    client, connector, stripe, tick, django_capture_on_commit_callbacks
):
    page = open_page(client, connector.evse)
    page["fields"]["attempt"] = "lost-answer-0001"
    phone = Client()  # the same tab after the lost answer: it has the press's id, not the cookie
    with django_capture_on_commit_callbacks(execute=True):
        assert press_pay(client, connector.evse, page, stripe).status_code == 200
    tick(timezone.now() + timedelta(minutes=1))
    session = ChargingSession.objects.get()
    assert session.status == S.CHARGING
    assert phone.post(stop_url(session)).status_code == 403

    found = resume(phone, connector.evse, "lost-answer-0001")
    assert found.status_code == 200
    assert found.json() == {"ok": True, "status_url": f"/s/{session.public_id}/"}
    with django_capture_on_commit_callbacks(execute=True):
        assert phone.post(stop_url(session)).status_code == 302
    session.refresh_from_db()
    assert session.status == S.STOPPING
    assert ChargingSession.objects.count() == 1 and Payment.objects.count() == 1


def test_a_press_that_never_arrived_or_another_chargers_is_not_found(client, connector, stripe):
    page = open_page(client, connector.evse)
    page["fields"]["attempt"] = "other-charger-01"
    assert press_pay(client, connector.evse, page, stripe).status_code == 200
    elsewhere = ConnectorFactory()
    for evse, attempt, status in (
        (connector.evse, "never-arrived-01", 404),  # the press was lost on the way: press again
        (elsewhere.evse, "other-charger-01", 404),  # an id is only good on its own charger
        (connector.evse, "<script>", 400),
        (connector.evse, "", 400),
    ):
        answer = resume(Client(), evse, attempt)
        assert answer.status_code == status
        assert answer.json()["ok"] is False
        assert "Nothing has been charged" in answer.json()["message"]
        assert not any(name.startswith("payer_") for name in answer.cookies)


def test_guessing_press_ids_is_limited(client, connector, settings):
    settings.PAY_RESUME_RATE_PER_IP = "3/10m"
    answers = [resume(client, connector.evse, f"guess-{n:010d}").status_code for n in range(5)]
    assert answers == [404, 404, 404, 429, 429]


# --- 5. a stale CSRF token is told, in the driver's language, without doing anything -------------


def test_a_stale_page_token_is_told_as_json_to_scripts_and_as_a_page_to_forms(client, charging):
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies  # the payer's browser, its CSRF cookie lost
    strict.cookies.pop("csrftoken", None)
    answer = strict.post(stop_url(charging), HTTP_ACCEPT="application/json")
    assert answer.status_code == 403
    assert (
        answer.json()["csrf"] is True and "charge in progress goes on" in answer.json()["message"]
    )
    page = strict.post(stop_url(charging), HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 403 and page["Content-Language"] == "de"
    assert '<html lang="de">' in page.content.decode()
    assert "Seite abgelaufen" in page.content.decode()
    charging.refresh_from_db()
    assert charging.status == S.CHARGING
