"""Settlement throughput: N sessions through pay -> charge -> finish -> capture -> receipt, for real.

Starts the whole product the way tests/stack.py does (its own PostgreSQL database and Redis db,
localstripe, gunicorn, a Celery worker and beat, the simulated CSMS at high speed), clones the demo
AC EVSE N times, and lets `--concurrency` driver threads pay (card token from localstripe,
session_create, payment_authorize). Once no session is still starting it presses Stop on each
one charging, then waits for the worker to capture every payment and issue every receipt. Prints
sessions/second from the first pay to the last receipt, session end -> capture latencies, and the
outcome of every session.

Two ways to load it. The default is a burst: every session paid as fast as the drivers can, then,
once all charge, every one stopped at once; end -> capture then measures how long that queue takes
to drain. `--rate R` paces arrivals instead: driver i pays at i/R seconds and presses Stop
`--charge-seconds` later, so sessions start and end at a steady R per second, as a network's day
does; end -> capture is then the latency at that rate, and its first and last thirds show whether
a queue builds up (the pipeline keeps up with R only if they stay alike).

Run: .venv/bin/python bench/throughput.py [--sessions 1000] [--concurrency 8] [--stand-in stock]
                                          [--rate 25 --charge-seconds 8]
     (needs PostgreSQL and Redis on 127.0.0.1; prints, asserts no time; exits 1 if any session did
     not end captured with exactly one receipt, or if a payment captured more than it held)

At the default speed-up (300) a 22 kW charge costs about 1.10 EUR a second, so the default 20.00
hold's spending cap stops a session in about 17 s unless Stop was pressed first; `--hold 5000`
lets the battery fill below the cap, so every session is stopped by the driver.

The Stripe stand-in: stock localstripe pickles its whole store to disk on every write, so a write
gets slower as the run goes on (about 5 ms per capture with 10 intents in its store, 176 ms with
1,300) and the stand-in, not the app, sets the pace. By default the bench runs it through
bench/fast_localstripe.py (the same server, no disk writes), so what it measures is our code;
`--stand-in stock` runs it as shipped.

Besides the rates it prints what one session costs us: CPU seconds of each of our processes (web,
each worker, beat; /proc utime+stime of each process tree, read before paying and after the last
receipt); PostgreSQL's CPU for each of them (each stack process names its connections, and the
backends serving a name are read from /proc the same way); and PostgreSQL transactions and new
connections (pg_stat_database of the bench's database; the background rate with no session
running, measured first, is subtracted, and so are the bench's own progress queries). The machine
may be shared: `uptime` is printed before and after, and our CPU is also given per CPU second of
localstripe, whose work per session is the same in every run: on a machine whose speed drifts
(a third between runs here), that ratio compares runs where milliseconds do not.

The stack runs with DEBUG (the stand-ins need it) but without DEBUG's record of every SQL
statement (DB_LOG_QUERIES=false), which production does not pay; DB_LOG_QUERIES=true in the
bench's environment measures with it.
"""

import argparse
import heapq
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack import WORKERS, Stack

DEMO_EVSE = "NL*DPY*E0001*1"
BEFORE_CHARGING = ("created", "authorizing", "authorized", "starting")
UNSETTLED_PAYMENTS = ("pending", "requires_action", "authorized")
PROGRESS_EVERY = 10.0

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--sessions", type=int, default=1000, help="sessions to push through (default 1000)"
)
parser.add_argument(
    "--concurrency", type=int, default=8, help="driver threads paying at once (default 8)"
)
parser.add_argument(
    "--hold", type=int, default=2000, help="amount each driver holds, cents (default 2000)"
)
parser.add_argument("--speedup", type=float, default=300, help="SIMULATOR_SPEEDUP (default 300)")
parser.add_argument(
    "--money-threads",
    type=int,
    default=2,
    help="threads of the money worker (default 2, as Procfile.dev and the test stack)",
)
parser.add_argument(
    "--stand-in",
    choices=("fast", "stock"),
    default="fast",
    help="localstripe without its per-write pickle (fast, default) or as shipped (stock)",
)
parser.add_argument(
    "--rate",
    type=float,
    default=0,
    help="paced arrivals: drivers pay at this many sessions/s, each pressing Stop --charge-seconds "
    "after paying (default 0: a burst, every session paid, then every one stopped)",
)
parser.add_argument(
    "--charge-seconds",
    type=float,
    default=8,
    help="paced mode: how long after paying each driver presses Stop (default 8)",
)
parser.add_argument(
    "--timeout",
    type=float,
    default=None,
    help="seconds to wait for everything to settle (default 300 + 2 per session)",
)
args = parser.parse_args()
N = args.sessions
TIMEOUT = args.timeout if args.timeout is not None else 300 + 2 * N


def say(text=""):
    print(text, flush=True)


def seconds(delta) -> float:
    return delta.total_seconds()


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))]

    return (
        f"p50 {statistics.median(values):7.2f} s   p90 {pct(0.9):7.2f} s   p99 {pct(0.99):7.2f} s"
        f"   max {values[-1]:7.2f} s   (n={len(values)})"
    )


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """utime + stime of a process (all its threads) and, with `tree`, of its living descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
            if tree:
                for task in os.listdir(f"/proc/{current}/task"):
                    with open(f"/proc/{current}/task/{task}/children") as children:
                        todo.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # it exited meanwhile
    return total / TICKS


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# Every driver pays from 127.0.0.1 with the same test card: the Pay abuse limits would stop them.
os.environ["PAY_LIMITS_ENABLED"] = "false"
# The stand-ins need DEBUG; its record of every SQL statement (7-15 % of each process's CPU under
# server-side binding) is not something production pays, so it is off here unless asked for.
os.environ.setdefault("DB_LOG_QUERIES", "false")
stack = Stack(
    speedup=args.speedup,
    tick_seconds=1,
    start_timeout_seconds=120,
    worker_concurrency=args.money_threads,
    localstripe_command=(
        [sys.executable, str(ROOT / "bench" / "fast_localstripe.py")]
        if args.stand_in == "fast"
        else None
    ),
)
say(
    f"starting the stack (PostgreSQL {stack.db_name}, Redis, localstripe, gunicorn, worker, beat)..."
)
started = time.monotonic()
failed = True
try:
    stack.start()
    say(f"stack up in {time.monotonic() - started:.0f} s")

    # This process talks to the stack's database and broker: tasks it queues reach the real worker.
    os.environ.update(stack.env)
    os.environ["DATABASE_URL"] = stack.database_url("bench (pay path)")
    os.environ["LOG_LEVEL"] = "WARNING"  # not one line per Stripe request
    import django

    django.setup()

    from django.conf import settings
    from django.db import connections
    from django.db.models import Count

    from checkout import services
    from checkout.models import ChargingSession, Payment, PaymentEvent, Receipt
    from stations.models import Connector, Evse

    assert not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith(
        "redis://"
    ), "the bench must queue tasks to the real worker"
    say(f"localstripe: {args.stand_in}")
    for name in WORKERS:
        worker_args = list(stack.processes[name].args)

        def flag(option: str, args=worker_args) -> str:
            return args[args.index(option) + 1] if option in args else "default"

        say(
            f"{name}: --queues {flag('--queues')} --pool {flag('--pool')} --concurrency {flag('--concurrency')}"
        )
    say(
        f"beat: simulator tick every {settings.SIMULATOR_TICK_SECONDS:g} s, "
        f"speedup {settings.SIMULATOR_SPEEDUP:g}"
    )
    say(
        f"sessions: {N}   driver threads: {args.concurrency}   hold: {args.hold / 100:.2f}   "
        f"timeout: {TIMEOUT:.0f} s"
    )

    # --- N EVSEs like the demo AC one (one active session per EVSE) -----------------------------
    def clone(obj, **overrides):
        values = {
            f.attname: getattr(obj, f.attname)
            for f in obj._meta.concrete_fields
            if not f.primary_key
        }
        values.update(overrides)
        return type(obj)(**values)

    demo_evse = Evse.objects.select_related("location__operator").get(evse_id=DEMO_EVSE)
    demo_connector = demo_evse.connectors.select_related("tariff").get()
    evses = Evse.objects.bulk_create(
        [
            clone(
                demo_evse,
                evse_id=f"NL*DPY*B{i:05d}*1",
                uid=f"NL-DPY-B{i:05d}-1",
                status=Evse.Status.AVAILABLE,
                sim_behaviour=Evse.SimBehaviour.ACCEPT,
            )
            for i in range(1, N + 1)
        ]
    )
    connectors = Connector.objects.bulk_create(
        [clone(demo_connector, evse_id=evse.pk) for evse in evses]
    )
    for evse, connector in zip(evses, connectors):
        evse.location = demo_evse.location  # cached: session_create reads the operator
        connector.evse, connector.tariff = evse, demo_connector.tariff
    say(
        f"created {len(evses)} EVSEs like {DEMO_EVSE} ({demo_connector.power_type}, "
        f"{demo_connector.max_power_kw} kW, tariff {demo_connector.tariff.name!r})"
    )

    # PostgreSQL CPU of the bench threads' own connections, read as each thread closes its one.
    pg_threads, pg_threads_lock = [0.0], threading.Lock()

    def close_thread_connection() -> None:
        connection = connections["default"]
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with pg_threads_lock:
                pg_threads[0] += cpu_seconds(pid, tree=False)
        connections.close_all()

    def drive(items, work, threads: int) -> list:
        """Run work(item, http) for every item on `threads` threads; return (item, result-or-exception)."""
        todo, done, lock = queue.SimpleQueue(), [], threading.Lock()
        for item in items:
            todo.put(item)

        def driver():
            http = requests.Session()
            try:
                while True:
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        result = work(item, http)
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        result = exc
                    with lock:
                        done.append((item, result))
            finally:
                http.close()
                close_thread_connection()

        pool = [threading.Thread(target=driver, name=f"driver-{i}") for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return done

    # CPU the bench process spends on what is not the product's: the card token (the browser's
    # Stripe.js does that) and the bench's own polling. Each thread's own CPU time, summed.
    not_ours, not_ours_lock = [0.0], threading.Lock()

    def bench_work(work):
        began = time.thread_time()
        try:
            return work()
        finally:
            with not_ours_lock:
                not_ours[0] += time.thread_time() - began

    def pay(pair, http):
        evse, connector = pair
        began = time.monotonic()
        response = bench_work(
            lambda: http.post(
                f"{stack.localstripe.base}/v1/tokens",
                data={
                    "card[number]": "4242424242424242",
                    "card[exp_month]": "12",
                    "card[exp_year]": "2034",
                    "card[cvc]": "123",
                    "key": "pk_test_localstripe",
                },
                timeout=30,
            )
        )
        response.raise_for_status()
        card_id = response.json()["card"]["id"]
        session = services.session_create(evse=evse, connector=connector, hold_amount=args.hold)
        payment = services.payment_authorize(session_id=session.pk, payment_method_id=card_id)
        return session.pk, payment.status, time.monotonic() - began

    polls = [0]  # the bench's own progress queries, not the product's work

    def status_line(ids) -> tuple[Counter, Counter, int]:
        polls[0] += 3
        sessions = Counter(
            dict(
                ChargingSession.objects.filter(pk__in=ids)
                .values_list("status")
                .annotate(n=Count("pk"))
                .values_list("status", "n")
            )
        )
        payments = Counter(
            dict(
                Payment.objects.filter(session_id__in=ids)
                .values_list("status")
                .annotate(n=Count("pk"))
                .values_list("status", "n")
            )
        )
        receipts = Receipt.objects.filter(payment__session_id__in=ids).count()
        return sessions, payments, receipts

    def show(counter: Counter) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(counter.items())) or "none"

    def wait(ids, done, what: str, deadline: float) -> bool:
        """Poll until done(sessions, payments, receipts); print progress every PROGRESS_EVERY seconds."""
        began = last = time.monotonic()
        while True:
            counts = bench_work(lambda: status_line(ids))
            if done(*counts):
                return True
            now = time.monotonic()
            if now > deadline:
                say(f"  TIMED OUT waiting for {what}")
                return False
            dead = {
                name: p.returncode for name, p in stack.processes.items() if p.poll() is not None
            }
            if dead:
                say(f"  stack processes exited: {dead}")
                return False
            if now - last >= PROGRESS_EVERY:
                last = now
                say(
                    f"  [{now - began:5.0f} s] sessions: {show(counts[0])} | payments: {show(counts[1])}"
                    f" | receipts {counts[2]}"
                )
            time.sleep(0.5)

    # --- what a session costs: CPU per process, PostgreSQL transactions and connections ---------
    def pg_counts() -> tuple[int, int]:
        row = stack.one(
            "SELECT xact_commit + xact_rollback AS xacts, sessions FROM pg_stat_database"
            " WHERE datname = %s",
            (stack.db_name,),
        )
        return row["xacts"], row["sessions"]

    def pg_backends() -> dict[int, tuple[str, float]]:
        """Each PostgreSQL backend serving the stack's database: the process it serves (the
        stack names its connections) and its CPU seconds so far."""
        rows = stack.query(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (stack.db_name,),
        )
        return {
            row["pid"]: (row["application_name"], cpu_seconds(row["pid"], tree=False))
            for row in rows
        }

    def pg_cpu(before: dict, after: dict) -> tuple[Counter, int]:
        """CPU seconds PostgreSQL spent for each process between two pg_backends() readings,
        and how many backends closed in between (their CPU is lost to this count)."""
        used = Counter()
        for pid, (application, seconds) in after.items():
            used[application] += seconds - (before[pid][1] if pid in before else 0.0)
        return used, len(before.keys() - after.keys())

    def log_offsets() -> dict[str, int]:
        return {name: (stack.log_dir / f"{name}.log").stat().st_size for name in WORKERS}

    def tasks_since(offsets: dict[str, int]) -> Counter:
        """Tasks each worker received since `offsets` (Celery logs one line per task at INFO)."""
        received = Counter()
        for name, offset in offsets.items():
            with open(stack.log_dir / f"{name}.log", "rb") as log:
                log.seek(offset)
                for line in log.read().decode(errors="replace").splitlines():
                    match = re.search(r"Task (\S+)\[[0-9a-f-]+\] received", line)
                    if match:
                        received[(name, match.group(1))] += 1
        return received

    def cpu_now() -> dict[str, float]:
        cpu = {name: cpu_seconds(p.pid) for name, p in stack.processes.items()}
        cpu["localstripe"] = cpu_seconds(stack.localstripe.process.pid)
        cpu["bench (pay path)"] = cpu_seconds(os.getpid(), tree=False)
        return cpu

    # A backend reports its counts at most every second, an idle one within 10 s: wait them out.
    FLUSH = 11
    say(f"measuring the background (beat, sweeps, simulator ticks) for {2 * FLUSH} s...")
    time.sleep(FLUSH)
    pg_idle_start, idle_started, cpu_idle = pg_counts(), time.monotonic(), cpu_now()
    time.sleep(FLUSH)
    pg_before, cpu_idle_end = pg_counts(), cpu_now()
    idle_xacts_per_s = (pg_before[0] - pg_idle_start[0] - 1) / (time.monotonic() - idle_started)
    idle_sessions_per_s = (pg_before[1] - pg_idle_start[1] - 1) / (time.monotonic() - idle_started)
    say(
        f"  background: {idle_xacts_per_s:.1f} transactions/s, "
        f"{idle_sessions_per_s:.2f} new connections/s"
    )
    idle_seconds = time.monotonic() - idle_started
    say(
        "  idle CPU, ms/s: "
        + ", ".join(
            f"{name} {(cpu_idle_end[name] - cpu_idle[name]) * 1000 / idle_seconds:.0f}"
            for name in cpu_idle
            if name != "bench (pay path)"
        )
    )
    say(f"  load before: {uptime()}")
    cpu_before, cpu_started, logs_before = cpu_now(), time.monotonic(), log_offsets()
    pg_cpu_before = pg_backends()

    deadline = time.monotonic() + TIMEOUT

    # --- paced: sessions arrive at --rate and end --charge-seconds later -----------------------
    def paced() -> tuple[list, list]:
        """Driver i pays at i / rate and presses Stop charge_seconds after that: sessions start and
        end at a steady rate, so end -> capture is the latency at that rate, not a burst's queue."""
        t0, stops, stop_lock = time.monotonic(), [], threading.Lock()
        items = [(i, pair) for i, pair in enumerate(zip(evses, connectors))]

        def pay_on_time(item, http):
            i, pair = item
            due = t0 + i / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            result = pay(pair, http)
            with stop_lock:
                heapq.heappush(stops, (due + args.charge_seconds, result[0]))
            return result

        stop_results, paying = [], [True]

        def stopper():
            while paying[0] or stops:
                with stop_lock:
                    item = stops[0] if stops else None
                    if item and item[0] <= time.monotonic():
                        heapq.heappop(stops)
                    else:
                        item = None
                if item is None:
                    time.sleep(0.02)
                    continue
                due, pk = item
                status = bench_work(
                    lambda pk=pk: ChargingSession.objects.filter(pk=pk).values_list(
                        "status", flat=True
                    )[0]
                )
                if status in BEFORE_CHARGING and time.monotonic() < due + 60:
                    with stop_lock:  # not charging yet: press again a moment later
                        heapq.heappush(stops, (time.monotonic() + 0.2, pk))
                elif status == "charging":
                    try:
                        services.session_request_stop(session_id=pk)
                        stop_results.append((pk, None))
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        stop_results.append((pk, exc))
            close_thread_connection()

        pressing = threading.Thread(target=stopper, name="stopper")
        pressing.start()
        # Enough drivers that a slow answer does not hold the next arrival back.
        paid = drive(items, pay_on_time, max(args.concurrency, int(args.rate) + 4))
        paying[0] = False
        pressing.join()
        return [((item[1]), result) for item, result in paid], stop_results

    # --- pay (paced: and stop) -----------------------------------------------------------------
    if args.rate:
        say(
            f"paced: {N} drivers paying at {args.rate:g} sessions/s, "
            f"each pressing Stop {args.charge_seconds:g} s after paying..."
        )
    else:
        say(f"paying: {N} drivers, {args.concurrency} at a time...")
    first_pay = datetime.now(UTC)
    t_pay = time.monotonic()
    if args.rate:
        paid, stopped = paced()
    else:
        paid = drive(list(zip(evses, connectors)), pay, args.concurrency)
    pay_seconds = time.monotonic() - t_pay
    driver_errors = [
        (pair[0].evse_id, result) for pair, result in paid if isinstance(result, Exception)
    ]
    ok = [result for _, result in paid if not isinstance(result, Exception)]
    ids = [session_id for session_id, _, _ in ok]
    if args.rate:
        stop_errors = [(pk, result) for pk, result in stopped if result is not None]
        say(
            f"  {len(ok)} paid and {len(stopped)} stopped by +{pay_seconds:.1f} s "
            f"(arrivals {len(ok) / max(N / args.rate, 0.001):.1f}/s); driver errors: "
            f"{len(driver_errors)}, stop errors: {len(stop_errors)}"
        )
        for pk, exc in stop_errors[:5]:
            say(f"    session {pk}: {exc!r}")
    else:
        say(
            f"  {len(ok)} paid in {pay_seconds:.1f} s ({len(ok) / pay_seconds:.1f} payments/s); "
            f"payment status: {show(Counter(status for _, status, _ in ok))}; "
            f"driver errors: {len(driver_errors)}"
        )
    say(f"  driver time (token + create + authorize): {spread([t for _, _, t in ok])}")
    for what, exc in driver_errors[:5]:
        say(f"    {what}: {exc!r}")

    if not args.rate:
        # --- charge, then stop --------------------------------------------------------------------
        say(
            "waiting for every session to be charging (worker starts it, the simulator tick reports it)..."
        )
        wait(
            ids,
            lambda s, p, r: not any(s[name] for name in BEFORE_CHARGING),
            "sessions to charge",
            deadline,
        )
        all_charging_seconds = time.monotonic() - t_pay
        charging = list(
            ChargingSession.objects.filter(pk__in=ids, status="charging").values_list(
                "pk", flat=True
            )
        )
        say(
            f"  at +{all_charging_seconds:.1f} s: {len(charging)} charging, "
            f"{len(ids) - len(charging)} already past it (spending cap) or failed; pressing Stop on the charging"
        )
        stopped = drive(
            charging,
            lambda pk, http: services.session_request_stop(session_id=pk),
            args.concurrency,
        )
        stop_errors = [(pk, result) for pk, result in stopped if isinstance(result, Exception)]
        say(f"  stops requested by +{time.monotonic() - t_pay:.1f} s; errors: {len(stop_errors)}")
        for pk, exc in stop_errors[:5]:
            say(f"    session {pk}: {exc!r}")

    # --- settle ---------------------------------------------------------------------------------
    say("waiting for every payment to be captured (or released) and every receipt issued...")

    def settled(s, p, r):
        return (
            not any(s[name] for name in (*BEFORE_CHARGING, "charging", "stopping"))
            and not any(p[name] for name in UNSETTLED_PAYMENTS)
            and r >= p["captured"]
        )

    if wait(ids, settled, "settlement", deadline):
        say(f"  settled by +{time.monotonic() - t_pay:.1f} s")
    cpu_after, cpu_elapsed = cpu_now(), time.monotonic() - cpu_started
    pg_cpu_used, pg_closed = pg_cpu(pg_cpu_before, pg_backends())
    pg_cpu_used["bench (pay path)"] += pg_threads[0]
    received = tasks_since(logs_before)
    load_after = uptime()
    time.sleep(FLUSH)
    pg_after = pg_counts()
    pg_elapsed = time.monotonic() - cpu_started

    # --- results --------------------------------------------------------------------------------
    sessions = list(
        ChargingSession.objects.filter(pk__in=ids).select_related("payment", "payment__receipt")
    )
    captures: dict[int, list] = {}
    for session_id, at in PaymentEvent.objects.filter(
        session_id__in=ids, kind="payment_status", to_status="captured"
    ).values_list("session_id", "created_at"):
        captures.setdefault(session_id, []).append(at)
    # When we had the final record (the session finished): from there on the wait is ours alone.
    finished_at = dict(
        PaymentEvent.objects.filter(
            session_id__in=ids, kind="session_status", to_status="finished"
        ).values_list("session_id", "created_at")
    )
    stop_messages = PaymentEvent.objects.filter(session_id__in=ids, kind="stop_requested")
    stop_reasons = Counter(
        text.split(":")[0] for text in stop_messages.values_list("message", flat=True)
    )

    good, bad, problems, over_hold = [], Counter(), [], 0
    for s in sessions:
        payment = s.payment
        receipt = getattr(payment, "receipt", None)
        if payment.amount_captured > payment.amount_held:
            over_hold += 1
            problems.append(
                f"session {s.pk}: captured {payment.amount_captured} > held {payment.amount_held}"
            )
        if len(captures.get(s.pk, [])) > 1:
            problems.append(f"session {s.pk}: {len(captures[s.pk])} capture events")
        if receipt is not None and receipt.total_incl_vat != payment.amount_captured:
            problems.append(
                f"session {s.pk}: receipt {receipt.number} says {receipt.total_incl_vat}, "
                f"captured {payment.amount_captured}"
            )
        if s.status == "finished" and payment.status == "captured" and receipt is not None:
            good.append(s)
        else:
            key = (
                f"session {s.status}, payment {payment.status}, {'a' if receipt else 'no'} receipt"
            )
            bad[key] += 1
            if bad[key] <= 3:
                why = s.failure_reason or payment.decline_message or "-"
                problems.append(f"session {s.pk} ({key}): {why}")
    if driver_errors:
        bad["driver could not pay (error above)"] = len(driver_errors)

    to_capture = [
        seconds(min(captures[s.pk]) - s.ended_at) for s in good if s.pk in captures and s.ended_at
    ]
    # Session end is when the charger stopped (the simulator's time of the stop command); before it
    # the stop waits on the csms queue, after it for the simulator's next tick to send the record.
    stop_to_end = [
        seconds(s.ended_at - s.stop_requested_at)
        for s in good
        if s.ended_at and s.stop_requested_at and s.ended_at >= s.stop_requested_at
    ]
    end_to_record = [
        seconds(finished_at[s.pk] - s.ended_at) for s in good if s.pk in finished_at and s.ended_at
    ]
    record_to_capture = [
        seconds(min(captures[s.pk]) - finished_at[s.pk])
        for s in good
        if s.pk in captures and s.pk in finished_at
    ]
    to_receipt = [
        seconds(s.payment.receipt.issued_at - min(captures[s.pk])) for s in good if s.pk in captures
    ]
    last_receipt = max((s.payment.receipt.issued_at for s in good), default=None)
    held = sum(s.payment.amount_held for s in sessions)
    captured = sum(s.payment.amount_captured for s in sessions)
    shortfall = sum(s.payment.shortfall for s in sessions)

    say()
    say(f"{'sessions':>26}: {N}")
    say(f"{'captured with a receipt':>26}: {len(good)}")
    say(
        f"{'anything else':>26}: {N - len(good)}"
        + (f"  ({'; '.join(f'{k}: {n}' for k, n in bad.items())})" if bad else "")
    )
    say(f"{'stopped by':>26}: {show(stop_reasons)}")
    if last_receipt is not None:
        elapsed = seconds(last_receipt - first_pay)
        say(f"{'first pay -> last receipt':>26}: {elapsed:.1f} s")
        say(
            f"{'throughput':>26}: {len(good) / elapsed:.2f} sessions/s end to end"
            + (f" (paced: arrivals at {args.rate:g}/s bound it)" if args.rate else "")
        )
    say(f"{'session end -> capture':>26}: {spread(to_capture)}")
    if args.rate and len(to_capture) >= 30:
        # In arrival order: a queue that grows shows as a later third slower than the first.
        ordered = [
            seconds(min(captures[s.pk]) - s.ended_at)
            for s in sorted(good, key=lambda s: s.pk)
            if s.pk in captures and s.ended_at
        ]
        third = len(ordered) // 3
        say(f"{'  first third':>26}: {spread(ordered[:third])}")
        say(f"{'  last third':>26}: {spread(ordered[-third:])}")
    say(f"{'  of which Stop -> end':>26}: {spread(stop_to_end)}   (csms queue)")
    say(f"{'  end -> final record':>26}: {spread(end_to_record)}   (simulator ticks)")
    say(f"{'final record -> capture':>26}: {spread(record_to_capture)}   (money queue)")
    first_capture_at = [min(captures[s.pk]) for s in good if s.pk in captures]
    if finished_at and first_capture_at:
        window = seconds(max(first_capture_at) - min(finished_at.values()))
        say(
            f"{'settlement rate':>26}: {len(first_capture_at) / max(window, 0.001):.1f} captures/s "
            f"(first final record to last capture, {window:.1f} s)"
        )
    say(f"{'capture -> receipt':>26}: {spread(to_receipt)}")
    say(
        f"{'captured / held':>26}: {captured / 100:.2f} / {held / 100:.2f} EUR "
        f"({captured / max(held, 1):.0%}); cost above the holds, not charged: {shortfall / 100:.2f} EUR"
    )
    say(f"{'workers':>26}: one per queue ({', '.join(WORKERS)}), thread pools")

    say()
    n = max(len(ok), 1)
    say(f"what one session cost ({n} paid, {cpu_elapsed:.1f} s from first pay to settled):")
    ours = 0.0
    for name in cpu_after:
        used = cpu_after[name] - cpu_before.get(name, 0.0)
        # The simulator stands in for the chargers and localstripe for Stripe: not our CPU
        # (the simulator's process also runs our session_apply_update for each report it sends).
        mine = name not in ("simulator", "localstripe")
        ours += used if mine else 0.0
        say(
            f"{'CPU ' + name:>26}: {used * 1000 / n:7.1f} ms/session"
            + ("" if mine else "   (stand-in, not counted as ours)")
        )
    say(
        f"{'  of which not ours':>26}: {not_ours[0] * 1000 / n:7.1f} ms/session   "
        "(bench process: the browser's card token and the bench's polling, not counted)"
    )
    ours -= not_ours[0]
    say(f"{'CPU ours':>26}: {ours * 1000 / n:7.1f} ms/session")
    # PostgreSQL's side of the same work: the CPU of the backends each process talks to.
    pg_ours = 0.0
    for name in cpu_after:
        if name == "localstripe":
            continue
        mine = name != "simulator"
        pg_ours += pg_cpu_used[name] if mine else 0.0
        say(
            f"{'PostgreSQL for ' + name:>26}: {pg_cpu_used[name] * 1000 / n:7.1f} ms/session"
            + ("" if mine else "   (for the stand-in, not counted as ours)")
        )
    if pg_closed:
        say(f"{'':>28}({pg_closed} backends closed during the run: their CPU is not counted)")
    say(f"{'CPU ours with PostgreSQL':>26}: {(ours + pg_ours) * 1000 / n:7.1f} ms/session")
    # localstripe answers the same calls for every session: its CPU is a yardstick of the
    # machine's speed, which drifts by a third between runs on a shared machine.
    stripe_cpu = cpu_after["localstripe"] - cpu_before.get("localstripe", 0.0)
    say(
        f"{'  per localstripe CPU':>26}: {(ours + pg_ours) / max(stripe_cpu, 1e-9):7.2f}"
        "   (compares runs when the machine's speed drifts)"
    )
    xacts = pg_after[0] - pg_before[0] - polls[0] - 1 - idle_xacts_per_s * pg_elapsed
    conns = pg_after[1] - pg_before[1] - 1 - idle_sessions_per_s * pg_elapsed
    say(
        f"{'PostgreSQL transactions':>26}: {xacts / n:7.1f} /session   "
        f"(raw {pg_after[0] - pg_before[0]}, less {polls[0]} bench polls and "
        f"{idle_xacts_per_s * pg_elapsed:.0f} background)"
    )
    say(
        f"{'PostgreSQL connections':>26}: {conns / n:7.2f} /session   "
        f"(raw {pg_after[1] - pg_before[1]}, less {idle_sessions_per_s * pg_elapsed:.0f} background)"
    )
    say(f"{'load after':>26}: {load_after}")
    say(f"{'tasks':>26}: {sum(received.values()) / n:7.2f} /session, by worker and task:")
    for (worker, task), count in sorted(received.items()):
        say(f"{'':>28}{count / n:6.2f}  {worker:<10} {task}")

    if len(good) != N or problems:
        say()
        if len(good) != N:
            say(
                f"FAILED: {N - len(good)} of {N} sessions did not end captured with exactly one receipt"
            )
        if over_hold:
            say(f"FAILED: {over_hold} payments captured more than they held")
        if problems:
            say("problems:")
        for problem in problems[:20]:
            say(f"  {problem}")
        if len(problems) > 20:
            say(f"  ... and {len(problems) - 20} more")
        say()
        say(stack.tails(lines=25))
    else:
        failed = False
        say()
        say(f"OK: all {N} sessions captured (never above the hold) with exactly one receipt each")
    connections.close_all()
finally:
    stack.stop()
    stack.cleanup_files()
sys.exit(1 if failed else 0)
