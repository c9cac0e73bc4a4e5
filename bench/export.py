"""The finance CSV at scale: 1,000,000 receipts streamed through the admin, memory and speed.

Builds a throwaway PostgreSQL database (`directpay_bench_export`, dropped first; never the tests'),
migrates it, seeds the demo operator and chargers, and fills it with generate_series SQL: N captured
sessions and payments, N receipts (a VAT split in the document JSON, a 4 kB PDF each, so that
reading them would show) and a credit note for every 100th receipt. Then starts gunicorn on
127.0.0.1 as the Procfile does (gthread, default 30 s timeout), logs in to the admin and downloads
the export over HTTP while sampling the web worker's RSS from /proc every 20 ms.

Prints rows, seconds, rows/s, time to the first byte and peak RSS against the goals
(< 200 MB RSS, >= 20,000 rows/s). Loopback only; asserts no time.

Run: .venv/bin/python bench/export.py [--rows 1000000] [--keep]
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import free_port, wait_for_http

DB = "directpay_bench_export"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
GOAL_RSS_MB, GOAL_ROWS_PER_S = 200, 20_000
PASSWORD = "bench-only-password-1"

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--rows", type=int, default=1_000_000, help="receipts to generate")
parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
parser.add_argument("--reuse", action="store_true", help="reuse the database of a --keep run")
args = parser.parse_args()

ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "directpay.settings",
    "DATABASE_URL": DB_URL,
    "DEBUG": "true",
    "ALLOWED_HOSTS": "127.0.0.1",
    "CELERY_BROKER_URL": "memory://",
    "VAR_DIR": str(ROOT / "var" / "bench-export"),
    "PYTHONUNBUFFERED": "1",
}


def say(text=""):
    print(text, flush=True)


def admin_sql(statement: str) -> None:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(statement)


def manage(*argv: str) -> None:
    subprocess.run([sys.executable, "manage.py", *argv], cwd=ROOT, env=ENV, check=True)


def insert(conn, table: str, columns: dict[str, str], rows: str) -> None:
    """INSERT ... SELECT over generate_series; `columns` maps each NOT NULL column to SQL."""
    names = ", ".join(columns)
    exprs = ", ".join(columns.values())
    conn.execute(f"INSERT INTO {table} ({names}) SELECT {exprs} FROM {rows}")


def generate(rows: int) -> None:
    started = time.monotonic()
    # The demo's operator, locations and chargers (one EVSE is enough: the export joins per row).
    manage("seed_demo")
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        evse, connector, operator = conn.execute(
            "SELECT e.id, c.id, l.operator_id FROM stations_evse e "
            "JOIN stations_connector c ON c.evse_id = e.id "
            "JOIN stations_location l ON l.id = e.location_id ORDER BY e.id LIMIT 1"
        ).fetchone()
        series = f"generate_series(1, {rows}) AS g"
        say(f"generating {rows:,} sessions, payments and receipts ...")
        insert(
            conn,
            "checkout_chargingsession",
            {
                "public_id": "gen_random_uuid()",
                "evse_id": str(evse),
                "connector_id": str(connector),
                "status": "'finished'",
                "failure_reason": "''",
                "tariff_snapshot": "'{}'",
                "time_zone": "'Europe/Amsterdam'",
                "email": "''",
                "language": "'en'",
                "csms_reference": "'B' || g",
                "csms_session_id": "''",
                "kwh": "10 + (g % 40)",
                "parking_minutes": "0",
                "cost_incl_vat": "0",
                "started_at": "timestamptz '2026-01-01' + g * interval '20 seconds'",
                "ended_at": "timestamptz '2026-01-01' + g * interval '20 seconds' + interval '1h'",
                "cdr": "'{}'",
                "final_breakdown": "'{}'",
                "attention": "''",
                "created_at": "now()",
                "updated_at": "now()",
            },
            series,
        )
        base = conn.execute("SELECT min(id) - 1 FROM checkout_chargingsession").fetchone()[0]
        insert(
            conn,
            "checkout_payment",
            {
                "session_id": f"{base} + g",
                "status": "'captured'",
                "currency": "'EUR'",
                "amount_held": "5000",
                "amount_captured": "605 + (g % 40) * 61",
                "amount_refunded": "CASE WHEN g % 100 = 0 THEN 100 ELSE 0 END",
                "shortfall": "0",
                "stripe_payment_intent_id": "'pi_bench_' || g",
                "client_secret": "''",
                "card_brand": "'visa'",
                "card_last4": "'4242'",
                "wallet": "''",
                "decline_message": "''",
                "write_in_flight": "''",
                "created_at": "now()",
                "updated_at": "now()",
            },
            series,
        )
        pay_base = conn.execute("SELECT min(id) - 1 FROM checkout_payment").fetchone()[0]
        gross = "(605 + (g % 40) * 61)"
        net = f"round({gross} / 1.21)::int"
        insert(
            conn,
            "checkout_receipt",
            {
                "payment_id": f"{pay_base} + g",
                "operator_id": str(operator),
                "year": "2026",
                "sequence": "g",
                "number": "'BENCH-2026-' || lpad(g::text, 7, '0')",
                "issued_at": "timestamptz '2026-01-01' + g * interval '20 seconds' + interval '2h'",
                "total_incl_vat": gross,
                "total_excl_vat": net,
                "vat_amount": f"{gross} - {net}",
                "document": (
                    "jsonb_build_object('items', jsonb_build_array(jsonb_build_object("
                    "'type', 'ENERGY', 'volume', (10 + g % 40)::text, 'rate', '21', "
                    f"'unit_price_incl_vat', '0.605', 'gross', {gross})), 'adjustments', "
                    f"'[]'::jsonb, 'charged', {gross}, 'vat_lines', jsonb_build_array("
                    f"jsonb_build_object('rate', '21', 'gross', {gross}, 'net', {net}, "
                    f"'vat', {gross} - {net})), 'net', {net}, 'vat', {gross} - {net})"
                ),
                # 4 kB that do not compress, as a real PDF's streams do not.
                "pdf": "(SELECT string_agg(sha512((g * 64 + i)::text::bytea), '') "
                "FROM generate_series(1, 64) AS i)",
                "rendered_at": "now()",
            },
            series,
        )
        say("generating a refund and a credit note for every 100th receipt ...")
        insert(
            conn,
            "checkout_refund",
            {
                "payment_id": f"{pay_base} + g",
                "amount": "100",
                "reason": "'requested_by_customer'",
                "note": "''",
                "status": "'succeeded'",
                "stripe_refund_id": "'re_bench_' || g",
                "requested_by": "'bench'",
                "failure_message": "''",
                "created_at": "now()",
                "updated_at": "now()",
            },
            f"generate_series(100, {rows}, 100) AS g",
        )
        insert(
            conn,
            "checkout_creditnote",
            {
                "refund_id": "r.id",
                "receipt_id": "rc.id",
                "operator_id": str(operator),
                "year": "2026",
                "sequence": "row_number() OVER (ORDER BY r.id)",
                "number": "'BENCH-CN-2026-' || lpad(r.id::text, 7, '0')",
                "issued_at": "rc.issued_at + interval '1 day'",
                "total_incl_vat": "100",
                "total_excl_vat": "83",
                "vat_amount": "17",
                "document": (
                    '\'{"refunded": 100, "vat_lines": [{"rate": "21", "gross": 100, '
                    '"net": 83, "vat": 17}], "net": 83, "vat": 17}\''
                ),
                "pdf": "sha512(r.id::text::bytea)",
                "rendered_at": "now()",
            },
            "checkout_refund r JOIN checkout_receipt rc ON rc.payment_id = r.payment_id",
        )
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        say(f"generated in {time.monotonic() - started:.0f} s; database {size.fetchone()[0]}")


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


def main() -> None:
    if not args.reuse:
        admin_sql(f"DROP DATABASE IF EXISTS {DB}")
        admin_sql(f"CREATE DATABASE {DB}")
        manage("migrate", "--noinput", "-v", "0")
        generate(args.rows)
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            (
                "from django.contrib.auth.models import User; "
                "User.objects.filter(username='bench').delete(); "
                f"User.objects.create_superuser('bench', '', '{PASSWORD}')"
            ),
        ],
        cwd=ROOT,
        env=ENV,
        check=True,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # As the Procfile runs it: gthread workers, gunicorn's default 30 s timeout.
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "directpay.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
    )
    try:
        wait_for_http(f"{base}/admin/login/", timeout=60, process=web)
        http = requests.Session()
        http.get(f"{base}/admin/login/", timeout=10)
        login = http.post(
            f"{base}/admin/login/?next=/admin/",
            data={
                "username": "bench",
                "password": PASSWORD,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/admin/login/"},
            timeout=30,
        )
        assert "/admin/login/" not in login.url, "login failed"
        workers = children(web.pid)
        idle = max(rss_kb(pid) for pid in workers)
        peak = [idle]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max([peak[0]] + [rss_kb(pid) for pid in children(web.pid)])
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        first_byte = None
        lines = size = 0
        with http.get(f"{base}/admin/checkout/receipt/export/", stream=True, timeout=900) as r:
            r.raise_for_status()
            for chunk in r.iter_content(chunk_size=1 << 16):
                if first_byte is None:
                    first_byte = time.monotonic() - started
                lines += chunk.count(b"\n")
                size += len(chunk)
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        rows = lines - 1
        rate = rows / elapsed
        peak_mb = peak[0] / 1024
        say()
        say(f"rows exported        {rows:,} ({size / 1e6:.0f} MB of CSV)")
        say(f"seconds              {elapsed:.1f} (first byte after {first_byte:.2f} s)")
        say(
            f"rows/s               {rate:,.0f}  (goal >= {GOAL_ROWS_PER_S:,}: "
            f"{'met' if rate >= GOAL_ROWS_PER_S else 'NOT met'})"
        )
        say(
            f"web worker RSS       idle {idle / 1024:.0f} MB, peak {peak_mb:.0f} MB  (goal < "
            f"{GOAL_RSS_MB} MB: {'met' if peak_mb < GOAL_RSS_MB else 'NOT met'})"
        )
        say(f"worker still alive   {all(Path(f'/proc/{p}').exists() for p in workers)}")
    finally:
        web.terminate()
        web.wait(timeout=30)
        if not args.keep:
            admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
