"""What the browser is told: Content-Security-Policy, Permissions-Policy; and admin login throttling."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from directpay import content_policy
from stations import qr
from tests.factories import ConnectorFactory


def directives(header: str) -> dict:
    parsed = {}
    for part in header.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


@pytest.fixture
def checkout_page(client, db, settings):
    connector = ConnectorFactory()
    response = client.get(reverse("checkout:scan", args=[qr.code_for(connector.evse)]))
    assert response.status_code == 200
    return response


def test_checkout_page_admits_only_itself_and_the_stripe_stand_in(checkout_page, settings):
    policy = directives(checkout_page.headers["Content-Security-Policy"])
    stand_in = content_policy.origin(settings.STRIPE_JS_URL)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'", stand_in]
    assert policy["connect-src"] == ["'self'", stand_in]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


def test_production_policy_admits_stripe_and_nothing_inline():
    policy = content_policy.directives("https://js.stripe.com/v3/", "")
    assert "https://js.stripe.com" in policy["script-src"]
    assert "https://hooks.stripe.com" in policy["frame-src"]
    assert "https://api.stripe.com" in policy["connect-src"]
    assert "http://127.0.0.1:8420" not in str(policy)
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


def test_checkout_page_may_use_payment_but_no_camera_or_location(checkout_page):
    allowed = dict(
        feature.strip().split("=", 1)
        for feature in checkout_page.headers["Permissions-Policy"].split(",")
    )
    for denied in ("camera", "microphone", "geolocation", "usb"):
        assert allowed[denied] == "()"
    assert allowed["payment"].startswith('(self "https://js.stripe.com"')


def test_the_admin_is_under_the_policy_too(admin_client):
    response = admin_client.get(reverse("admin:stations_evse_changelist"))
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    # Django's admin pages carry no inline script or style the policy would block.
    html = response.content.decode()
    assert " style=" not in html and "<script>" not in html


def login(client, password, address):
    return client.post(
        reverse("admin:login"),
        {"username": "staff", "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_admin_login_is_throttled_per_username_and_address(client, db, settings):
    User.objects.create_user("staff", password="the-right-password", is_staff=True)
    guesses = [login(client, "a-guess", "203.0.113.7").status_code for _ in range(9)]
    limit = settings.AXES_FAILURE_LIMIT
    assert guesses == [200] * (limit - 1) + [429] * (9 - limit + 1)  # the form again, then 429
    # Locked out: even the right password is refused from there now...
    assert login(client, "the-right-password", "203.0.113.7").status_code == 429
    # ...but the real member of staff, elsewhere, still gets in.
    assert login(client, "the-right-password", "198.51.100.2").status_code == 302
