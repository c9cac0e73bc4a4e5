"""Choosing the connector on an EVSE with several (the demo's CCS 150 kW + CHAdeMO 50 kW): each is
listed with its own price, Pay starts the chosen one, and the price checked is the chosen one's."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from checkout.models import ChargingSession, Payment
from stations import demo, qr
from stations.models import Connector, Evse, SimulatedSession
from tests.test_checkout_queries import checkout_queries, redis_cache  # noqa: F401

VISA = "4242424242424242"


@pytest.fixture
def dual(db, stripe):
    demo.seed()
    return Evse.objects.get(evse_id="NL*DPY*E0002*2")


def checkout_path(evse):
    return reverse("checkout:scan", args=[qr.code_for(evse)])


def connectors(evse):
    ccs = evse.connectors.get(standard=Connector.Standard.CCS)
    chademo = evse.connectors.get(standard=Connector.Standard.CHADEMO)
    return ccs, chademo


def option_prices(html, connector):
    """The price rows shown in one connector's option, as (label, value)."""
    block = re.search(rf'<div id="connector-{connector.pk}-prices">(.*?)</div>', html, re.DOTALL)[1]
    rows = re.findall(r'<th scope="row">(.*?)</th>\s*<td>(.*?)</td>', block, re.DOTALL)
    return [(" ".join(re.sub(r"<.*?>", " ", label).split()), value) for label, value in rows]


def page_form(html):
    """What the page's form posts without script: every hidden price, the preselected connector."""
    data = dict(re.findall(r'type="hidden" form="pay-form" name="(price_\d+)" value="(\w+)"', html))
    data["price"] = re.search(r'name="price" value="([0-9a-f]+)"', html)[1]
    data["connector"] = re.search(
        r'name="connector" id="connector-\d+" value="(\d+)"[^>]*checked', html
    )[1]
    return data


def post_pay(client, evse, stripe, data):
    data = {"hold_amount": 3500, "payment_method": stripe.card_token(VISA), **data}
    return client.post(reverse("checkout:pay", args=[qr.code_for(evse)]), data)


def test_the_page_lists_each_connector_with_its_own_price(
    client, dual, django_assert_max_num_queries
):
    ccs, chademo = connectors(dual)
    with django_assert_max_num_queries(4):  # the checkout page's budget, as for one connector
        html = client.get(checkout_path(dual)).content.decode()
    assert '<fieldset class="card connectors">' in html and "<legend>" in html
    assert "Connector and price" in html
    radios = re.findall(r'<input type="radio" form="pay-form" name="connector"[^>]*>', html)
    assert len(radios) == 2
    assert f'value="{ccs.pk}"' in radios[0] and "checked" in radios[0]  # the first, preselected
    assert f'value="{chademo.pk}"' in radios[1] and "checked" not in radios[1]
    assert f'<label for="connector-{ccs.pk}">CCS · DC · 150 kW</label>' in html
    assert f'<label for="connector-{chademo.pk}">CHAdeMO · DC · 50 kW</label>' in html
    # AFIR: each option's full price list, per kWh first, incl. VAT (0.59 and 0.49 + 21%).
    assert option_prices(html, ccs) == [
        ("per kWh", "0.7139 EUR"),
        ("per minute (after 1 h)", "0.121 EUR"),
        ("per session", "1.21 EUR"),
    ]
    assert option_prices(html, chademo) == [("per kWh", "0.5929 EUR"), ("per session", "1.21 EUR")]
    form = page_form(html)
    assert form[f"price_{ccs.pk}"] == ccs.tariff.price_digest
    assert form[f"price_{chademo.pk}"] == chademo.tariff.price_digest != ccs.tariff.price_digest
    assert form["price"] == ccs.tariff.price_digest
    assert 'id="connector-chosen"' in html and "CCS · 150 kW: 0.7139 EUR per kWh" in html


def test_a_single_connector_page_has_no_choice(client, db, stripe):
    demo.seed()
    evse = Evse.objects.get(evse_id="NL*DPY*E0002*1")
    html = client.get(checkout_path(evse)).content.decode()
    assert 'type="radio" form="pay-form"' not in html and "connectors" not in html
    assert "Connector and price" not in html and "connector-chosen" not in html
    assert f'<input type="hidden" name="connector" value="{evse.connectors.get().pk}">' in html
    assert '<h2 id="price-h">Price</h2>' in html


def test_pay_on_the_second_connector_charges_on_it(
    client, dual, stripe, tick, django_capture_on_commit_callbacks
):
    ccs, chademo = connectors(dual)
    html = client.get(checkout_path(dual)).content.decode()
    # The driver picks CHAdeMO on a page whose script did not run: `price` still holds CCS's
    # digest, the option's own digest is the one checked.
    form = page_form(html) | {"connector": str(chademo.pk)}
    assert form["price"] == ccs.tariff.price_digest != form[f"price_{chademo.pk}"]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_pay(client, dual, stripe, form)
    assert response.status_code == 200, response.content
    session = ChargingSession.objects.get()
    assert session.connector == chademo
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    assert sim.connector == chademo and sim.power_kw == Decimal(50)
    tick(sim.accept_at)
    tick(sim.accept_at + timedelta(minutes=30))
    session.refresh_from_db()
    # 50 kW for half an hour = 25 kWh at 0.5929 + 1.21 start = 16.0325 (at CCS's 150 kW and 0.7139
    # it would be 75 kWh and 54.75).
    assert session.kwh == Decimal("25.0000")
    assert session.cost_incl_vat == Decimal("16.03")
    status = client.get(reverse("checkout:status", args=[session.public_id])).content.decode()
    assert "CHAdeMO · DC · 50 kW" in status


def test_the_other_connectors_price_is_refused(client, dual, stripe):
    ccs, chademo = connectors(dual)
    before = len(stripe.payment_intents())
    # CHAdeMO chosen with CCS's price: what a tampered or mixed-up page would send.
    response = post_pay(
        client,
        dual,
        stripe,
        {
            "connector": chademo.pk,
            "price": ccs.tariff.price_digest,
            f"price_{chademo.pk}": ccs.tariff.price_digest,
        },
    )
    assert response.status_code == 409
    body = response.json()
    assert body["held"] is False and "price" in body["message"]
    assert not Payment.objects.filter(stripe_payment_intent_id__isnull=False).exists()
    assert len(stripe.payment_intents()) == before


def test_a_connector_of_another_charger_is_refused(client, dual, stripe):
    other = Evse.objects.get(evse_id="NL*DPY*E0002*1").connectors.get()
    before = len(stripe.payment_intents())
    response = post_pay(
        client,
        dual,
        stripe,
        {
            "connector": other.pk,
            "price": other.tariff.price_digest,
            f"price_{other.pk}": other.tariff.price_digest,
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert "does not belong to this charger" in body["message"] and body["held"] is False
    assert not ChargingSession.objects.exists()
    assert len(stripe.payment_intents()) == before


def test_a_busy_dual_charger_shows_its_connectors_without_a_choice(client, dual):
    Evse.objects.filter(pk=dual.pk).update(status=Evse.Status.OUT_OF_ORDER)
    html = client.get(checkout_path(dual)).content.decode()
    assert 'type="radio"' not in html.split('id="price-h"')[1].split("</fieldset>")[0]
    assert html.count("Out of order") >= 2  # each connector says why it cannot be chosen
    assert "CHAdeMO · DC · 50 kW" in html and "0.5929 EUR" in html


def test_a_connector_out_of_order_is_shown_but_not_offered(client, dual, stripe):
    ccs, chademo = connectors(dual)
    Connector.objects.filter(pk=ccs.pk).update(status=Evse.Status.OUT_OF_ORDER)
    html = client.get(checkout_path(dual)).content.decode()
    radios = re.findall(r'<input type="radio" form="pay-form" name="connector"[^>]*>', html)
    assert len(radios) == 1 and f'value="{chademo.pk}"' in radios[0] and "checked" in radios[0]
    assert re.search(r"<strong>CCS · DC · 150 kW</strong>\s*<span[^>]*>Out of order</span>", html)
    assert f'name="price_{ccs.pk}"' not in html
    assert page_form(html)["price"] == chademo.tariff.price_digest  # the one preselected
    # Posting it anyway (a page from before it broke) holds nothing.
    before = len(stripe.payment_intents())
    response = post_pay(
        client, dual, stripe, {"connector": ccs.pk, "price": ccs.tariff.price_digest}
    )
    assert response.status_code == 409 and response.json()["held"] is False
    assert "connector is not available" in response.json()["message"]
    assert len(stripe.payment_intents()) == before
    assert not Payment.objects.filter(stripe_payment_intent_id__isnull=False).exists()


def test_a_single_connector_out_of_order_says_so(client, db, stripe):
    demo.seed()
    evse = Evse.objects.get(evse_id="NL*DPY*E0002*1")
    evse.connectors.update(status=Evse.Status.OUT_OF_ORDER)
    html = client.get(checkout_path(evse)).content.decode()
    assert '<p class="badge bad">Out of order</p>' in html and 'id="pay-form"' not in html


def test_two_connectors_cost_the_page_no_extra_query(client, dual, redis_cache):  # noqa: F811
    # The budget of tests/test_checkout_queries.py: both connectors come with the EVSE's one read.
    _response, sql = checkout_queries(client, qr.code_for(dual))
    assert len(sql) <= 2, sql
    assert not [s for s in sql if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
