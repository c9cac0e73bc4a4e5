"""OCPP direct: real chargers' peers (the `ocpp` package's ChargePoint classes) talk over WebSocket on
127.0.0.1 to our gateway, run in a background asyncio loop in the test process; Pay goes to a real
localstripe, tasks run eagerly, the database is PostgreSQL (or the SQLite fallback)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from checkout import services
from checkout.models import Receipt
from checkout.services import CheckoutError
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.csms.ocpp.charger import SimulatedStation
from stations.csms.ocpp.gateway import Gateway
from stations.models import ChargingStation, Evse, Location, OcppEvse, OcppTransaction
from tests.factories import ConnectorFactory
from tests.stack import poll

VISA = "4242424242424242"


class Loop:
    """An asyncio loop in a thread: the gateway and the chargers live there, the test drives them."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def spawn(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float = 30):
        return self.spawn(coro).result(timeout)

    def stop(self):
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        # A cancelled await leaves its pool thread running its ORM call: wait for those to end, or
        # the test database's flush at teardown deadlocks with a station's last write.
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def wait_for(condition, *, timeout: float = 40, what: str = "condition"):
    return poll(condition, timeout=timeout, interval=0.1, what=what)


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.stop()


@pytest.fixture
def gateway(transactional_db, loop, settings, stripe):
    settings.OCPP_COMMAND_TIMEOUT_SECONDS = 3
    gw = Gateway(port=0, control_port=0, command_timeout=3)
    loop.spawn(gw.serve())
    loop.run(asyncio.wait_for(gw.ready.wait(), 10))
    gw.url = f"ws://127.0.0.1:{gw.port}/ocpp"
    return gw


def make_station(connector, *, protocol="ocpp2.0.1", identity="CS-1"):
    Location.objects.filter(pk=connector.evse.location_id).update(csms="ocpp")
    station = ChargingStation(
        identity=identity, location=connector.evse.location, protocol=protocol
    )
    password = station.set_new_password()
    station.save()
    OcppEvse.objects.create(evse=connector.evse, station=station, evse_number=1)
    return station, password


@pytest.fixture
def charger(gateway, loop):
    """A charger for a fresh connector, connected and reporting Available: (connector, sim)."""

    def charger(protocol="ocpp2.0.1", **options):
        connector = ConnectorFactory()
        station, password = make_station(connector, protocol=protocol)
        sim = SimulatedStation(
            url=gateway.url,
            identity=station.identity,
            password=password,
            version=protocol,
            evses={1: 22.0},
            speedup=900,  # 1.1 kWh (0.67 EUR) a reading: the cap is crossed by less than the margin
            meter_interval=0.2,
            offline_seconds=0.5,
            **options,
        )
        loop.spawn(sim.run())
        wait_for(
            lambda: OcppEvse.objects.filter(station=station, status="Available").exists(),
            what="the station's boot and status",
        )
        return connector, sim

    return charger


def pay(connector, stripe, hold=2000):
    session = services.session_create(
        evse=connector.evse, connector=connector, hold_amount=hold, email="driver@example.com"
    )
    services.payment_authorize(session_id=session.pk, payment_method_id=stripe.card_token(VISA))
    session.refresh_from_db()
    return session


def finished(session):
    session.refresh_from_db()
    return (
        session.status == S.FINISHED
        and session.payment.status == P.CAPTURED
        and Receipt.objects.filter(payment=session.payment).exists()  # issued just after capture
    )


def assert_billed(session, tx):
    """Capture = the final priced cost, never above the hold; a receipt for it; kWh from the meter."""
    session.refresh_from_db()
    payment = session.payment
    cost_cents = int(session.cost_incl_vat * 100)
    assert 0 < payment.amount_captured <= payment.amount_held
    assert payment.amount_captured == min(cost_cents, payment.amount_held)
    assert Receipt.objects.get(payment=payment).total_incl_vat == payment.amount_captured
    assert session.kwh == (tx.meter_wh - tx.meter_start_wh) / 1000 > 0
    assert session.cdr["id"] == f"CDR-OCPP-{tx.pk}"


def test_boot_and_status_drive_availability(charger, stripe, loop):
    connector, sim = charger()
    station = ChargingStation.objects.get(identity=sim.identity)
    assert station.connected and station.gateway
    assert (station.vendor, station.model, station.firmware_version) == (
        "DirectPay",
        "Sim ocpp2.0.1",
        "sim-1.0",
    )
    assert station.last_seen_at is not None and "StatusNotification" in station.last_message
    evse = Evse.objects.get(pk=connector.evse_id)
    assert evse.status == Evse.Status.AVAILABLE

    loop.run(sim.status(1, "Faulted"))
    wait_for(
        lambda: Evse.objects.get(pk=connector.evse_id).status == Evse.Status.OUT_OF_ORDER,
        what="Faulted to reach the EVSE",
    )
    with pytest.raises(CheckoutError, match="not available"):
        services.session_create(
            evse=Evse.objects.get(pk=connector.evse_id), connector=connector, hold_amount=2000
        )
    loop.run(sim.status(1, "Available"))
    wait_for(lambda: Evse.objects.get(pk=connector.evse_id).status == Evse.Status.AVAILABLE)

    # Offline, nobody can start a charge there: Pay is refused until it is back.
    loop.run(sim.drop())
    wait_for(
        lambda: Evse.objects.get(pk=connector.evse_id).status == Evse.Status.UNKNOWN,
        what="the disconnect to reach the EVSE",
    )
    assert not ChargingStation.objects.get(pk=station.pk).connected
    wait_for(  # it reconnects by itself and is as it last reported
        lambda: (
            Evse.objects.get(pk=connector.evse_id).status == Evse.Status.AVAILABLE
            and ChargingStation.objects.get(pk=station.pk).connected
        ),
        what="the reconnect",
    )


def test_201_pay_start_meter_we_stop_at_the_cap_capture_receipt(charger, stripe):
    connector, sim = charger("ocpp2.0.1")
    session = pay(connector, stripe)
    assert session.payment.status == P.AUTHORIZED
    assert session.status in (S.STARTING, S.CHARGING)
    wait_for(lambda: finished(session), what="the charge to end and be captured")
    tx = OcppTransaction.objects.get(reference=session.csms_reference)
    assert tx.state == tx.State.ENDED and tx.stopped_reason == "Remote"  # our RequestStop
    assert sim.stops_received == 1
    kinds = list(session.events.values_list("kind", flat=True))
    assert "stop_requested" in kinds
    assert_billed(session, tx)
    assert session.cost_incl_vat >= Decimal("19.00")  # stopped at the cap (hold 20 - margin 1)
    assert sim.ended[0].id_token["id_token"] == tx.id_token  # an ad hoc idToken of ours


def test_21_charger_stops_itself_at_the_transaction_limit(charger, stripe):
    connector, sim = charger("ocpp2.1")
    session = pay(connector, stripe)
    wait_for(lambda: finished(session), what="the charge to end and be captured")
    tx = OcppTransaction.objects.get(reference=session.csms_reference)
    assert tx.max_cost == Decimal("19.00")
    ended = tx.events.get(event_type="Ended")
    assert ended.payload["trigger_reason"] == "CostLimitReached"
    assert tx.stopped_reason == "LocalOutOfCredit"
    assert sim.stops_received == 0  # the charger ended it before any stop of ours took effect
    assert_billed(session, tx)


@pytest.mark.parametrize("mode", ["reject", "silent"])
def test_start_refused_or_unanswered_releases_the_hold(charger, stripe, mode):
    connector, sim = charger(mode=mode)
    session = pay(connector, stripe)
    if mode == "silent":
        assert sim.ignored_starts == 1
        assert session.status == S.STARTING  # no answer: checkout waits its time, then fails it
        services.session_check_start_timeout(session_id=session.pk, now=session.start_deadline)
        session.refresh_from_db()
    assert session.status == S.FAILED
    assert session.payment.status == P.CANCELED
    assert stripe.intent(session.payment.stripe_payment_intent_id)["status"] == "canceled"
    assert not OcppTransaction.objects.filter(state=OcppTransaction.State.STARTED).exists()


def test_offline_replays_after_a_reconnect_count_once(charger, stripe):
    connector, sim = charger("ocpp2.0.1", mode="disconnect", disconnect_after=2)
    session = pay(connector, stripe)
    wait_for(lambda: finished(session), what="the charge to end and be captured")
    tx = OcppTransaction.objects.get(reference=session.csms_reference)
    events = list(tx.events.values_list("seq_no", "offline"))
    charge = sim.ended[0]
    # Every event the charger made arrived exactly once, although some were sent twice.
    assert [seq for seq, _ in events] == list(range(charge.seq_no))
    assert any(offline for _, offline in events)
    assert sim.replayed > sum(1 for _, offline in events if offline)
    assert tx.meter_wh == sim.registers[1]
    assert_billed(session, tx)


def _basic(identity, password):
    return {
        "Authorization": "Basic " + base64.b64encode(f"{identity}:{password}".encode()).decode()
    }


async def station_socket(gateway, station, password):
    """The station's own socket (OCPP 2.0.1), kept open by the test."""
    return await connect(
        f"{gateway.url}/{station.identity}",
        subprotocols=["ocpp2.0.1"],
        additional_headers=_basic(station.identity, password),
    )


@pytest.mark.parametrize("who", ["wrong password", "unknown identity", "no credentials"])
def test_upgrade_refused_without_the_stations_password(gateway, loop, who):
    connector = ConnectorFactory()
    station, password = make_station(connector)
    identity, secret = {
        "wrong password": (station.identity, password + "x"),
        "unknown identity": ("CS-UNKNOWN", password),
        "no credentials": (station.identity, None),
    }[who]
    headers = _basic(identity, secret) if secret else {}

    async def attempt():
        async with connect(
            f"{gateway.url}/{identity}", subprotocols=["ocpp2.0.1"], additional_headers=headers
        ):
            pass

    with pytest.raises(InvalidStatus) as refused:
        loop.run(attempt())
    assert refused.value.response.status_code == 401
    assert not ChargingStation.objects.get(pk=station.pk).connected


def test_malformed_messages_get_callerror_and_the_socket_stays_up(gateway, loop):
    connector = ConnectorFactory()
    station, password = make_station(connector)

    async def converse():
        async with connect(
            f"{gateway.url}/{station.identity}",
            subprotocols=["ocpp2.0.1"],
            additional_headers=_basic(station.identity, password),
        ) as ws:
            replies = []
            for message in (
                "this is not json",
                '{"not": "an array"}',
                json.dumps([2, "m1", "BootNotification", {"reason": "PowerUp"}]),  # no station
                json.dumps([2, "m2", "NoSuchAction", {}]),
                json.dumps([2, "m3", "Heartbeat", {}]),
            ):
                await ws.send(message)
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return ws.subprotocol, replies

    subprotocol, replies = loop.run(converse())
    assert subprotocol == "ocpp2.0.1"
    assert [r[0] for r in replies] == [4, 4, 4, 4, 3]
    assert replies[0][1] == "-1" and replies[1][1] == "-1"
    # Checked against the official schema: chargingStation is missing.
    assert replies[2][1] == "m1" and replies[2][2] in ("ProtocolError", "FormatViolation")
    assert "chargingStation" in json.dumps(replies[2][4])
    assert replies[3][1] == "m2" and replies[3][2] in ("NotSupported", "NotImplemented")
    assert replies[4][1] == "m3" and "currentTime" in replies[4][2]


def test_register_a_station_shows_its_password_once(client, db):
    connector = ConnectorFactory()
    client.force_login(User.objects.create_superuser("root"))
    response = client.post(
        "/admin/stations/chargingstation/add/",
        {
            "identity": "NEW-1",
            "protocol": "ocpp2.1",
            "location": connector.evse.location_id,
            "evses-TOTAL_FORMS": "0",
            "evses-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200, response.content[:500]
    station = ChargingStation.objects.get(identity="NEW-1")
    password = response.context["passwords"][0][1]
    assert password in response.content.decode()
    assert station.password_matches(password) and password not in station.password_hash
    assert "no-store" in response["Cache-Control"]
    page = client.get(f"/admin/stations/chargingstation/{station.pk}/change/")
    assert password not in page.content.decode()
    assert page.status_code == 200 and "NEW-1" in page.content.decode()
    listing = client.get("/admin/stations/chargingstation/").content.decode()
    assert "NEW-1" in listing and "Connected" in listing and "Last message" in listing
    assert client.get("/admin/stations/ocpptransaction/").status_code == 200

    # A new password replaces the old one, shown once too.
    again = client.post(
        "/admin/stations/chargingstation/",
        {"action": "new_password", "_selected_action": [station.pk]},
    )
    new = again.context["passwords"][0][1]
    station.refresh_from_db()
    assert new != password and station.password_matches(new)
    assert not station.password_matches(password)


def _event(seq, kind, wh, *, offline=False, trigger="MeterValuePeriodic"):
    payload = {
        "eventType": kind,
        "timestamp": f"2026-06-01T10:{seq:02d}:00Z",
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": "LOCAL-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": f"2026-06-01T10:{seq:02d}:00Z",
                "sampledValue": [{"value": wh, "unitOfMeasure": {"unit": "kWh"}}],
            }
        ],
    }
    if offline:
        payload["offline"] = True
    return payload


def test_events_out_of_order_and_replayed_count_once_by_seq_no(gateway, loop):
    """A charge started at the charger without us: kept for staff, never billed; the meter is the
    reading of the highest seqNo, whatever order the events arrive in."""
    connector = ConnectorFactory()
    station, password = make_station(connector, protocol="ocpp2.1")
    events = [
        _event(0, "Started", 100.0, trigger="CablePluggedIn"),
        _event(2, "Updated", 103.5),
        _event(1, "Updated", 101.0),  # late
        _event(2, "Updated", 103.5, offline=True),  # a replay
        _event(3, "Ended", 104.25, trigger="EVCommunicationLost"),
        _event(3, "Ended", 104.25, offline=True),  # a replay of the end
    ]

    async def converse():
        async with connect(
            f"{gateway.url}/{station.identity}",
            subprotocols=["ocpp2.1"],
            additional_headers=_basic(station.identity, password),
        ) as ws:
            replies = []
            for n, payload in enumerate(events):
                await ws.send(json.dumps([2, f"e{n}", "TransactionEvent", payload]))
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return replies

    replies = loop.run(converse())
    assert [r[0] for r in replies] == [3] * len(events), replies
    tx = OcppTransaction.objects.get(station=station, transaction_id="LOCAL-1")
    assert tx.reference is None and tx.connector == connector  # not ours: nothing to bill
    assert list(tx.events.values_list("seq_no", flat=True)) == [0, 1, 2, 3]
    assert (tx.meter_start_wh, tx.meter_wh) == (Decimal(100000), Decimal(104250))
    assert tx.state == tx.State.ENDED and tx.last_seq_no == 3
    assert all("totalCost" not in r[2] for r in replies)  # priced only for our own purchases


def test_repeated_failed_logins_are_refused_without_a_password_check(gateway, loop, monkeypatch):
    from stations.csms.ocpp import gateway as gateway_module

    monkeypatch.setattr(gateway_module, "LOGIN_FAILURES", 3)
    connector = ConnectorFactory()
    station, password = make_station(connector)

    async def attempt(secret):
        async with connect(
            f"{gateway.url}/{station.identity}",
            subprotocols=["ocpp2.0.1"],
            additional_headers=_basic(station.identity, secret),
        ):
            return 101

    def status(secret):
        try:
            return loop.run(attempt(secret))
        except InvalidStatus as refused:
            return refused.response.status_code

    assert [status("wrong") for _ in range(3)] == [401, 401, 401]
    assert status(password) == 429  # even the right password waits out the window
    # Another station behind the same address is not locked out by its neighbour.
    _, other_password = make_station(ConnectorFactory(), identity="CS-2")

    async def other_attempt():
        async with connect(
            f"{gateway.url}/CS-2",
            subprotocols=["ocpp2.0.1"],
            additional_headers=_basic("CS-2", other_password),
        ) as ws:
            return ws.subprotocol

    assert loop.run(other_attempt()) == "ocpp2.0.1"


def test_slow_logins_do_not_hold_up_connected_stations(charger, gateway, loop, monkeypatch):
    """Many stations (re)connecting at once, as after a gateway restart: each login is a slow hash.
    A connected station's messages must not queue behind them (they used to share one pool)."""
    from stations.csms.ocpp import gateway as gateway_module
    from stations.csms.ocpp import store

    connector, sim = charger()
    release, hashing = threading.Event(), threading.Semaphore(0)

    def slow_login(identity, password):
        hashing.release()
        release.wait(60)  # a hash that takes as long as the test needs
        return False

    monkeypatch.setattr(store, "station_login", slow_login)
    monkeypatch.setattr(gateway_module, "LOGIN_BACKLOG", 5)

    async def attempt(n):
        try:
            async with connect(
                f"{gateway.url}/CS-STORM-{n}",
                subprotocols=["ocpp2.0.1"],
                additional_headers=_basic(f"CS-STORM-{n}", "x" * 32),
                open_timeout=30,
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    try:
        # More logins than any default pool has threads (min(32, cores + 4)).
        storm = [loop.spawn(attempt(n)) for n in range(40)]
        assert hashing.acquire(timeout=20), "no login reached the password check"
        # Beyond the backlog a login is told at once to come back later, with no hash spent.
        wait_for(
            lambda: [f.result() for f in storm if f.done()] == [503] * (len(storm) - 5),
            timeout=20,
            what="the logins beyond the backlog to be answered 503",
        )
        loop.run(sim.status(1, "Faulted"))
        wait_for(
            lambda: Evse.objects.get(pk=connector.evse_id).status == Evse.Status.OUT_OF_ORDER,
            timeout=20,
            what="the connected station's StatusNotification, while logins are being checked",
        )
    finally:
        release.set()
    answers = [future.result(60) for future in storm]
    assert answers.count(401) == 5  # the ones checked: no such stations
    assert not ChargingStation.objects.filter(identity__startswith="CS-STORM").exists()


def test_status_notification_sets_the_connectors_status_and_the_evse_follows(
    gateway, loop, client, caplog
):
    """StatusNotification names (evseId, connectorId): the connector whose connector_id is that
    number takes the status, the checkout offers the available ones, and the EVSE is in use when a
    connector is, available when one is, out of order when all are."""
    from django.urls import reverse

    from stations import qr
    from stations.models import Connector

    ccs = ConnectorFactory(connector_id="1", standard=Connector.Standard.CCS)
    chademo = ConnectorFactory(
        evse=ccs.evse, connector_id="2", standard=Connector.Standard.CHADEMO, tariff=ccs.tariff
    )
    station, password = make_station(ccs)
    page = reverse("checkout:scan", args=[qr.code_for(ccs.evse)])

    def statuses():
        return (
            Evse.objects.get(pk=ccs.evse_id).status,
            Connector.objects.get(pk=ccs.pk).status,
            Connector.objects.get(pk=chademo.pk).status,
        )

    def offered():
        html = client.get(page).content.decode()
        return [c.pk for c in (ccs, chademo) if f'id="connector-{c.pk}"' in html]

    async def notify(ws, n, connector_id, status):
        await ws.send(
            json.dumps(
                [
                    2,
                    f"s{n}",
                    "StatusNotification",
                    {
                        "timestamp": "2026-06-01T10:00:00Z",
                        "connectorStatus": status,
                        "evseId": 1,
                        "connectorId": connector_id,
                    },
                ]
            )
        )
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    # One socket throughout: a closed one would make the EVSE unknown (the station is offline).
    ws = loop.run(station_socket(gateway, station, password))
    sent = iter(range(1000))

    def converse(steps):
        return [loop.run(notify(ws, next(sent), *step)) for step in steps]

    A, C, O = Evse.Status.AVAILABLE, Evse.Status.CHARGING, Evse.Status.OUT_OF_ORDER
    replies = converse([(1, "Available"), (2, "Faulted")])
    assert [r[0] for r in replies] == [3, 3]
    assert statuses() == (A, A, O)  # a broken CHAdeMO beside a good CCS: Pay on the CCS only
    assert offered() == [ccs.pk]
    with pytest.raises(CheckoutError, match="connector is not available"):
        services.session_create(
            evse=Evse.objects.get(pk=ccs.evse_id),
            connector=Connector.objects.get(pk=chademo.pk),
            hold_amount=2000,
        )

    caplog.set_level("WARNING", logger="stations.csms.ocpp.store")
    replies = converse([(2, "Available"), (1, "Occupied"), (7, "Faulted")])
    assert [r[0] for r in replies] == [3, 3, 3]  # an unknown connector is answered, not refused
    assert "connector 7" in caplog.text
    assert statuses() == (C, C, A)  # one vehicle at a time: the whole EVSE is in use
    assert offered() == []

    converse([(1, "Unavailable"), (2, "Faulted")])
    assert statuses() == (O, O, O)
    converse([(2, "Available")])
    assert statuses() == (A, O, A)
    assert offered() == [chademo.pk]
    loop.run(ws.close())


def test_last_seen_is_written_per_kind_of_message_not_per_meter_value(gateway, loop):
    """Staff see when a station was last heard from and what it sent; a station repeating the same
    message (a meter value every few seconds) updates it at most every SEEN_EVERY seconds."""
    station, password = make_station(ConnectorFactory())

    ws = loop.run(station_socket(gateway, station, password))

    def send(n, action, payload):
        async def call():
            await ws.send(json.dumps([2, f"m{n}", action, payload]))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

        assert loop.run(call())[0] == 3
        return ChargingStation.objects.values_list("last_message", flat=True).get(pk=station.pk)

    first = send(1, "Heartbeat", {})
    assert first.startswith("Heartbeat at ")
    assert send(2, "Heartbeat", {}) == first  # the same kind again within the minute: no write
    status = {
        "timestamp": "2026-06-01T10:00:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    }
    assert send(3, "StatusNotification", status).startswith("StatusNotification at ")
    assert send(4, "Heartbeat", {}).startswith("Heartbeat at ")
    loop.run(ws.close())
