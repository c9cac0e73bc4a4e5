"""Charging through a CPO over OCPI 2.2.1: commands out, CommandResults, Sessions and CDRs in.

The CPO is tests/ocpi_peer.py, a real HTTP server written from the specification: it records each
command and answers with the CommandResponse it is told. The test plays the CPO's other half by
calling our receivers with the token we issued, as the CPO's platform would; payments go to the
real localstripe. tests/test_ocpi_extrawest.py runs the same walk against an independent OCPI
implementation over HTTP both ways.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from checkout import services, sweeps
from checkout.models import ChargingSession
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.models import OcpiCdr, OcpiConnection, OcpiSession
from tests.factories import ConnectorFactory, LocationFactory, OperatorFactory
from tests.ocpi_examples import examples

TOKEN = "token-the-cpo-calls-us-with"


def auth(token: str = TOKEN) -> dict:
    return {"HTTP_AUTHORIZATION": "Token " + base64.b64encode(token.encode()).decode()}


@pytest.fixture
def cpo(db, stripe, settings, peer):
    settings.PUBLIC_BASE_URL = "https://pay.example"
    operator = OperatorFactory()
    return OcpiConnection.objects.create(
        name="Example CPO",
        state=OcpiConnection.State.CONNECTED,
        token_ours=TOKEN,
        token_theirs=peer.token_a,
        country_code="NL",
        party_id="EXA",
        operator=operator,
        version="2.2.1",
        endpoints=[
            {"identifier": "commands", "role": "RECEIVER", "url": f"{peer.base}/2.2.1/commands"}
        ],
    )


@pytest.fixture
def ocpi_connector(cpo):
    location = LocationFactory(operator=cpo.operator, ocpi_connection=cpo, ocpi_id="LOC1")
    return ConnectorFactory(
        evse__location=location, evse__uid="3256", evse__evse_id="NL*EXA*E3256", connector_id="2"
    )


class Cpo:
    """The CPO's half that calls us: CommandResults, Session PUT/PATCH and CDR POST."""

    def __init__(self, client, capture):
        self.client, self.capture = client, capture

    def _send(self, method: str, path: str, body, token: str = TOKEN):
        with self.capture(execute=True):
            answer = getattr(self.client, method)(
                path, data=json.dumps(body), content_type="application/json", **auth(token)
            )
        return answer

    def result(self, response_url: str, result: str, **kw):
        return self._send(
            "post", response_url.removeprefix("https://pay.example"), {"result": result}, **kw
        )

    def put_session(self, session: dict, **kw):
        return self._send("put", f"/ocpi/emsp/2.2.1/sessions/NL/EXA/{session['id']}", session, **kw)

    def patch_session(self, session_id: str, patch: dict, **kw):
        return self._send("patch", f"/ocpi/emsp/2.2.1/sessions/NL/EXA/{session_id}", patch, **kw)

    def post_cdr(self, cdr: dict, **kw):
        return self._send("post", "/ocpi/emsp/2.2.1/cdrs", cdr, **kw)


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    return Cpo(client, django_capture_on_commit_callbacks)


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def session_object(
    start: dict, *, status="ACTIVE", kwh=0, minutes=0, session_id="S-1", **extra
) -> dict:
    """The Session a CPO would send for our START_SESSION body `start`."""
    began = timezone.now() - timedelta(hours=1)
    return {
        "country_code": "NL",
        "party_id": "EXA",
        "id": session_id,
        "start_date_time": iso(began),
        "kwh": kwh,
        "cdr_token": {
            key: start["token"][key]
            for key in ("country_code", "party_id", "uid", "type", "contract_id")
        },
        "auth_method": "COMMAND",
        "authorization_reference": start["authorization_reference"],
        "location_id": start["location_id"],
        "evse_uid": start["evse_uid"],
        "connector_id": start["connector_id"],
        "currency": "EUR",
        "status": status,
        "last_updated": iso(began + timedelta(minutes=minutes)),
        **extra,
    }


def cdr_object(
    start: dict, *, kwh: float, incl_vat: float, cdr_id="CDR-1", session_id="S-1", **extra
) -> dict:
    """A CDR for the charge, built on the specification's example with our ids."""
    cdr = json.loads((examples() / "cdr_example.json").read_text())
    ended = timezone.now()
    cdr.update(
        country_code="NL",
        party_id="EXA",
        id=cdr_id,
        session_id=session_id,
        authorization_reference=start["authorization_reference"],
        start_date_time=iso(ended - timedelta(hours=1)),
        end_date_time=iso(ended),
        total_energy=kwh,
        total_time=1.0,
        total_cost={"excl_vat": round(incl_vat / 1.21, 2), "incl_vat": incl_vat},
        last_updated=iso(ended),
        **extra,
    )
    cdr["cdr_token"] = {
        key: start["token"][key]
        for key in ("country_code", "party_id", "uid", "type", "contract_id")
    }
    return cdr


def start_of(peer) -> dict:
    command, body = peer.commands[0]
    assert command == "START_SESSION"
    return body


# --- the walk ----------------------------------------------------------------------------------


def test_pay_start_charge_stop_cdr_capture_receipt(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector, hold=2000)
    start = start_of(peer)
    # A fresh ad hoc token, never whitelisted, and our reference to match what comes back.
    assert start["token"]["type"] == "AD_HOC_USER" and start["token"]["whitelist"] == "NEVER"
    assert (
        start["token"]["uid"]
        != OcpiSession.objects.exclude(reference=session.csms_reference)
        .values_list("token_uid", flat=True)
        .first()
    )
    assert (start["location_id"], start["evse_uid"], start["connector_id"]) == ("LOC1", "3256", "2")
    assert start["authorization_reference"] == session.csms_reference
    command_id = start["response_url"].rsplit("/", 1)[1]
    assert len(command_id) >= 32 and command_id not in session.csms_reference
    session.refresh_from_db()
    assert session.status == S.STARTING
    # The charger said yes; the CPO then reports the session.
    assert send.result(start["response_url"], "ACCEPTED").json()["status_code"] == 1000
    assert send.put_session(session_object(start, kwh=0)).json()["status_code"] == 1000
    session.refresh_from_db()
    assert (session.status, session.csms_session_id) == (S.CHARGING, "S-1")
    # PATCH appends a charging period and moves the meter.
    patch = {
        "kwh": 5.5,
        "last_updated": iso(timezone.now()),
        "charging_periods": [
            {
                "start_date_time": iso(timezone.now()),
                "dimensions": [{"type": "ENERGY", "volume": 5.5}],
            }
        ],
    }
    assert send.patch_session("S-1", patch).json()["status_code"] == 1000
    session.refresh_from_db()
    assert session.kwh == Decimal("5.5")
    assert (
        len(OcpiSession.objects.get(reference=session.csms_reference).data["charging_periods"]) == 1
    )
    # The driver presses Stop: STOP_SESSION with the CPO's session id.
    with send.capture(execute=True):
        services.session_request_stop(session_id=session.pk)
    assert peer.commands[-1][0] == "STOP_SESSION" and peer.commands[-1][1]["session_id"] == "S-1"
    # The CDR agrees with our price (the test tariff: 0.50 per kWh + 21 % VAT).
    answer = send.post_cdr(cdr_object(start, kwh=6.0, incl_vat=3.63))
    assert answer.json()["status_code"] == 1000
    cdr = OcpiCdr.objects.get()
    assert answer["Location"].endswith(f"/ocpi/emsp/2.2.1/cdrs/{cdr.pk}")
    session.refresh_from_db()
    payment = session.payment
    assert (session.status, payment.status, session.kwh) == (S.FINISHED, P.CAPTURED, Decimal(6))
    assert payment.amount_captured == 363 and not session.attention
    assert payment.receipt.total_incl_vat == payment.amount_captured
    # The CDR can be read back at its Location.
    assert send.client.get(answer["Location"], **auth()).json()["data"]["id"] == "CDR-1"


def test_the_spending_cap_stops_the_charge(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector, hold=2000)
    start = start_of(peer)
    send.put_session(session_object(start, kwh=10))  # 6.05 of 20.00: charging on
    assert [c for c, _ in peer.commands] == ["START_SESSION"]
    send.patch_session(
        "S-1", {"kwh": 32, "last_updated": iso(timezone.now())}
    )  # 19.36: within 1.00 of it
    assert peer.commands[-1][0] == "STOP_SESSION"
    session.refresh_from_db()
    assert (
        session.status == S.STOPPING
        and "spending cap" in session.events.get(kind="stop_requested").message
    )


def test_a_charge_the_charger_ended_whose_cdr_never_comes(
    ocpi_connector, pay, peer, send, settings
):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start, kwh=4))
    send.put_session(
        session_object(
            start, status="COMPLETED", kwh=5, minutes=40, end_date_time=iso(timezone.now())
        )
    )
    session.refresh_from_db()
    assert session.status == S.STOPPING and session.events.filter(kind="csms_ended").exists()
    # Nothing to ask the CPO to stop; then, with no CDR in time, we bill the last reading.
    with send.capture(execute=True):
        sweeps.strays(
            now=timezone.now() + timedelta(seconds=settings.CSMS_STOP_TIMEOUT_SECONDS + 1)
        )
    assert [c for c, _ in peer.commands] == ["START_SESSION"]
    with send.capture(execute=True):
        sweeps.strays(
            now=timezone.now() + timedelta(seconds=settings.CSMS_STOP_GIVE_UP_SECONDS + 1)
        )
    session.refresh_from_db()
    assert (session.status, session.kwh, session.payment.status) == (
        S.FINISHED,
        Decimal(5),
        P.CAPTURED,
    )
    assert session.payment.amount_captured == 303 and "final record" in session.attention


def test_after_a_stop_the_completed_session_waits_for_its_cdr_without_asking_again(
    ocpi_connector, pay, peer, send, settings
):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start, kwh=4))
    with send.capture(execute=True):
        services.session_request_stop(session_id=session.pk)
    send.patch_session("S-1", {"status": "COMPLETED", "last_updated": iso(timezone.now())})
    send.patch_session(
        "S-1", {"status": "COMPLETED", "kwh": 4.1, "last_updated": iso(timezone.now())}
    )
    assert session.events.filter(kind="csms_ended").count() == 1
    with send.capture(execute=True):
        sweeps.strays(
            now=timezone.now() + timedelta(seconds=settings.CSMS_STOP_TIMEOUT_SECONDS + 1)
        )
    assert [c for c, _ in peer.commands] == [
        "START_SESSION",
        "STOP_SESSION",
    ]  # a CDR may take its time
    send.post_cdr(cdr_object(start, kwh=4.1, incl_vat=2.48))
    session.refresh_from_db()
    assert (session.payment.status, session.payment.amount_captured) == (P.CAPTURED, 248)


def test_a_duplicated_cdr_changes_nothing(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start))
    cdr = cdr_object(start, kwh=4.0, incl_vat=2.0)
    first = send.post_cdr(cdr)
    second = send.post_cdr(cdr)
    assert second.json()["status_code"] == 1000 and second["Location"] == first["Location"]
    assert OcpiCdr.objects.count() == 1
    session.refresh_from_db()
    assert session.payment.status == P.CAPTURED
    assert session.events.filter(kind="payment_status", to_status=P.CAPTURED).count() == 1


def test_a_cdr_before_the_last_session_update(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start, kwh=1))
    send.post_cdr(cdr_object(start, kwh=4.0, incl_vat=2.0))
    session.refresh_from_db()
    captured = session.payment.amount_captured
    # The CPO's last update arrives after its CDR: it is stored, and the bill stands.
    late = session_object(
        start, status="COMPLETED", kwh=3.9, minutes=50, end_date_time=iso(timezone.now())
    )
    assert send.put_session(late).json()["status_code"] == 1000
    session.refresh_from_db()
    assert (session.status, session.kwh, session.payment.amount_captured) == (
        S.FINISHED,
        Decimal(4),
        captured,
    )
    assert OcpiSession.objects.get(reference=session.csms_reference).data["status"] == "COMPLETED"


def test_an_older_session_update_is_ignored(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start, kwh=3, minutes=30))
    send.put_session(session_object(start, kwh=1, minutes=10))
    session.refresh_from_db()
    assert session.kwh == Decimal(3)


def test_a_cdr_above_our_price_charges_ours_and_flags_it(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector, hold=2000)
    start = start_of(peer)
    send.put_session(session_object(start))
    send.post_cdr(cdr_object(start, kwh=4.0, incl_vat=9.99))
    session.refresh_from_db()
    ours = int(Decimal(session.cost_incl_vat) * 100)
    assert session.payment.amount_captured == ours < 999
    assert "9.99" in session.attention


def test_a_cdr_below_our_price_charges_the_cdr(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector, hold=2000)
    start = start_of(peer)
    send.put_session(session_object(start))
    send.post_cdr(cdr_object(start, kwh=4.0, incl_vat=0.50))
    session.refresh_from_db()
    assert session.payment.amount_captured == 50
    assert session.events.filter(kind="csms_cost_lower").exists()
    assert session.attention  # a real disagreement is for staff to see


def test_a_credit_cdr_is_kept_and_flagged(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    start = start_of(peer)
    send.put_session(session_object(start))
    send.post_cdr(cdr_object(start, kwh=4.0, incl_vat=2.42))
    send.post_cdr(
        cdr_object(
            start,
            kwh=4.0,
            incl_vat=2.42,
            cdr_id="CDR-1-CREDIT",
            credit=True,
            credit_reference_id="CDR-1",
        )
    )
    session.refresh_from_db()
    assert OcpiCdr.objects.filter(credit=True).count() == 1
    assert "credit" in session.attention and session.payment.status == P.CAPTURED


# --- starts that do not happen -----------------------------------------------------------------


def test_a_rejected_start_releases_the_hold(ocpi_connector, pay, peer):
    peer.command_response = {"result": "REJECTED", "timeout": 30}
    session = pay(ocpi_connector)
    session.refresh_from_db()
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)
    assert session.failure_reason == "The charger refused to start."


def test_a_failed_command_result_says_why(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    send.result(start_of(peer)["response_url"], "EVSE_OCCUPIED")
    session.refresh_from_db()
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)
    assert "occupied" in session.failure_reason


def test_a_lost_command_result_times_out_and_a_late_accept_is_stopped(
    ocpi_connector, pay, peer, send, settings
):
    settings.OCPI_COMMAND_MARGIN_SECONDS = 15
    session = pay(ocpi_connector)
    start = start_of(peer)
    session.refresh_from_db()
    # The CPO said it needs 30 s; we wait that plus our margin, not a second less.
    waited = (session.start_deadline - session.start_requested_at).total_seconds()
    assert 45 <= waited < 47
    with send.capture(execute=True):
        sweeps.start_timeouts(now=session.start_deadline - timedelta(seconds=1))
    session.refresh_from_db()
    assert session.status == S.STARTING
    with send.capture(execute=True):
        sweeps.start_timeouts(now=session.start_deadline + timedelta(seconds=1))
    session.refresh_from_db()
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)
    # The charger accepts after all: no session id yet, so the stop waits for the Session...
    send.result(start["response_url"], "ACCEPTED")
    assert [c for c, _ in peer.commands] == ["START_SESSION"]
    assert session.events.filter(kind="late_start_accepted").exists()
    # ...which arrives, and is stopped at once, unbilled.
    send.put_session(session_object(start))
    assert peer.commands[-1] == (
        "STOP_SESSION",
        {"response_url": peer.commands[-1][1]["response_url"], "session_id": "S-1"},
    )
    send.put_session(session_object(start, kwh=1, minutes=5))
    assert [c for c, _ in peer.commands].count("STOP_SESSION") == 1
    session.refresh_from_db()
    assert (session.status, session.payment.status) == (S.FAILED, P.CANCELED)


def test_a_session_declared_invalid(ocpi_connector, pay, peer, send):
    starting = pay(ocpi_connector)
    send.put_session(session_object(start_of(peer), status="INVALID"))
    starting.refresh_from_db()
    assert (starting.status, starting.payment.status) == (S.FAILED, P.CANCELED)


def test_an_accepted_result_gives_the_session_time_to_arrive(
    ocpi_connector, pay, peer, send, settings
):
    session = pay(ocpi_connector)
    session.refresh_from_db()
    first_deadline = session.start_deadline
    send.result(start_of(peer)["response_url"], "ACCEPTED")
    send.result(start_of(peer)["response_url"], "REJECTED")  # a second result: the first counted
    session.refresh_from_db()
    assert session.status == S.STARTING and session.start_deadline >= first_deadline
    assert session.events.filter(kind="csms_start_result").count() == 1


# --- bad input ---------------------------------------------------------------------------------


def test_an_unknown_session_and_cdr_are_kept_for_staff(cpo, send):
    stranger = json.loads((examples() / "session_example_1_simple_start.json").read_text())
    assert (
        send.put_session({**stranger, "country_code": "NL", "party_id": "EXA"}).json()[
            "status_code"
        ]
        == 1000
    )
    cdr = json.loads((examples() / "cdr_example.json").read_text())
    answer = send.post_cdr(cdr)
    assert answer.json()["status_code"] == 1000 and answer.has_header("Location")
    assert OcpiSession.objects.get().reference is None
    assert OcpiCdr.objects.get().session is None
    assert not ChargingSession.objects.exists()


def test_bad_requests_get_ocpi_codes_and_change_nothing(ocpi_connector, pay, peer, send):
    session = pay(ocpi_connector)
    start = start_of(peer)
    good = session_object(start, kwh=2)
    assert send.put_session(good, token="wrong").status_code == 401
    broken = copy.deepcopy(good)
    broken["kwh"] = "a lot"
    answer = send.put_session(broken)
    assert (answer.status_code, answer.json()["status_code"]) == (400, 2001)
    assert "kwh" in answer.json()["status_message"]
    assert (
        send._send("put", "/ocpi/emsp/2.2.1/sessions/NLD/EXA/S-1", good).json()["status_code"]
        == 2001
    )
    mismatch = send._send("put", "/ocpi/emsp/2.2.1/sessions/NL/EXA/S-9", good)
    assert mismatch.json()["status_code"] == 2001
    assert (
        send.patch_session("NOPE", {"kwh": 1, "last_updated": iso(timezone.now())}).json()[
            "status_code"
        ]
        == 2001
    )
    not_json = send.client.put(
        "/ocpi/emsp/2.2.1/sessions/NL/EXA/S-1", data="{", content_type="application/json", **auth()
    )
    assert not_json.json()["status_code"] == 2001
    assert (
        send.result("/ocpi/emsp/2.2.1/commands/START_SESSION/guessed", "ACCEPTED").status_code
        == 404
    )
    assert send.result(start["response_url"], "MAYBE").json()["status_code"] == 2001
    assert send.post_cdr({"id": "x"}).json()["status_code"] == 2001
    session.refresh_from_db()
    assert (session.status, session.kwh) == (S.STARTING, 0)
    assert not OcpiSession.objects.exclude(session_id="").exists() and not OcpiCdr.objects.exists()


def test_another_cpo_cannot_answer_our_commands(ocpi_connector, pay, peer, send):
    OcpiConnection.objects.create(
        name="Other", state=OcpiConnection.State.CONNECTED, token_ours="other-token"
    )
    session = pay(ocpi_connector)
    answer = send.result(start_of(peer)["response_url"], "EVSE_OCCUPIED", token="other-token")
    assert answer.status_code == 404
    session.refresh_from_db()
    assert session.status == S.STARTING


# --- our tokens, as the CPO may ask about them ------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["token_example_1_app_user.json", "token_example_2_full_rfid.json", "token_put_example.json"],
)
def test_token_examples_and_ours_pass_the_same_checks(name, ocpi_connector, pay, peer):
    from stations.csms.ocpi import messages

    messages.check_token(json.loads((examples() / name).read_text()))
    pay(ocpi_connector)
    assert messages.check_token(start_of(peer)["token"])["type"] == "AD_HOC_USER"


def test_the_cpo_reads_and_authorises_our_tokens(ocpi_connector, pay, peer, send, settings):
    settings.OCPI_PAGE_LIMIT = 2
    session = pay(ocpi_connector)
    uid = start_of(peer)["token"]["uid"]
    listing = send.client.get("/ocpi/emsp/2.2.1/tokens", **auth())
    assert listing["X-Total-Count"] == "1" and listing.json()["data"][0]["uid"] == uid
    assert listing.json()["data"][0]["valid"] is True
    answer = send._send(
        "post", f"/ocpi/emsp/2.2.1/tokens/{uid.lower()}/authorize?type=AD_HOC_USER", None
    ).json()
    assert answer["data"]["allowed"] == "ALLOWED"
    assert answer["data"]["authorization_reference"] == session.csms_reference
    send.result(start_of(peer)["response_url"], "EVSE_OCCUPIED")
    answer = send._send(
        "post", f"/ocpi/emsp/2.2.1/tokens/{uid}/authorize?type=AD_HOC_USER", None
    ).json()
    assert (answer["data"]["allowed"], answer["data"]["token"]["valid"]) == ("NOT_ALLOWED", False)
    unknown = send._send("post", "/ocpi/emsp/2.2.1/tokens/NOPE/authorize?type=AD_HOC_USER", None)
    assert (unknown.status_code, unknown.json()["status_code"]) == (404, 2004)
    # Three purchases, two per page: the Link header leads to the rest.
    for evse_uid in ("A", "B"):
        pay(ConnectorFactory(evse__location=ocpi_connector.evse.location, evse__uid=evse_uid))
    first = send.client.get("/ocpi/emsp/2.2.1/tokens", **auth())
    assert first["X-Total-Count"] == "3" and len(first.json()["data"]) == 2
    following = first["Link"].split(">")[0].lstrip("<").removeprefix("http://testserver")
    rest = send.client.get(following, **auth()).json()["data"]
    assert len(rest) == 1 and rest[0]["uid"] not in {t["uid"] for t in first.json()["data"]}
    assert (
        send.client.get("/ocpi/emsp/2.2.1/tokens?offset=x", **auth()).json()["status_code"] == 2001
    )
