"""Checkout page budget (docs/design.md §11): our HTML+CSS+JS compressed, SQL queries per page view,
and a first visit on a weak signal.

Run: .venv/bin/python bench/page_budget.py   (prints, asserts nothing)

1. Sizes and queries: a throwaway SQLite database and Django's test client.
2. A first visit in Chromium on a throttled network (CDP Network.emulateNetworkConditions:
   400 kbit/s each way, 400 ms round trip) against the whole product (tests/stack.py: gunicorn,
   PostgreSQL, Redis, localstripe; all on 127.0.0.1): bytes and requests, ours and the card form's,
   and the time until the price is visible and until Pay is enabled. Needs PostgreSQL, Redis and
   Chromium as the browser tests do; skipped with a note when they are missing. `--no-browser`
   skips it.
"""

import gzip
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")

import django

django.setup()

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from stations import demo, qr

# Queries: here (local memory cache) the scan's mark is one of them, an INSERT; with the production
# Redis cache it is held in Redis and the page writes nothing (bench/checkout_rate.py).
BUDGET_BYTES, BUDGET_QUERIES = 30 * 1024, 2
THROTTLE = {"kbps": 400, "rtt_ms": 400}

call_command("migrate", verbosity=0)
evse = demo.seed()[1]
client = Client(HTTP_HOST="127.0.0.1")
path = f"/q/{qr.code_for(evse)}"
client.get(path)  # warm caches
with CaptureQueriesContext(connection) as queries:
    response = client.get(path)
assert response.status_code == 200, response.status_code
# Counted now: the next request resets the connection's query log.
statements = [q["sql"].split()[0] for q in queries.captured_queries]
html = response.content
served = client.get(path, HTTP_ACCEPT_ENCODING="gzip")
assets = [ROOT / "static/css/site.css", ROOT / "static/js/checkout.js"]
sizes = {"html": len(gzip.compress(html, 9))}
sizes.update({p.name: len(gzip.compress(p.read_bytes(), 9)) for p in assets})
total = sum(sizes.values())
for name, size in sizes.items():
    print(f"{name:>14}: {size:6d} bytes gzip")
print(
    f"{'total':>14}: {total:6d} bytes gzip ({total / BUDGET_BYTES:.0%} of the {BUDGET_BYTES} byte budget)"
)
print(
    f"{'html served':>14}: {len(served.content)} bytes, Content-Encoding: "
    f"{served.get('Content-Encoding', 'none')}"
)
# BEGIN/COMMIT/SAVEPOINT are transaction control (SQLite logs them), not queries.
real = [s for s in statements if s.upper() not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]
reads = [s for s in real if s.upper() == "SELECT"]
print(
    f"{'SQL queries':>14}: {len(reads)} read(s) ({len(reads)}/{BUDGET_QUERIES} of budget), "
    f"{len(real) - len(reads)} statement(s) writing the scan's mark (none with Redis)"
)


def first_visit_throttled() -> None:
    from playwright.sync_api import sync_playwright

    from tests.stack import CHROMIUM, CHROMIUM_ARGS, Stack

    def listening(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    if not (listening(5432) and listening(6379) and os.path.exists(CHROMIUM)):
        print("\n(first visit on a throttled network skipped: needs PostgreSQL, Redis, Chromium)")
        return
    stack = Stack().start()
    try:
        url = stack.checkout_url("NL*DPY*E0002*1")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
            )
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
            rate = THROTTLE["kbps"] * 1000 / 8  # bytes per second
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": False,
                    "latency": THROTTLE["rtt_ms"],
                    "downloadThroughput": rate,
                    "uploadThroughput": rate,
                },
            )
            urls, received = {}, {}
            cdp.on(
                "Network.requestWillBeSent",
                lambda e: urls.update({e["requestId"]: e["request"]["url"]}),
            )
            cdp.on(
                "Network.loadingFinished",
                lambda e: received.update({e["requestId"]: e["encodedDataLength"]}),
            )
            started = time.monotonic()
            page.goto(url, wait_until="commit", timeout=120_000)
            page.locator(".prices td").first.wait_for(state="visible", timeout=120_000)
            price_visible = time.monotonic() - started
            page.locator("#pay-button:enabled").wait_for(timeout=120_000)
            pay_enabled = time.monotonic() - started
            page.wait_for_load_state("networkidle", timeout=120_000)
            ours = {k: v for k, v in received.items() if urls.get(k, "").startswith(stack.base)}
            theirs = {k: v for k, v in received.items() if k not in ours}
            browser.close()
    finally:
        stack.stop()
        stack.cleanup_files()
    print(
        f"\nFirst visit, Chromium 390x844, {THROTTLE['kbps']} kbit/s, {THROTTLE['rtt_ms']} ms RTT "
        "(bytes on the wire, headers included):"
    )
    print(f"{'ours':>14}: {len(ours)} requests, {sum(ours.values())} bytes")
    for key, size in ours.items():
        print(f"{'':>14}  {size:6d}  {urls[key].removeprefix(stack.base)[:60]}")
    print(
        f"{'card form':>14}: {len(theirs)} requests, {sum(theirs.values())} bytes (localstripe's shim here; Stripe.js in production)"
    )
    print(f"{'price visible':>14}: {price_visible:.1f} s")
    print(f"{'Pay enabled':>14}: {pay_enabled:.1f} s")


if "--no-browser" not in sys.argv:
    first_visit_throttled()
