"""`manage.py stripe_register_domain`: register the public domain for Apple Pay / Google Pay, report each wallet.

Real Stripe cannot be reached from here, and localstripe has no payment method domains, so the
command talks to tests/stripe_domains_peer.py, a stand-in with the shapes of Stripe's API.
"""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.stripe_domains_peer import APPLE_MISSING, StripeDomainsPeer


@pytest.fixture
def stripe_domains(settings):
    peer = StripeDomainsPeer()
    settings.STRIPE_API_BASE = peer.base
    settings.STRIPE_SECRET_KEY = peer.api_key
    settings.PUBLIC_BASE_URL = "https://pay.example-cpo.eu"
    yield peer
    peer.stop()


def run(*args) -> str:
    out = StringIO()
    call_command("stripe_register_domain", *args, stdout=out)
    return out.getvalue()


def test_registers_the_public_domain_and_reports_each_wallet(stripe_domains):
    out = run()
    assert "Registered pay.example-cpo.eu (pmd_0001)" in out
    assert "Apple Pay: active" in out and "Google Pay: active" in out
    assert [d["domain_name"] for d in stripe_domains.domains.values()] == ["pay.example-cpo.eu"]


def test_a_wallet_not_ready_fails_with_stripes_reason_and_a_second_run_validates_again(
    stripe_domains,
):
    stripe_domains.apple_pay_ready = False
    with pytest.raises(CommandError, match="Not every wallet is active"):
        out = StringIO()
        try:
            call_command("stripe_register_domain", stdout=out)
        finally:
            printed = out.getvalue()
    assert f"Apple Pay: inactive ({APPLE_MISSING})" in printed
    assert "Google Pay: active" in printed

    # The operator publishes the association file and runs the command again: no second domain.
    stripe_domains.apple_pay_ready = True
    out = run()
    assert "Already registered, validated again: pay.example-cpo.eu (pmd_0001)" in out
    assert "Apple Pay: active" in out
    assert len(stripe_domains.domains) == 1
    assert ("POST", "/v1/payment_method_domains/pmd_0001/validate") in stripe_domains.calls


@pytest.mark.parametrize(
    "domain", ["127.0.0.1", "localhost", "checkout.localhost", "[::1]", "10.0.0.8"]
)
def test_an_address_or_local_name_is_refused_without_calling_stripe(
    stripe_domains, settings, domain
):
    settings.PUBLIC_BASE_URL = f"http://{domain}:8000"
    with pytest.raises(CommandError, match="not a public domain name"):
        run()
    assert stripe_domains.calls == []


def test_a_wrong_key_says_stripe_refused(stripe_domains, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_wrong"
    with pytest.raises(CommandError, match="Stripe refused to register pay.example-cpo.eu"):
        run()
    assert stripe_domains.domains == {}


def test_the_apple_pay_association_file_is_served_as_saved(client, settings, tmp_path):
    url = "/.well-known/apple-developer-merchantid-domain-association"
    assert client.get(url).status_code == 404  # none configured
    saved = tmp_path / "apple-developer-merchantid-domain-association"
    saved.write_bytes(b"7B2270737049...from the Stripe dashboard")
    settings.APPLE_PAY_DOMAIN_FILE = str(saved)
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == saved.read_bytes()
    assert response["Content-Type"] == "text/plain"
    assert client.post(url).status_code == 405
    settings.APPLE_PAY_DOMAIN_FILE = str(tmp_path / "missing")
    assert client.get(url).status_code == 404
