"""OCPP gateway at scale: N simulated stations on one gateway, meter values every 10 s each.

Prints what the gateway costs per connection (CPU seconds per minute and % of a core in steady
state, RSS), how fast it answers the stations' messages, and how long a driver's Stop press takes
to arrive at the station's socket as RequestStopTransaction (p50/p99/max), measured while the
other stations' meter traffic goes on.

What runs (all on loopback):
- its own PostgreSQL database (migrated, the demo seeded) and its own Redis database as the Celery
  broker; N ChargingStations with OCPP EVSE bindings, bulk-created at an OCPP-direct location, each
  EVSE like the demo's 22 kW AC one. The stations share one password, hashed once by the product's
  hasher (PBKDF2, its full cost) and stored on every row: the gateway still checks a full hash per
  login, so the ramp costs what 1,000 real logins cost.
- ONE gateway process (`manage.py ocpp_gateway`, DEBUG=false, production-like settings) and one
  Celery worker on the `csms` queue (4 threads, as the Procfile), which is how start and stop
  commands reach the gateway (its control port);
- `--clients` client processes (asyncio, `websockets`), whose CPU is not the gateway's: each
  station speaks plain OCPP-J 2.0.1 frames (no schema validation on the client side, so a client
  process can carry hundreds; the gateway validates every message against the official schemas as
  it does for real chargers): BootNotification, StatusNotification Available, then a transaction
  with TransactionEvent Updated carrying Energy.Active.Import.Register every `--interval` seconds
  (each station at its own phase), answering RequestStart/StopTransaction. Connections ramp at
  `--ramp` per second (each costs the gateway a password hash: 0.2 s of CPU here).
- Which transactions: `--paid` stations (default: as many as `--stops`) are real purchases through
  the product's own path: a localstripe card hold (session_create + payment_authorize in this
  process), the session_start task on the csms worker, RequestStartTransaction through the control
  line, TransactionEvent(Started) matched to the session, and from then on every TransactionEvent
  priced and handed to checkout (session_apply_update, in the gateway process). The other
  stations charge from a local start (trigger CablePluggedIn, no idToken, as a free mode does):
  recorded for staff, not priced or billed, which costs the gateway less per message.
  `--paid` up to `--stations` makes every station a purchase.

Measurements:
- gateway CPU: utime+stime of the gateway process (all its threads; /proc/<pid>/stat) over the
  `--steady` window, which starts one `--interval` after the last paid session started charging;
  per connection per minute, and as % of one core. PostgreSQL's CPU (every backend of
  the bench's database: in that window nothing else uses it) is printed beside it.
- RSS per connection: VmRSS (/proc/<pid>/status) at the end of the steady window minus VmRSS
  with no station connected (gateway up and idle), divided by N.
- message round trip: at each client, from sending a CALL to its CALLRESULT, in the window.
- Stop: `--stops` of the paid sessions, one every `--stop-gap` seconds: the time of the press
  (just before checkout.services.session_request_stop, the service the Stop button's view calls,
  which queues the csms_stop task on commit), and the time the station's client process reads
  RequestStopTransaction from its socket (both CLOCK_MONOTONIC, one machine). Between them: the
  service's transaction, Redis, the csms worker, the adapter, the control line, the gateway.

Run: .venv/bin/python bench/ocpp_stations.py [--stations 1000] [--interval 10] [--steady 60]
     [--stops 100] [--paid N] [--ramp 4] [--clients 2]
     smoke: --stations 50 --steady 10 --stops 10
     (needs PostgreSQL and Redis on 127.0.0.1; prints, asserts no time; exits 1 if stations did
     not all boot, a stop never arrived, or sockets were dropped)

The machine is shared and has 2 cores: the clients, the worker, PostgreSQL and the gateway
compete for them. `uptime` is printed before and after; compare runs back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import queue
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
KW = 22.0  # each station's power: the demo AC EVSE's


def say(text=""):
    print(text, flush=True)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the simulated stations (client processes; no Django here) ----------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Station:
    """One charging station speaking OCPP-J 2.0.1 frames over its own WebSocket."""

    def __init__(self, identity, password, url, interval, paid, out, stats, deflate):
        self.identity, self.password, self.url = identity, password, url
        self.interval, self.paid, self.out, self.stats = interval, paid, out, stats
        self.deflate = deflate
        self.ws = None
        self.pending: dict[str, asyncio.Future] = {}
        self.next_id = 0
        self.tx: str | None = None
        self.stop = asyncio.Event()
        self.register_wh = 1_000_000.0
        self.seq_no = 0
        self.tasks: set[asyncio.Task] = set()

    async def connect(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        credentials = base64.b64encode(f"{self.identity}:{self.password}".encode()).decode()
        while True:
            try:
                self.ws = await connect(
                    f"{self.url}/{self.identity}",
                    subprotocols=["ocpp2.0.1"],
                    additional_headers={"Authorization": f"Basic {credentials}"},
                    open_timeout=120,
                    compression="deflate" if self.deflate else None,
                )
                return
            except InvalidStatus as exc:
                # 503: the gateway has enough logins waiting; come back when it says.
                if exc.response.status_code != 503:
                    raise
                self.stats["busy_refusals"] += 1
                await asyncio.sleep(float(exc.response.headers.get("Retry-After", 10)))
            except Exception as exc:  # noqa: BLE001 - counted, retried as a charger would
                self.stats["connect_failures"] += 1
                self.out.put(("error", f"{self.identity} connect: {exc!r}"[:200]))
                await asyncio.sleep(random.uniform(5, 15))

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        await self.connect()
        reader = asyncio.create_task(self.read())
        try:
            await self.call(
                "BootNotification",
                {
                    "chargingStation": {"vendorName": "Bench", "model": "Sim 2.0.1"},
                    "reason": "PowerUp",
                },
            )
            await self.status("Available")
            self.out.put(("booted", self.identity))
            if not self.paid:
                self.spawn(self.charge(None, None))
            await reader
        except ConnectionClosed:
            pass
        if not self.closing:
            self.stats["dropped"] += 1
            self.out.put(("error", f"{self.identity}: socket closed by the gateway"))

    closing = False

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message[0] in (3, 4):
                future = self.pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message[0] == 2:
                await self.on_call(message, time.monotonic())

    async def send(self, frame) -> None:
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    async def call(self, action: str, payload: dict) -> dict:
        self.next_id += 1
        message_id = f"{self.next_id}"
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        sent = time.monotonic()
        await self.send([2, message_id, action, payload])
        answer = await asyncio.wait_for(future, 120)
        self.stats["answers"].append((sent, time.monotonic() - sent, action))
        if answer[0] == 4:
            self.stats["call_errors"] += 1
            self.out.put(("error", f"{self.identity} {action}: CALLERROR {answer[2:4]}"[:300]))
            return {}
        return answer[2]

    async def status(self, status: str) -> None:
        await self.call(
            "StatusNotification",
            {
                "timestamp": _now(),
                "connectorStatus": status,
                "evseId": 1,
                "connectorId": 1,
            },
        )

    async def on_call(self, message, received: float) -> None:
        _, message_id, action, payload = message
        if action == "RequestStopTransaction":
            self.out.put(("stop", self.identity, received))
            ok = self.tx is not None and payload.get("transactionId") == self.tx
            ok = ok and not self.stop.is_set()
            await self.send([3, message_id, {"status": "Accepted" if ok else "Rejected"}])
            if ok:
                self.stop.set()
        elif action == "RequestStartTransaction":
            if self.tx is not None:
                await self.send([3, message_id, {"status": "Rejected"}])
                return
            self.tx = secrets.token_hex(10)
            await self.send([3, message_id, {"status": "Accepted", "transactionId": self.tx}])
            self.spawn(self.charge(payload["idToken"], payload["remoteStartId"]))
        else:
            await self.send([4, message_id, "NotImplemented", f"{action} not simulated", {}])

    def event(self, kind: str, trigger: str, context: str, **info) -> dict:
        payload = {
            "eventType": kind,
            "timestamp": _now(),
            "triggerReason": trigger,
            "seqNo": self.seq_no,
            "transactionInfo": {"transactionId": self.tx, **info},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [
                {
                    "timestamp": _now(),
                    "sampledValue": [
                        {
                            "value": round(self.register_wh, 1),
                            "context": context,
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "Wh"},
                        }
                    ],
                }
            ],
        }
        self.seq_no += 1
        return payload

    async def charge(self, id_token, remote_start_id) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.tx = self.tx or secrets.token_hex(10)
            await self.status("Occupied")
            extra = {"chargingState": "Charging"}
            if remote_start_id is not None:
                extra["remoteStartId"] = remote_start_id
            started = self.event(
                "Started",
                "RemoteStart" if id_token else "CablePluggedIn",
                "Transaction.Begin",
                **extra,
            )
            if id_token:
                started["idToken"] = id_token
            await self.call("TransactionEvent", started)
            self.out.put(("charging", self.identity))
            # Each station meters at its own phase, so the gateway sees a steady stream.
            next_at = time.monotonic() + random.uniform(0, self.interval)
            while not self.stop.is_set():
                try:
                    await asyncio.wait_for(self.stop.wait(), max(0, next_at - time.monotonic()))
                    break
                except TimeoutError:
                    pass
                next_at += self.interval
                self.register_wh += KW * 1000 * self.interval / 3600
                await self.call(
                    "TransactionEvent",
                    self.event(
                        "Updated", "MeterValuePeriodic", "Sample.Periodic", chargingState="Charging"
                    ),
                )
                self.stats["meter_values"] += 1
            await self.call(
                "TransactionEvent",
                self.event(
                    "Ended",
                    "RemoteStop",
                    "Transaction.End",
                    chargingState="EVConnected",
                    stoppedReason="Remote",
                ),
            )
            await self.status("Available")
            self.out.put(("ended", self.identity))
        except (ConnectionClosed, TimeoutError) as exc:
            if not self.closing:
                self.out.put(("error", f"{self.identity} charge: {exc!r}"[:200]))

    async def close(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()


def client_process(stations, url, interval, ramp_at, out, done, deflate) -> None:
    """A client process: its stations connect at their times in `ramp_at` (monotonic), then run
    until `done` is set; then it sends its counters and answer times to the parent."""
    raise_nofile()
    stats = {
        "answers": [],
        "call_errors": 0,
        "connect_failures": 0,
        "busy_refusals": 0,
        "dropped": 0,
        "meter_values": 0,
    }

    async def main():
        sims = [Station(*s, url, interval, paid, out, stats, deflate) for *s, paid in stations]
        runs = []
        for sim, at in zip(sims, ramp_at):
            await asyncio.sleep(max(0, at - time.monotonic()))
            runs.append(asyncio.create_task(sim.run()))
        while not done.is_set():
            await asyncio.sleep(0.5)
        await asyncio.gather(*(sim.close() for sim in sims), return_exceptions=True)
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    asyncio.run(main())
    out.put(("stats", os.getpid(), stats))


# --- measuring the gateway ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def spread(values: list[float], unit: str = "ms", scale: float = 1000) -> str:
    if not values:
        return "n/a"
    values = sorted(values)

    def pct(p):
        return values[min(len(values) - 1, int(len(values) * p))] * scale

    return (
        f"p50 {statistics.median(values) * scale:7.1f} {unit}   p90 {pct(0.9):7.1f} {unit}   "
        f"p99 {pct(0.99):7.1f} {unit}   max {values[-1] * scale:7.1f} {unit}   (n={len(values)})"
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# --- the run --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=1000, help="stations (default 1000)")
    parser.add_argument(
        "--interval", type=float, default=10, help="seconds between meter values (default 10)"
    )
    parser.add_argument(
        "--steady", type=float, default=60, help="seconds of steady state measured (default 60)"
    )
    parser.add_argument("--stops", type=int, default=100, help="Stop presses timed (default 100)")
    parser.add_argument(
        "--paid", type=int, default=None, help="stations charging a purchase (default: --stops)"
    )
    parser.add_argument(
        "--ramp", type=float, default=4, help="new connections per second (default 4)"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--stop-gap", type=float, default=0.3, help="seconds between Stop presses (default 0.3)"
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (default: offered, as websockets does)",
    )
    args = parser.parse_args()
    n = args.stations
    paid_n = min(n, args.stops if args.paid is None else args.paid)
    if args.stops > paid_n:
        parser.error("--stops cannot exceed --paid")
    raise_nofile()
    # `kill` (SIGTERM) cleans up like Ctrl-C: the processes, the database, the Redis db.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import psycopg
    import redis
    from psycopg import sql

    sys.path.insert(0, str(ROOT))
    from tests.peers import LocalStripe, free_port
    from tests.production_env import production

    db_name = f"directpay_bench_ocpp_{secrets.token_hex(4)}"
    redis_db = next(
        (
            db
            for db in range(15, 0, -1)
            if redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5).dbsize() == 0
        ),
        None,
    )
    if redis_db is None:
        raise SystemExit("no empty Redis database (1..15) to bench with")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ocpp-"))
    secret_key = secrets.token_urlsafe(50)[:60]  # the control key derives from it: one for all
    common = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "directpay.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "SECRET_KEY": secret_key,
        "VAR_DIR": str(tmp),
        "LOG_LEVEL": "INFO",  # production's default
        "PYTHONUNBUFFERED": "1",
        "PAY_LIMITS_ENABLED": "false",
    }
    # The gateway and the worker run as production does (DEBUG=false: no query log in memory);
    # they never call Stripe, so its made-up live keys are never used.
    production_env = {
        **common,
        **production(
            ALLOWED_HOSTS="127.0.0.1",
            EMAIL_URL="smtp+tls://receipts:password@127.0.0.1:1",
            SECRET_KEY=secret_key,
            CACHE_URL=common["CACHE_URL"],
        ),
    }
    processes: dict[str, subprocess.Popen] = {}
    logs = []
    localstripe = None
    clients = []
    done = multiprocessing.get_context("spawn").Event()
    failed = True

    def spawn(name, command):
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed at the end
        logs.append(log)
        processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=production_env, stdout=log, stderr=subprocess.STDOUT
        )
        return processes[name]

    def wait_log(name, text, timeout=60):
        deadline = time.monotonic() + timeout
        while text not in (tmp / f"{name}.log").read_text(errors="replace"):
            if processes[name].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"{name} did not start:\n{(tmp / f'{name}.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    try:
        if paid_n:
            localstripe = LocalStripe(
                command=[sys.executable, str(ROOT / "bench" / "fast_localstripe.py")]
            )
        # This process pays (localstripe, DEBUG=true) and presses Stop.
        os.environ.update(common)
        os.environ.update(
            {
                "DEBUG": "true",
                "LOG_LEVEL": "WARNING",  # not one line per Stripe request
                "STRIPE_API_BASE": localstripe.base if localstripe else "http://127.0.0.1:1",
            }
        )
        import django

        django.setup()
        from django.contrib.auth.hashers import make_password
        from django.core.management import call_command
        from django.db import connection, connections

        from checkout import services
        from checkout.models import ChargingSession
        from stations import demo
        from stations.models import (
            ChargingStation,
            Connector,
            Evse,
            Location,
            OcppEvse,
            OcppTransactionEvent,
        )

        say(f"database {db_name}, Redis db {redis_db}; migrating and seeding...")
        call_command("migrate", verbosity=0)
        demo.seed()
        ac = Connector.objects.select_related("evse__location", "tariff").get(
            evse__evse_id="NL*DPY*E0101*1"
        )
        depot = ac.evse.location
        location = Location.objects.create(
            operator=depot.operator,
            name="Bench depot (OCPP direct)",
            address=depot.address,
            postal_code=depot.postal_code,
            city=depot.city,
            country=depot.country,
            csms="ocpp",
        )
        password = secrets.token_urlsafe(24)
        hashed = make_password(password)  # the product's hasher at full cost, once for all rows
        identities = [f"BENCH-{i:05d}" for i in range(1, n + 1)]
        evses = Evse.objects.bulk_create(
            [
                Evse(location=location, evse_id=f"NL*DPY*S{i:05d}*1", uid=f"NL-DPY-S{i:05d}-1")
                for i in range(1, n + 1)
            ]
        )
        connectors = Connector.objects.bulk_create(
            [
                Connector(
                    evse=evse,
                    connector_id="1",
                    standard=ac.standard,
                    power_type=ac.power_type,
                    max_power_kw=ac.max_power_kw,
                    tariff=ac.tariff,
                )
                for evse in evses
            ]
        )
        stations = ChargingStation.objects.bulk_create(
            [
                ChargingStation(identity=identity, location=location, password_hash=hashed)
                for identity in identities
            ]
        )
        OcppEvse.objects.bulk_create(
            [
                OcppEvse(evse=evse, station=station, evse_number=1)
                for evse, station in zip(evses, stations)
            ]
        )
        say(f"created {n} OCPP stations, one 22 kW AC EVSE each, at {location.name!r}")
        # Paid stations spread over the client processes and the ramp.
        paid_idx = set(range(0, n, max(1, n // paid_n))[:paid_n]) if paid_n else set()
        connection.close()

        spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "directpay",
                "worker",
                "--queues",
                "csms",
                "--concurrency",
                "4",
                "--pool",
                "threads",
                "--loglevel",
                "info",
                "--hostname",
                f"bench-csms-{secrets.token_hex(3)}@%h",
            ],
        )
        port, control_port = free_port(), free_port()
        gateway = spawn(
            "gateway",
            [
                sys.executable,
                "manage.py",
                "ocpp_gateway",
                "--port",
                str(port),
                "--control-port",
                str(control_port),
            ],
        )
        wait_log("gateway", "server listening")
        wait_log("worker", " ready.")
        time.sleep(3)
        rss0, cpu0 = status_field(gateway.pid, "VmRSS"), cpu_seconds(gateway.pid)
        say(f"gateway pid {gateway.pid}: idle RSS {rss0 / 1024:.1f} MiB, {cpu0:.2f} s CPU so far")
        say(f"load before: {uptime()}")

        # --- clients: connect (ramped), boot, report status, charge ----------------------------
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        t0 = time.monotonic() + 1
        plan = [[] for _ in range(args.clients)]
        for i, identity in enumerate(identities):
            plan[i % args.clients].append(((identity, password, i in paid_idx), t0 + i / args.ramp))
        for part in plan:
            clients.append(
                ctx.Process(
                    target=client_process,
                    args=(
                        [s for s, _ in part],
                        f"ws://127.0.0.1:{port}/ocpp",
                        args.interval,
                        [at for _, at in part],
                        out,
                        done,
                        not args.no_deflate,
                    ),
                )
            )
        for client in clients:
            client.start()

        seen: dict[str, set] = {k: set() for k in ("booted", "charging", "ended")}
        stops_at: dict[str, float] = {}
        errors: list[str] = []
        stats: list[dict] = []
        lock = threading.Lock()

        def listen():
            while True:
                try:
                    item = out.get(timeout=1)
                except queue.Empty:
                    if done.is_set() and len(stats) == len(clients):
                        return
                    continue
                with lock:
                    if item[0] in seen:
                        seen[item[0]].add(item[1])
                    elif item[0] == "stop":
                        stops_at.setdefault(item[1], item[2])
                    elif item[0] == "error":
                        errors.append(item[1])
                    elif item[0] == "stats":
                        stats.append(item[2])
                if item[0] == "stats" and len(stats) == len(clients):
                    return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()

        def wait_until(condition, what, timeout):
            began = last = time.monotonic()
            while not condition():
                now = time.monotonic()
                if now - began > timeout:
                    say(f"  TIMED OUT waiting for {what}")
                    return False
                if gateway.poll() is not None:
                    say(f"  the gateway exited ({gateway.returncode})")
                    return False
                if now - last >= 10:
                    last = now
                    with lock:
                        counts = {k: len(v) for k, v in seen.items()}
                    say(
                        f"  [{now - began:4.0f} s] booted {counts['booted']}, charging "
                        f"{counts['charging']}, errors {len(errors)}; gateway CPU "
                        f"{cpu_seconds(gateway.pid) - cpu0:.1f} s, RSS "
                        f"{status_field(gateway.pid, 'VmRSS') / 1024:.1f} MiB"
                        + (f"; last error: {errors[-1]}" if errors else "")
                    )
                time.sleep(0.25)
            return True

        say(f"connecting {n} stations at {args.ramp:g}/s from {args.clients} client processes...")
        ramp_began, cpu_ramp0 = time.monotonic(), cpu_seconds(gateway.pid)
        booted = wait_until(
            lambda: len(seen["booted"]) >= n, "every station to boot", n / args.ramp + 300
        )
        ramp_seconds, cpu_ramp = time.monotonic() - ramp_began, cpu_seconds(gateway.pid) - cpu_ramp0
        say(
            f"  {len(seen['booted'])} booted in {ramp_seconds:.0f} s; gateway CPU for the ramp "
            f"{cpu_ramp:.1f} s = {cpu_ramp * 1000 / max(1, len(seen['booted'])):.0f} ms per "
            "connection (its password hash, boot, status, the first events)"
        )

        # --- paid sessions: the product's pay and start path --------------------------------
        sessions: dict[str, int] = {}
        if paid_n and booted:
            import requests

            say(
                f"paying for {paid_n} stations (localstripe hold, session_start on the csms worker)..."
            )
            by_evse = {c.evse_id: c for c in connectors}
            paid_list = [(identities[i], evses[i]) for i in sorted(paid_idx)]
            http = requests.Session()
            for identity, evse in paid_list:
                token = http.post(
                    f"{localstripe.base}/v1/tokens",
                    data={
                        "card[number]": "4242424242424242",
                        "card[exp_month]": "12",
                        "card[exp_year]": "2034",
                        "card[cvc]": "123",
                        "key": "pk_test_localstripe",
                    },
                    timeout=30,
                ).json()["card"]["id"]
                evse.refresh_from_db()
                session = services.session_create(
                    evse=evse, connector=by_evse[evse.pk], hold_amount=5000
                )
                services.payment_authorize(session_id=session.pk, payment_method_id=token)
                sessions[identity] = session.pk
            wait_until(
                lambda: (
                    ChargingSession.objects.filter(
                        pk__in=sessions.values(), status="charging"
                    ).count()
                    == len(sessions)
                ),
                "the paid sessions to charge",
                120 + paid_n,
            )
            say(
                "  charging: "
                + str(
                    ChargingSession.objects.filter(
                        pk__in=sessions.values(), status="charging"
                    ).count()
                )
            )
        wait_until(lambda: len(seen["charging"]) >= n, "every station to charge", 120)

        # --- steady state ---------------------------------------------------------------------
        say(
            f"letting every station's meter cycle run for {args.interval:g} s, then measuring {args.steady:g} s..."
        )
        time.sleep(args.interval)

        def pg_backends():
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                pids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s", (db_name,)
                    )
                ]
            cpu = {}
            for pid in pids:
                try:
                    cpu[pid] = cpu_seconds(pid)
                except OSError:
                    pass
            return cpu

        def pg_xacts():
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                return conn.execute(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                    (db_name,),
                ).fetchone()[0]

        events_before = OcppTransactionEvent.objects.count()
        connection.close()
        x0, pg0, s0, c0 = pg_xacts(), pg_backends(), time.monotonic(), cpu_seconds(gateway.pid)
        time.sleep(args.steady)
        pg1, s1, c1 = pg_backends(), time.monotonic(), cpu_seconds(gateway.pid)
        time.sleep(1.5)  # a busy backend reports its counts within a second
        x1 = pg_xacts()
        rss1 = status_field(gateway.pid, "VmRSS")
        threads = status_field(gateway.pid, "Threads")
        events_window = OcppTransactionEvent.objects.count() - events_before
        steady = s1 - s0
        pg_cpu = sum(pg1[p] - pg0[p] for p in pg1 if p in pg0)
        connected = ChargingStation.objects.filter(connected=True, identity__in=identities).count()

        # --- stops --------------------------------------------------------------------------
        pressed: dict[str, float] = {}
        if args.stops and sessions:
            chosen = random.Random(1).sample(sorted(sessions), args.stops)
            say(
                f"pressing Stop on {len(chosen)} charging sessions, one every {args.stop_gap:g} s..."
            )
            for identity in chosen:
                pressed[identity] = time.monotonic()
                services.session_request_stop(session_id=sessions[identity])
                time.sleep(args.stop_gap)
            wait_until(
                lambda: all(i in stops_at for i in pressed), "every stop to reach its station", 120
            )
            wait_until(
                lambda: (
                    ChargingSession.objects.filter(
                        pk__in=[sessions[i] for i in pressed], status="finished"
                    ).count()
                    == len(pressed)
                ),
                "the stopped sessions' final records",
                60,
            )
        finished = ChargingSession.objects.filter(
            pk__in=[sessions[i] for i in pressed], status="finished"
        ).count()
        connections.close_all()
        load_after = uptime()
        done.set()
        listener.join(60)
        for client in clients:
            client.join(30)

        # --- results ------------------------------------------------------------------------
        answers = [
            (rtt, action) for s in stats for sent, rtt, action in s["answers"] if s0 <= sent <= s1
        ]
        dropped = sum(s["dropped"] for s in stats)
        call_errors = sum(s["call_errors"] for s in stats)
        connect_failures = sum(s["connect_failures"] for s in stats)
        busy = sum(s["busy_refusals"] for s in stats)
        latencies = [stops_at[i] - t for i, t in pressed.items() if i in stops_at]
        cpu = c1 - c0
        say()
        say(
            f"{'stations':>30}: {n} ({paid_n} charging a purchase, {n - paid_n} a local start), "
            f"meter value every {args.interval:g} s"
        )
        say(
            f"{'connected at the end':>30}: {connected}   dropped sockets: {dropped}   "
            f"connect failures: {connect_failures}   CALLERRORs: {call_errors}"
        )
        say(
            f"{'503 Retry-After (ramp)':>30}: {busy} logins refused at once while "
            "enough were waiting for their password check"
        )
        say(
            f"{'TransactionEvents recorded':>30}: {events_window / steady:.1f} /s in the window "
            f"(expected {n / args.interval:.1f} /s)"
        )
        say(
            f"{'gateway CPU (steady)':>30}: {cpu:.1f} s in {steady:.0f} s = {cpu / steady:.1%} of a core"
            f" = {cpu * 60 / steady * 1000 / n:.1f} ms per connection per minute"
        )
        say(
            f"{'PostgreSQL transactions':>30}: {(x1 - x0) / max(1, events_window):.2f} per "
            f"TransactionEvent ({(x1 - x0) / steady:.0f} /s, every process of this database)"
        )
        say(
            f"{'PostgreSQL backends CPU':>30}: {pg_cpu:.1f} s = {pg_cpu / steady:.1%} of a core "
            f"({len(pg1)} backends of this database)"
        )
        say(
            f"{'gateway RSS':>30}: {rss0 / 1024:.1f} MiB idle, {rss1 / 1024:.1f} MiB with {n} "
            f"connections = {(rss1 - rss0) / n:.1f} KiB per connection ({threads} threads)"
        )
        say(
            f"{'gateway CPU per login (ramp)':>30}: {cpu_ramp * 1000 / max(1, len(seen['booted'])):.0f} ms "
            f"({args.ramp:g} connections/s)"
        )
        ramp_answers = [
            rtt
            for s in stats
            for sent, rtt, _ in s["answers"]
            if ramp_began <= sent <= ramp_began + ramp_seconds
        ]
        say(f"{'message round trip (ramp)':>30}: {spread(ramp_answers)}")
        by_action = Counter(a for _, a in answers)
        say(f"{'message round trip (steady)':>30}: {spread([r for r, _ in answers])}")
        for action in sorted(by_action):
            say(f"{'  ' + action:>30}: {spread([r for r, a in answers if a == action])}")
        say(f"{'Stop -> RequestStopTransaction':>30}: {spread(latencies)}")
        say(
            f"{'':>30}  (press -> session_request_stop -> csms worker -> control line -> gateway -> socket)"
        )
        say(f"{'stopped sessions finished':>30}: {finished} of {len(pressed)}")
        say(f"{'load after':>30}: {load_after}")
        if errors:
            say(f"errors ({len(errors)}), first ones:")
            for line in errors[:10]:
                say(f"  {line}")
        failed = len(seen["booted"]) < n or len(latencies) < len(pressed) or dropped > 0
        if failed:
            say("FAILED: not every station booted, a stop never arrived, or sockets were dropped")
            say((tmp / "gateway.log").read_text(errors="replace")[-3000:])
    finally:
        done.set()
        for client in clients:
            client.join(10)
            if client.is_alive():
                client.kill()
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        if localstripe is not None:
            localstripe.stop()
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
            )
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
