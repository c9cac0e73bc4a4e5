"""The OCPP gateway: chargers connect here over WebSocket (we are their CSMS).

One asyncio process (`manage.py ocpp_gateway`) holds the chargers' sockets at
`/ocpp/<station identity>` (subprotocols ocpp2.1 and ocpp2.0.1), checks each station's password at
the upgrade (security profile 2: HTTP Basic, TLS in front), records what the stations report and
hands session updates to checkout through the same path as the other adapters. Workers reach a
station through the control port of the gateway that holds its socket (control.py); the station
row says which gateway that is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from ocpp.exceptions import InternalError, OCPPError, PropertyConstraintViolationError
from ocpp.messages import CallError, unpack
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..base import SettlementRefused, deliver_update
from . import control, store

log = logging.getLogger(__name__)

SUBPROTOCOLS = ["ocpp2.1", "ocpp2.0.1"]
PATH_PREFIX = "/ocpp/"
HEARTBEAT_SECONDS = 300
SEEN_EVERY = 60  # seconds between writes of a station's "last seen" while it sends the same message
# What a worker may ask a station to do through the control port.
COMMANDS = {"RequestStartTransaction", "RequestStopTransaction"}
# A client address that failed this many logins within the window is refused without a password
# check (each check is a deliberately slow hash) until the window has passed.
LOGIN_FAILURES = 10  # per station identity and client address
LOGIN_FAILURES_PER_ADDRESS = 10  # times as many per client address, whatever the identities
LOGIN_FAILURE_WINDOW = 60
# Password checks (a deliberately slow hash, about 0.2 s of CPU each) run on threads of their own:
# in the shared pool, a burst of (re)connecting stations, as after a gateway restart, queued the
# connected stations' messages behind the hashes for as long as the burst lasted (bench/ocpp_stations.py).
LOGIN_THREADS = max(1, (os.cpu_count() or 2) // 2)
# More logins waiting than this (about two seconds of hashing) are answered 503 with Retry-After at
# once, unhashed: in a first-come queue the oldest logins reached their hash just as their 10 s
# handshake timed out, so under a burst almost every hash was wasted and almost nobody got in.
LOGIN_BACKLOG = 10 * LOGIN_THREADS
LOGIN_RETRY_AFTER = (5, 30)  # seconds, drawn per refusal so the retries spread out


def db(fn, executor: ThreadPoolExecutor | None = None):
    """Run a Django ORM function from the event loop, in a pool thread (the loop's default pool
    unless `executor` is given).

    Not one shared thread: a session update may make a worker send a command back through this
    gateway (eagerly, in the embedded default and the tests), and that command's answer must not
    wait behind it. One station's messages still run one at a time, in order (its routing loop
    awaits each). Connections follow CONN_MAX_AGE, as after a web request."""

    def call_db(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call_db, thread_sensitive=False, executor=executor)


def _retry_later(connection: ServerConnection, status: HTTPStatus, text: str, seconds: int):
    """The upgrade refused for now: an HTTP answer with Retry-After, before any hash is spent."""
    response = connection.respond(status, f"{text}\n")
    response.headers["Retry-After"] = str(seconds)
    return response


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class CsmsHandlers:
    """The CSMS side of OCPP 2.0.1 and 2.1 (the messages we use are the same in both)."""

    version: str
    results: object

    def __init__(self, identity, connection, gateway: Gateway):
        super().__init__(identity, connection, response_timeout=gateway.command_timeout)
        self.gateway = gateway
        self.updates: asyncio.Queue = asyncio.Queue()
        self.seen_action, self.seen_at = "", 0.0

    async def run(self) -> None:
        deliveries = asyncio.create_task(self._deliver())
        try:
            await self.start()
        except ConnectionClosed:
            pass
        finally:
            deliveries.cancel()

    async def route_message(self, raw_msg):
        # The ocpp package logs a message it cannot parse and answers nothing: OCPP-J wants a
        # CALLERROR (with message id "-1" when the id cannot be read). A handler that fails any
        # other way must not end the connection either.
        try:
            unpack(raw_msg)
        except OCPPError as error:
            await self._send(_call_error(raw_msg, error))
            return
        if raw_msg.lstrip("[ ").startswith("2"):  # a CALL from the station
            await self._seen(raw_msg)
        try:
            await super().route_message(raw_msg)
        except Exception:
            log.exception("%s: failed to handle %s", self.id, raw_msg[:200])

    async def _seen(self, raw_msg: str) -> None:
        """Staff's "last seen": written when the station sends another kind of message, else at
        most every SEEN_EVERY seconds: not a transaction of its own for every meter value."""
        summary = _summary(raw_msg)
        action, now = summary.split(" ", 1)[0], time.monotonic()
        if action == self.seen_action and now - self.seen_at < SEEN_EVERY:
            return
        self.seen_action, self.seen_at = action, now
        await db(store.station_seen)(self.id, summary)

    async def _deliver(self) -> None:
        """Hand updates to checkout one by one, after their TransactionEvent was answered (a stop
        that checkout decides goes back to this socket, which must not wait for us)."""
        while True:
            update = await self.updates.get()
            try:
                await db(deliver_update)(update)
            except Exception:
                log.exception("%s: delivering %s failed", self.id, update)

    @on("BootNotification")
    async def on_boot_notification(self, charging_station, reason, **_):
        await db(store.station_booted)(self.id, charging_station)
        return self.results.BootNotification(
            current_time=_now(), interval=HEARTBEAT_SECONDS, status="Accepted"
        )

    @on("Heartbeat")
    async def on_heartbeat(self, **_):
        return self.results.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def on_status_notification(self, evse_id, connector_id, connector_status, **_):
        await db(store.connector_status)(
            self.id, evse_number=evse_id, connector_id=connector_id, status=connector_status
        )
        return self.results.StatusNotification()

    @on("MeterValues")
    async def on_meter_values(self, **_):
        # Outside a transaction, readings are not billed; inside, TransactionEvent carries them.
        return self.results.MeterValues()

    @on("Authorize")
    async def on_authorize(self, id_token, **_):
        ours = await db(store.token_accepted)(self.id, id_token["id_token"])
        return self.results.Authorize(id_token_info={"status": "Accepted" if ours else "Invalid"})

    @on("TransactionEvent")
    async def on_transaction_event(self, **event):
        outcome = await db(store.transaction_event)(self.id, self.version, event)
        if outcome.update is not None:
            self.updates.put_nowait(outcome.update)
        return self.results.TransactionEvent(**outcome.response)

    async def command(self, action: str, payload: dict) -> dict:
        request = getattr(self.calls, action)(**payload)
        result = await self.call(request, suppress=False)
        return dataclasses.asdict(result)


class Csms201(CsmsHandlers, ChargePoint201):
    version = "ocpp2.0.1"
    results = result201
    calls = call201


class Csms21(CsmsHandlers, ChargePoint21):
    version = "ocpp2.1"
    results = result21
    calls = call21

    @on("NotifySettlement")
    async def on_notify_settlement(self, **request):
        """The station's payment terminal settled a charge: a receipt for its QR code."""
        try:
            answer = await db(store.settlement)(self.id, request)
        except SettlementRefused as exc:
            # A CALLERROR (the ocpp package sends it for an OCPPError); nothing was recorded.
            raise PropertyConstraintViolationError(description=str(exc)[:200]) from exc
        except Exception as exc:  # rolled back: the terminal may send it again
            log.exception("%s: recording settlement %s failed", self.id, request.get("psp_ref"))
            raise InternalError(description="the settlement could not be recorded") from exc
        return SettlementAnswer(answer.get("receipt_id"), answer.get("receipt_url"))


@dataclasses.dataclass
class SettlementAnswer:
    """NotifySettlement's response. Not the ocpp package's class: its snake_to_camel_case writes
    receipt_url as "receiptURL", which the OCPP 2.1 schema (receiptUrl) refuses."""

    receipt_id: str | None = None
    receiptUrl: str | None = None


def _summary(raw: str) -> str:
    with contextlib.suppress(Exception):
        message = json.loads(raw)
        if message[0] == 2:
            return f"{message[2]} at {_now()}"
        return f"{'CALLRESULT' if message[0] == 3 else 'CALLERROR'} at {_now()}"
    return f"? at {_now()}"


def _call_error(raw: str, error: OCPPError) -> str:
    unique_id = "-1"
    with contextlib.suppress(Exception):
        message = json.loads(raw)
        if isinstance(message, list) and len(message) > 1 and isinstance(message[1], str):
            unique_id = message[1]
    code = getattr(error, "code", "") or "RpcFrameworkError"
    return CallError(
        unique_id=unique_id,
        error_code=code,
        error_description=str(error.description or error)[:200],
        error_details={},
    ).to_json()


def _credentials(request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


class Gateway:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        control_host: str = "127.0.0.1",
        control_port: int = 9001,
        command_timeout: float = 30,
    ):
        self.host, self.port = host, port
        self.control_host, self.control_port = control_host, control_port
        self.command_timeout = command_timeout
        self.stations: dict[str, CsmsHandlers] = {}
        # Failed logins per client address (monotonic times): each costs a password hash.
        self.failures: dict[str, collections.deque] = {}
        self.login_pool = ThreadPoolExecutor(LOGIN_THREADS, thread_name_prefix="ocpp-login")
        self.logins_waiting = 0
        self.ready = asyncio.Event()

    @property
    def address(self) -> str:
        return f"{self.control_host}:{self.control_port}"

    async def serve(self) -> None:
        control_server = await asyncio.start_server(
            self._control, self.control_host, self.control_port
        )
        async with serve(
            self._connection,
            self.host,
            self.port,
            subprotocols=SUBPROTOCOLS,
            process_request=self._check_upgrade,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.control_port = control_server.sockets[0].getsockname()[1]
            await db(store.gateway_started)(self.address)
            self.ready.set()
            log.info("OCPP gateway on ws://%s:%s%s<identity>", self.host, self.port, PATH_PREFIX)
            try:
                async with control_server:
                    await server.serve_forever()
            finally:
                self.login_pool.shutdown(wait=True, cancel_futures=True)

    async def _check_upgrade(self, connection: ServerConnection, request):
        """Security profile 2: the station's identity and password, before the socket opens."""
        identity = (
            request.path.removeprefix(PATH_PREFIX) if request.path.startswith(PATH_PREFIX) else ""
        )
        if not identity or "/" in identity:
            return connection.respond(HTTPStatus.NOT_FOUND, "Connect to /ocpp/<identity>.\n")
        client = str((connection.remote_address or ("?",))[0])
        # Per station and address (a misconfigured charger does not lock out its neighbours behind
        # the same NAT), and per address with more room (one address trying many identities).
        counters = [
            (f"{client} {identity}", LOGIN_FAILURES),
            (client, LOGIN_FAILURES * LOGIN_FAILURES_PER_ADDRESS),
        ]
        now = time.monotonic()
        for key, limit in counters:
            recent = self.failures.get(key)
            while recent and recent[0] < now - LOGIN_FAILURE_WINDOW:
                recent.popleft()
            if recent is not None and len(recent) >= limit:
                return _retry_later(
                    connection,
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "Too many failed logins.",
                    LOGIN_FAILURE_WINDOW,
                )
        credentials = _credentials(request)
        accepted = False
        if credentials is not None and credentials[0] == identity:
            if self.logins_waiting >= LOGIN_BACKLOG:
                return _retry_later(
                    connection,
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "Too many stations connecting; retry later.",
                    random.randint(*LOGIN_RETRY_AFTER),
                )
            self.logins_waiting += 1
            try:
                accepted = await db(store.station_login, self.login_pool)(identity, credentials[1])
            finally:
                self.logins_waiting -= 1
        if not accepted:
            log.warning("refused %s from %s: unknown identity or wrong password", identity, client)
            for key, _ in counters:
                self.failures.setdefault(key, collections.deque()).append(now)
            return _unauthorized(connection)
        for key, _ in counters:
            if not self.failures.get(key, True):
                del self.failures[key]
        return None

    async def _connection(self, connection: ServerConnection) -> None:
        identity = connection.request.path.removeprefix(PATH_PREFIX)
        version = connection.subprotocol
        cls = Csms21 if version == "ocpp2.1" else Csms201
        station = cls(identity, connection, self)
        previous = self.stations.get(identity)
        self.stations[identity] = station
        if previous is not None:  # the charger reconnected before we noticed the old socket died
            await previous._connection.close()
        await db(store.station_connected)(identity, protocol=version, gateway=self.address)
        try:
            await station.run()
        finally:
            if self.stations.get(identity) is station:
                del self.stations[identity]
                await db(store.station_disconnected)(identity, gateway=self.address)

    async def _control(self, reader, writer) -> None:
        """One command from a worker: a JSON line in, a JSON line out (control.py is the client)."""
        try:
            request = json.loads(await reader.readline())
            reply = await self._command(request)
        except Exception as exc:  # a bad request must not stop the gateway
            log.exception("control request failed")
            reply = {"error": "bad_request", "detail": str(exc)[:200]}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            writer.close()

    async def _command(self, request: dict) -> dict:
        if not control.key_valid(request.get("key", "")):
            return {"error": "forbidden"}
        if request.get("action") not in COMMANDS:
            return {"error": "bad_request", "detail": "unknown action"}
        station = self.stations.get(request.get("station", ""))
        if station is None:
            return {"error": "not_connected"}
        timeout = min(float(request.get("timeout", self.command_timeout)), self.command_timeout)
        try:
            result = await asyncio.wait_for(
                station.command(request["action"], request.get("payload", {})), timeout
            )
        except TimeoutError:
            return {"error": "timeout"}
        except ConnectionClosed:
            return {"error": "not_connected"}
        except OCPPError as exc:
            return {"error": "call_error", "detail": str(exc)[:200]}
        return {"result": result}


def _unauthorized(connection: ServerConnection):
    response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unknown station or wrong password.\n")
    response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
    return response
