"""OCPI 2.2.1 against an independent CPO: extrawest-ocpi, a real server in its own venv.

Our side runs in Django's live server; the CPO is tests/extrawest_cpo/app.py (see tests/extrawest.py).
Both sides call each other over HTTP: handshake, Locations and Tariffs pull, START_SESSION and
STOP_SESSION with extrawest's CommandResults, Session pushes and CDRs, and the money at localstripe.
"""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from checkout import services, sweeps
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.csms.ocpi import credentials, envelope, locations
from stations.models import Connector, OcpiCdr, OcpiConnection, OcpiSession
from tests.factories import OperatorFactory
from tests.ocpi_examples import examples

pytestmark = pytest.mark.django_db(transaction=True)


def example(name: str) -> dict:
    return json.loads((examples() / name).read_text())


def test_we_register_with_extrawest(ours, cpo_peer):
    connection = OcpiConnection.objects.create(
        name="Extrawest",
        state=OcpiConnection.State.PENDING,
        versions_url=cpo_peer.versions_url,
        token_theirs=cpo_peer.token_a,
        token_ours=credentials.new_token(),
    )
    connected = credentials.connection_register(connection_id=connection.pk)

    assert connected.state == OcpiConnection.State.CONNECTED and connected.version == "2.2.1"
    base = f"{cpo_peer.base_url}/ocpi/cpo/2.2.1"
    for module in ("credentials", "commands", "locations", "tariffs", "sessions", "cdrs"):
        assert connected.endpoint(module).rstrip("/") == f"{base}/{module}"
    # extrawest lower-cases CiStrings, its own party id included: OCPI ids are case-insensitive.
    assert (connected.country_code.upper(), connected.party_id.upper()) == ("NL", "EXA")
    assert connected.business_name == "Extrawest CPO"
    state = cpo_peer.state()
    assert (
        connected.token_theirs == state["token_c"] != cpo_peer.token_a and state["token_a"] is None
    )
    assert state["emsp_token"] == connected.token_ours
    assert state["emsp_credentials"]["url"] == f"{ours}/ocpi/emsp/versions"
    assert state["emsp_credentials"]["roles"][0]["role"] == "EMSP"

    # Token A is spent (extrawest answers 403 on module endpoints where OCPI says 401); the token it
    # gave us opens its credentials module.
    url = connected.endpoint("credentials")
    assert (
        requests.get(
            url, headers={"Authorization": envelope.token_header(cpo_peer.token_a)}, timeout=10
        ).status_code
        == 403
    )
    mine = requests.get(
        url, headers={"Authorization": envelope.token_header(connected.token_theirs)}, timeout=10
    ).json()
    assert mine["status_code"] == 1000 and mine["data"]["token"] == connected.token_theirs

    # And it calls our credentials endpoint, found in our version details, with the token we issued.
    answer = cpo_peer.call_emsp("GET", module="credentials")
    assert answer["url"] == f"{ours}/ocpi/emsp/2.2.1/credentials"
    assert answer["status"] == 200 and answer["body"]["status_code"] == 1000, answer
    assert answer["body"]["data"]["token"] == connected.token_ours
    assert answer["body"]["data"]["roles"][0]["role"] == "EMSP"


def test_the_cpo_refuses_an_unknown_token(cpo_peer):
    versions = requests.get(
        cpo_peer.versions_url, headers={"Authorization": envelope.token_header("nope")}, timeout=10
    )
    assert versions.status_code == 401
    ok = requests.get(
        cpo_peer.versions_url,
        headers={"Authorization": envelope.token_header(cpo_peer.token_a)},
        timeout=10,
    ).json()
    assert ok["status_code"] == 1000 and ok["data"][0]["version"] == "2.2.1"


# --- the walk: pay, start, charge, stop, CDR, capture, receipt ------------------------------------


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def network(ours, cpo_peer, stripe):
    """We register with extrawest and pull its one location and its ad hoc tariff, as in production."""
    tariff = {
        **example("tariff_8_simple_025kwh.json"),
        "country_code": "NL",
        "party_id": "EXA",
        "id": "T1",
        "type": "AD_HOC_PAYMENT",
        "last_updated": "2026-01-01T00:00:00Z",
    }
    location = example("location_example.json")
    location.update(
        country_code="NL",
        party_id="EXA",
        id="LOC1",
        country="NLD",
        time_zone="Europe/Amsterdam",
        last_updated="2026-01-01T00:00:00Z",
    )
    location["evses"] = [{**location["evses"][0], "uid": "3256", "evse_id": "NL*EXA*E3256"}]
    location["evses"][0]["connectors"] = [
        {**location["evses"][0]["connectors"][0], "tariff_ids": ["T1"]}
    ]
    cpo_peer.set_tariffs([tariff])
    cpo_peer.set_locations([location])
    connection = OcpiConnection.objects.create(
        name="Extrawest",
        state=OcpiConnection.State.PENDING,
        versions_url=cpo_peer.versions_url,
        token_theirs=cpo_peer.token_a,
        token_ours=credentials.new_token(),
        operator=OperatorFactory(),
    )
    credentials.connection_register(connection_id=connection.pk)
    report = locations.sync_pull(connection_id=connection.pk)
    assert (report.tariffs, report.locations, report.evses) == (1, 1, 1), report
    return Connector.objects.get(evse__uid__iexact="3256")


def wait_for(predicate, what: str, seconds: float = 15):
    """extrawest posts CommandResults from a background task: wait for them to land (no time asserted)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds} s for {what}")


def started(cpo_peer) -> dict:
    wait_for(lambda: cpo_peer.commands(), "START_SESSION to reach extrawest")
    return cpo_peer.commands()[0]["body"]


def session_for(start: dict, *, kwh=0.0, status="ACTIVE", minutes=0, **extra) -> dict:
    began = timezone.now() - timedelta(hours=1)
    return {
        "country_code": "NL",
        "party_id": "EXA",
        "id": "SES-1",
        "start_date_time": _iso(began),
        "kwh": kwh,
        "cdr_token": {
            k: start["token"][k] for k in ("country_code", "party_id", "uid", "type", "contract_id")
        },
        "auth_method": "COMMAND",
        "authorization_reference": start["authorization_reference"],
        "location_id": start["location_id"],
        "evse_uid": start["evse_uid"],
        "connector_id": start["connector_id"],
        "currency": "EUR",
        "status": status,
        "last_updated": _iso(began + timedelta(minutes=minutes)),
        **extra,
    }


def cdr_for(start: dict, *, kwh: float, incl_vat: float, cdr_id="CDR-1") -> dict:
    cdr = example("cdr_example.json")
    ended = timezone.now()
    cdr.update(
        country_code="NL",
        party_id="EXA",
        id=cdr_id,
        session_id="SES-1",
        authorization_reference=start["authorization_reference"],
        start_date_time=_iso(ended - timedelta(hours=1)),
        end_date_time=_iso(ended),
        total_energy=kwh,
        total_time=1.0,
        last_updated=_iso(ended),
        total_cost={"excl_vat": round(incl_vat / 1.21, 2), "incl_vat": incl_vat},
    )
    cdr["cdr_token"] = {
        k: start["token"][k] for k in ("country_code", "party_id", "uid", "type", "contract_id")
    }
    cdr["cdr_location"] = {
        **cdr["cdr_location"],
        "id": start["location_id"],
        "evse_uid": start["evse_uid"],
        "evse_id": "NL*EXA*E3256",
        "connector_id": start["connector_id"],
        "country": "NLD",
    }
    return cdr


def refreshed(session):
    session.refresh_from_db()
    return session


def test_pay_start_charge_stop_cdr_capture_receipt(network, cpo_peer, pay):
    session = pay(network, hold=2000)
    start = started(cpo_peer)
    assert start["token"]["type"] == "AD_HOC_USER" and start["token"]["whitelist"] == "NEVER"
    assert (
        start["evse_uid"].lower() == "3256"
        and start["authorization_reference"] == session.csms_reference
    )
    # extrawest posts ACCEPTED to our response_url; then it reports the session.
    wait_for(lambda: session.events.filter(kind="csms_start_result").exists(), "the CommandResult")
    pushed = cpo_peer.push_session(session_for(start, kwh=0.0))
    assert pushed["status"] == 200 and pushed["body"]["status_code"] == 1000, pushed
    assert refreshed(session).status == S.CHARGING
    patched = cpo_peer.patch_session(
        "NL", "EXA", "SES-1", {"kwh": 4.0, "last_updated": _iso(timezone.now())}
    )
    assert patched["body"]["status_code"] == 1000, patched
    assert refreshed(session).kwh == Decimal(4)
    # The driver stops: STOP_SESSION reaches extrawest with its session id.
    services.session_request_stop(session_id=session.pk)
    stop = cpo_peer.commands()[-1]
    assert stop["command"] == "STOP_SESSION" and stop["body"]["session_id"].lower() == "ses-1"
    wait_for(
        lambda: OcpiSession.objects.filter(
            reference=session.csms_reference, stop_result="ACCEPTED"
        ).exists(),
        "the STOP_SESSION CommandResult",
    )
    # The CDR states the same total as our own price of the session.
    ours = services.price_session(refreshed(session)).total_incl_vat
    answer = cpo_peer.push_cdr(cdr_for(start, kwh=4.0, incl_vat=float(ours)))
    assert answer["status"] == 200 and answer["body"]["status_code"] == 1000, answer
    assert "/ocpi/emsp/2.2.1/cdrs/" in answer["headers"]["location"]
    session = refreshed(session)
    payment = session.payment
    assert (session.status, payment.status) == (S.FINISHED, P.CAPTURED)
    assert payment.amount_captured == int(ours * 100) and not session.attention
    assert payment.receipt.total_incl_vat == payment.amount_captured
    # The same CDR again (a retry after a lost answer): one record, one capture.
    again = cpo_peer.push_cdr(cdr_for(start, kwh=4.0, incl_vat=float(ours)))
    assert (
        again["body"]["status_code"] == 1000
        and again["headers"]["location"] == answer["headers"]["location"]
    )
    assert OcpiCdr.objects.count() == 1
    assert session.events.filter(kind="payment_status", to_status=P.CAPTURED).count() == 1


def test_a_rejected_start_releases_the_hold(network, cpo_peer, pay):
    cpo_peer.configure(start_response="REJECTED")
    session = refreshed(pay(network))
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)
    assert cpo_peer.commands()[0]["response"] == "REJECTED"


def test_a_lost_command_result_then_a_late_accept(network, cpo_peer, pay, settings):
    cpo_peer.configure(command_result=None, command_timeout=5)
    settings.OCPI_COMMAND_MARGIN_SECONDS = 5
    session = refreshed(pay(network))
    start = started(cpo_peer)
    assert session.status == S.STARTING
    sweeps.start_timeouts(now=session.start_deadline + timedelta(seconds=1))
    session = refreshed(session)
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)
    # The result extrawest held back arrives after all: the charge must not run unpaid.
    cpo_peer.release_result(0, "ACCEPTED")
    wait_for(
        lambda: session.events.filter(kind="late_start_accepted").exists(), "the late CommandResult"
    )
    assert cpo_peer.push_session(session_for(start))["body"]["status_code"] == 1000
    assert [c["command"] for c in cpo_peer.commands()] == ["START_SESSION", "STOP_SESSION"]
    assert refreshed(session).payment.status == P.CANCELED


def test_a_cdr_before_the_last_session_update(network, cpo_peer, pay):
    session = pay(network, hold=2000)
    start = started(cpo_peer)
    cpo_peer.push_session(session_for(start, kwh=1.0))
    ours = services.price_session(refreshed(session)).total_incl_vat
    cpo_peer.push_cdr(cdr_for(start, kwh=1.0, incl_vat=float(ours)))
    captured = refreshed(session).payment.amount_captured
    late = cpo_peer.push_session(
        session_for(
            start, kwh=1.0, status="COMPLETED", minutes=59, end_date_time=_iso(timezone.now())
        )
    )
    assert late["body"]["status_code"] == 1000
    session = refreshed(session)
    assert (session.status, session.payment.amount_captured) == (S.FINISHED, captured)
    assert OcpiSession.objects.get(reference=session.csms_reference).data["status"] == "COMPLETED"
