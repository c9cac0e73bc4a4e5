"""Checkout page budget (docs/design.md §11): our HTML+CSS+JS compressed, and SQL queries per page view.

Run: .venv/bin/python bench/page_budget.py   (uses a throwaway SQLite database; prints, asserts nothing)
"""

import gzip
import os
import sys
import tempfile
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

call_command("migrate", verbosity=0)
evse = demo.seed()[1]
client = Client(HTTP_HOST="127.0.0.1")
path = f"/q/{qr.code_for(evse)}"
client.get(path)  # warm caches
with CaptureQueriesContext(connection) as queries:
    response = client.get(path)
assert response.status_code == 200, response.status_code
html = response.content
assets = [ROOT / "static/css/site.css", ROOT / "static/js/checkout.js"]
sizes = {"html": len(gzip.compress(html, 9))}
sizes.update({p.name: len(gzip.compress(p.read_bytes(), 9)) for p in assets})
total = sum(sizes.values())
for name, size in sizes.items():
    print(f"{name:>14}: {size:6d} bytes gzip")
print(
    f"{'total':>14}: {total:6d} bytes gzip ({total / BUDGET_BYTES:.0%} of the {BUDGET_BYTES} byte budget)"
)
reads = [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
print(
    f"{'SQL queries':>14}: {len(reads)} read(s) ({len(reads)}/{BUDGET_QUERIES} of budget), "
    f"{len(queries) - len(reads)} statement(s) writing the scan's mark (none with Redis)"
)
