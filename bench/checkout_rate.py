"""Checkout page rate: requests/s of `/q/<code>` against a bare view (`/healthz`), and its queries.

Runs gunicorn as production does (DEBUG=false with made-up but real-looking secrets, set in the
server's environment only; PostgreSQL in a throwaway database; the Redis cache), seeds the demo,
then loads the two paths in interleaved rounds (A, B, B, A, ...) from `--clients` client processes
on loopback. Prints each round's rates, the median ratio checkout/healthz (target >= 0.15), and
the SQL of one checkout GET in process with the same settings (target <= 2 queries, no write).
After the run the scans held in Redis are flushed into the database, as beat does.

Run: .venv/bin/python bench/checkout_rate.py [--rounds 6] [--seconds 3] [--clients 2] [--workers 2]
     (needs PostgreSQL and Redis on 127.0.0.1; loopback only; prints, asserts no time)

The machine's cores are shared with the load generator and whatever else runs: read the ratio,
which both paths share the noise of, rather than the absolute rates, and note `uptime`. On a busy
machine a checkout suffers more than the bare view (it waits for PostgreSQL and Redis to be
scheduled); `--clients 1 --workers 1` measures one request at a time, closest to its cost.
"""

import argparse
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
import redis
from psycopg import sql

from tests.peers import free_port
from tests.production_env import production

TARGET_RATIO, TARGET_QUERIES = 0.15, 2
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--rounds", type=int, default=6, help="rounds per path (default 6)")
parser.add_argument("--seconds", type=float, default=3.0, help="length of a round (default 3)")
parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
args = parser.parse_args()


def say(text=""):
    print(text, flush=True)


def pick_redis_db() -> int:
    """An empty Redis database 1..15 (other stacks and benches may be running)."""
    for db in range(15, 0, -1):
        if redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5).dbsize() == 0:
            return db
    raise SystemExit("no empty Redis database (1..15) to bench with")


def hammer(port: int, path: str, seconds: float, counts, index: int) -> None:
    """One client: GET `path` over and over (a new connection each time, as the sync workers
    close it), for `seconds`; count the 200s (anything else is counted as an error)."""
    ok = errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if get(port, path).startswith(b"HTTP/1.1 200"):
            ok += 1
        else:
            errors += 1
    counts[2 * index], counts[2 * index + 1] = ok, errors


def get(port: int, path: str) -> bytes:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until_up(port: int, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}")
        try:
            if get(port, "/healthz").startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("gunicorn did not answer /healthz with 200")
        time.sleep(0.2)


def rate(port: int, path: str) -> float:
    counts = multiprocessing.Array("l", 2 * args.clients)
    clients = [
        multiprocessing.Process(target=hammer, args=(port, path, args.seconds, counts, i))
        for i in range(args.clients)
    ]
    began = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    elapsed = time.monotonic() - began
    ok, errors = sum(counts[0::2]), sum(counts[1::2])
    if errors:
        raise SystemExit(f"{path}: {errors} answers were not 200 (ok: {ok})")
    return ok / elapsed


db_name = f"directpay_bench_rate_{secrets.token_hex(4)}"
redis_db = pick_redis_db()
env = {
    **os.environ,
    # Production: what directpay/checks.py demands, made up here (nothing reaches Stripe or SMTP).
    **production(
        ALLOWED_HOSTS="127.0.0.1",
        EMAIL_URL="smtp+tls://receipts:password@127.0.0.1:1",
        CACHE_URL=f"redis://127.0.0.1:6379/{redis_db}",
    ),
    "DJANGO_SETTINGS_MODULE": "directpay.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
    "LOG_LEVEL": "WARNING",
    "VAR_DIR": tempfile.mkdtemp(prefix="bench-rate-"),
}
with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
server = None
try:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from stations import demo, qr, scans
    from stations.models import ScanMark

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # the manifest DEBUG=false serves
    evse = demo.seed()[1]
    checkout = f"/q/{qr.code_for(evse)}"
    connection.close()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "directpay.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=env,
    )
    wait_until_up(port, server)
    say(
        f"gunicorn: {args.workers} sync workers, DEBUG=false, PostgreSQL {db_name}, Redis cache db "
        f"{redis_db}; {args.clients} client processes; {args.rounds} rounds x {args.seconds:g} s per path"
    )
    say(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    for path in ("/healthz", checkout):  # warm up: imports, connections, templates
        rate(port, path)

    rates = {"/healthz": [], checkout: []}
    for n in range(args.rounds):
        order = ("/healthz", checkout) if n % 2 == 0 else (checkout, "/healthz")
        for path in order:
            rates[path].append(rate(port, path))
        say(
            f"round {n + 1}: healthz {rates['/healthz'][-1]:7.1f} req/s   checkout "
            f"{rates[checkout][-1]:7.1f} req/s   ratio {rates[checkout][-1] / rates['/healthz'][-1]:.3f}"
        )
    bare, page = statistics.median(rates["/healthz"]), statistics.median(rates[checkout])
    ratio = statistics.median(c / h for c, h in zip(rates[checkout], rates["/healthz"]))
    say(f"median: healthz {bare:7.1f} req/s   checkout {page:7.1f} req/s")
    say(
        f"ratio checkout/healthz: {ratio:.3f}  (target >= {TARGET_RATIO}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    say(f"load after: {os.getloadavg()[0]:.2f} (1 min)")

    written_by_web = ScanMark.objects.count()
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    client.get(checkout)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(checkout).status_code == 200
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    say(
        f"queries per checkout: {len(queries)}, writes: {len(writes)}  (target <= {TARGET_QUERIES}, "
        f"no write: {'met' if len(queries) <= TARGET_QUERIES and not writes else 'NOT met'})"
    )
    held = scans.flush()
    say(
        f"scan marks written by the web workers: {written_by_web}; held in Redis and flushed "
        f"after the run: {held} (one client: 1 mark)"
    )
finally:
    if server:
        server.terminate()
        server.wait(timeout=30)
    redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )
    shutil.rmtree(env["VAR_DIR"], ignore_errors=True)
