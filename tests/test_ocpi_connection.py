"""OCPI 2.2.1 connection: envelope, tokens, versions, and the credentials handshake both ways.

The CPO is tests/ocpi_peer.py running as a real HTTP server; our side runs in Django's live server,
so each side reaches the other over HTTP as in production.
"""

import base64
import json

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from stations.csms.base import CsmsError
from stations.csms.ocpi import credentials, envelope
from stations.models import OcpiConnection
from tests.ocpi_examples import examples
from tests.ocpi_peer import CpoPeer

pytestmark = pytest.mark.django_db(transaction=True)


def b64(token: str) -> str:
    return "Token " + base64.b64encode(token.encode()).decode()


def example(name: str):
    return json.loads((examples() / name).read_text())


# --- format --------------------------------------------------------------------------------------


def test_tokens_are_read_base64_or_raw():
    assert envelope.tokens_in(b64("abc-123")) == ["abc-123", base64.b64encode(b"abc-123").decode()]
    assert envelope.tokens_in("Token abc-123") == ["abc-123"]  # not base64: taken as it is
    assert envelope.tokens_in("Bearer abc") == [] and envelope.tokens_in("") == []
    assert envelope.token_header("abc-123") == b64("abc-123")
    assert envelope.token_header("abc-123", raw=True) == "Token abc-123"


@pytest.mark.parametrize(
    "name",
    [
        "credentials_example.json",
        "credentials_example2.json",
        "credentials_example3.json",
        "credentials_example4.json",
    ],
)
def test_specification_credentials_examples_parse(name):
    data = example(name)
    creds = credentials.parse_credentials(data)
    assert creds.token == data["token"] and creds.url == data["url"]
    assert {r["role"] for r in creds.roles} <= {"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"}


@pytest.mark.parametrize(
    "bad, field",
    [
        (
            {
                "url": "https://x/versions",
                "roles": [{"role": "CPO", "party_id": "EXA", "country_code": "NL"}],
            },
            "token",
        ),
        (
            {
                "token": "t",
                "url": "ftp://x",
                "roles": [{"role": "CPO", "party_id": "EXA", "country_code": "NL"}],
            },
            "url",
        ),
        ({"token": "t", "url": "https://x/versions", "roles": []}, "roles"),
        (
            {
                "token": "t",
                "url": "https://x/versions",
                "roles": [{"role": "CPO", "party_id": "EXAMPLE", "country_code": "NL"}],
            },
            "party_id",
        ),
        (["not", "an", "object"], "object"),
    ],
)
def test_bad_credentials_are_refused_with_the_field(bad, field):
    with pytest.raises(credentials.CredentialsInvalid, match=field):
        credentials.parse_credentials(bad)


# --- we register with a CPO ---------------------------------------------------------------------


def test_we_register_with_a_cpo(ours, peer):
    connection = OcpiConnection.objects.create(
        name="Example",
        versions_url=peer.versions_url,
        token_theirs=peer.token_a,
        token_ours=credentials.new_token(),
    )
    connected = credentials.connection_register(connection_id=connection.pk)
    assert connected.state == OcpiConnection.State.CONNECTED
    assert (
        connected.version == "2.2.1"
        and connected.endpoint("commands") == f"{peer.base}/2.2.1/commands"
    )
    assert (connected.country_code, connected.party_id, connected.business_name) == (
        "NL",
        "EXA",
        "Example Operator",
    )
    assert connected.token_theirs in peer.tokens and connected.token_theirs != peer.token_a
    # The CPO read our versions with the token we gave it, and knows us as an eMSP.
    assert peer.emsp_credentials["token"] == connected.token_ours
    assert peer.emsp_credentials["url"] == f"{ours}/ocpi/emsp/versions"
    assert peer.emsp_credentials["roles"][0]["role"] == "EMSP"
    assert peer.emsp_versions_seen == [{"version": "2.2.1", "url": f"{ours}/ocpi/emsp/2.2.1"}]
    _method, _path, headers = peer.requests[0]
    assert headers["Authorization"] == b64(peer.token_a)
    assert headers["X-Request-ID"] and headers["X-Correlation-ID"]


def test_a_cpo_without_2_2_1_is_refused_clearly(ours):
    # The specification's own version list: 2.1.1 and 2.2, no 2.2.1.
    peer = CpoPeer(versions=example("transport_and_format_version_info_example.json")["data"])
    try:
        connection = OcpiConnection.objects.create(
            name="Old",
            versions_url=peer.versions_url,
            token_theirs=peer.token_a,
            token_ours=credentials.new_token(),
        )
        with pytest.raises(CsmsError, match="offers OCPI 2.1.1, 2.2, not 2.2.1"):
            credentials.connection_register(connection_id=connection.pk)
        connection.refresh_from_db()
        assert connection.state == OcpiConnection.State.PENDING and "2.2.1" in connection.last_error
    finally:
        peer.stop()


def test_management_command_connects_and_invites(ours, peer, capsys):
    call_command(
        "ocpi_connect", "Example", "--versions-url", peer.versions_url, "--token", peer.token_a
    )
    assert (
        "Connected to Example Operator (NL*EXA), OCPI 2.2.1: commands, credentials, locations"
        in capsys.readouterr().out
    )
    call_command("ocpi_connect", "Newcomer", "--invite")
    out = capsys.readouterr().out
    invited = OcpiConnection.objects.get(name="Newcomer")
    assert invited.state == OcpiConnection.State.INVITED and invited.token_ours in out


# --- a CPO registers with us --------------------------------------------------------------------


def test_a_cpo_registers_with_us_then_updates_and_deletes(ours, peer):
    invited = credentials.connection_invite(name="Example")
    token_a = invited.token_ours
    answer = peer.register_with(f"{ours}/ocpi/emsp/versions", token_a)
    assert answer["http"] == 200 and answer["status_code"] == 1000, answer
    connection = OcpiConnection.objects.get(pk=invited.pk)
    assert connection.state == OcpiConnection.State.CONNECTED and connection.endpoint("locations")
    assert connection.token_theirs in peer.tokens  # we use the token the CPO gave us
    new_token = answer["data"]["token"]
    assert new_token == connection.token_ours != token_a
    url = f"{ours}/ocpi/emsp/2.2.1/credentials"
    # Token A no longer opens anything; the new token does, base64 or raw.
    assert requests.get(url, headers={"Authorization": b64(token_a)}, timeout=10).status_code == 401
    got = requests.get(
        url,
        headers={
            "Authorization": f"Token {new_token}",
            "X-Request-ID": "r-1",
            "X-Correlation-ID": "c-1",
        },
        timeout=10,
    )
    assert got.status_code == 200 and got.json()["data"]["token"] == new_token
    assert (got.headers["X-Request-ID"], got.headers["X-Correlation-ID"]) == ("r-1", "c-1")
    # Registering twice is refused: PUT is the way to update.
    again = requests.post(
        url, json=peer.credentials("t2"), headers={"Authorization": b64(new_token)}, timeout=10
    )
    assert again.status_code == 405
    updated = requests.put(
        url,
        json=peer.credentials(next(iter(peer.tokens))),
        headers={"Authorization": b64(new_token)},
        timeout=10,
    ).json()
    assert updated["status_code"] == 1000 and updated["data"]["token"] != new_token
    deleted = requests.delete(
        url, headers={"Authorization": b64(updated["data"]["token"])}, timeout=10
    )
    assert deleted.json()["status_code"] == 1000
    assert OcpiConnection.objects.get(pk=invited.pk).state == OcpiConnection.State.SUSPENDED
    assert (
        requests.get(
            url, headers={"Authorization": b64(updated["data"]["token"])}, timeout=10
        ).status_code
        == 401
    )


def test_bad_requests_change_nothing(ours, peer):
    invited = credentials.connection_invite(name="Example")
    url = f"{ours}/ocpi/emsp/2.2.1/credentials"
    auth = {"Authorization": b64(invited.token_ours)}
    cases = [
        (requests.post(url, data="{not json", headers=auth, timeout=10), 400, 2001),
        (requests.post(url, json={"token": "x"}, headers=auth, timeout=10), 400, 2001),
        (
            requests.post(
                url,
                json=peer.credentials("x") | {"url": "http://127.0.0.1:9/ocpi/versions"},
                headers=auth,
                timeout=10,
            ),
            400,
            3001,
        ),
        (requests.get(url, headers={"Authorization": b64("guess")}, timeout=10), 401, 2000),
        (requests.get(url, timeout=10), 401, 2000),
        (requests.patch(url, json={}, headers=auth, timeout=10), 405, 2000),
    ]
    for answer, http, code in cases:
        assert (answer.status_code, answer.json()["status_code"]) == (http, code), answer.text
        assert answer.json()["timestamp"]
    invited.refresh_from_db()
    assert invited.state == OcpiConnection.State.INVITED and not invited.endpoints
    assert "127.0.0.1:9" in invited.last_error  # the unusable platform is kept for staff to see


# --- admin --------------------------------------------------------------------------------------


def test_admin_adds_a_connection_and_never_shows_a_token(ours, peer, admin_client):
    response = admin_client.post(
        reverse("admin:stations_ocpiconnection_add"),
        {
            "name": "Example",
            "versions_url": peer.versions_url,
            "token_a": peer.token_a,
        },
        follow=True,
    )
    assert response.status_code == 200
    connection = OcpiConnection.objects.get(name="Example")
    assert connection.state == OcpiConnection.State.CONNECTED
    page = admin_client.get(
        reverse("admin:stations_ocpiconnection_change", args=[connection.pk])
    ).content.decode()
    assert "Connected" in page and f"{peer.base}/2.2.1/commands" in page
    for secret in (connection.token_ours, connection.token_theirs, peer.token_a):
        assert secret not in page
    assert f"…{connection.token_ours[-4:]}" in page
