"""QR sticker sheets: how fast 1,000 stickers render into one PDF, how big it is, how much memory.

Creates N EVSEs in a throwaway SQLite database, records one print batch of all of them and renders
its PDF to a temporary file twice: once timed (stickers/second), once under tracemalloc (peak Python
memory; tracemalloc slows allocation-heavy code such as segno's mask search several times, so that
run is not timed).

Run: .venv/bin/python bench/stickers.py [--evses 1000] [--layout a4-3x8|a4-2x4|single-a6|...|all]
     (prints, asserts nothing)
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
os.environ.setdefault("PUBLIC_BASE_URL", "https://pay.example.com")
os.environ.setdefault("QR_SIGNING_KEYS", "bench-only-qr-key")

import django

django.setup()

from django.core.management import call_command

from stations import demo, stickers
from stations.models import Evse

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--evses", type=int, default=1000, help="EVSEs in the PDF (default 1000)")
parser.add_argument(
    "--layout", default="a4-3x8", choices=[*stickers.LAYOUTS, "all"], help="default a4-3x8"
)
args = parser.parse_args()

call_command("migrate", verbosity=0)
location = demo.seed()[0].location
location.operator.languages = "nl,en,de"
location.operator.save(update_fields=["languages"])
Evse.objects.bulk_create(
    Evse(location=location, uid=f"bench-{n}", evse_id=f"NL*DPY*B{n:05d}*1")
    for n in range(args.evses)
)
evses = Evse.objects.filter(uid__startswith="bench-")
print(f"{args.evses} EVSEs, operator languages {location.operator.languages}")

for name in stickers.LAYOUTS if args.layout == "all" else [args.layout]:
    layout = stickers.LAYOUTS[name]
    batch = stickers.print_batch_create(evses=evses, layout=name, user=None)
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        count = stickers.render_pdf(batch, out)
        elapsed = time.perf_counter() - started
        size = out.tell()
    with tempfile.TemporaryFile() as out:
        tracemalloc.start()
        stickers.render_pdf(batch, out)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        f"{name:>15}: {count / elapsed:6.0f} stickers/s ({elapsed:5.2f} s), {layout.pages(count):4d} pages, "
        f"PDF {size / 2**20:5.2f} MiB ({size / count / 1024:4.1f} KiB a sticker), "
        f"peak Python memory {peak / 2**20:5.1f} MiB"
    )

# What the fixed mask saves: segno encoding the same URLs with its mask search and with qr.MASK,
# interleaved so a busy machine slows both alike.
import segno

from stations import qr

urls = [qr.url_for(evse) for evse in evses]
spent = {"search": 0.0, "fixed": 0.0}
for url in urls:
    for kind, mask in (("search", None), ("fixed", qr.MASK)):
        started = time.perf_counter()
        segno.make(url, error="q", micro=False, mask=mask)
        spent[kind] += time.perf_counter() - started
print(
    f"segno encoding of {len(urls)} URLs: mask search {spent['search']:.2f} s, "
    f"fixed mask {spent['fixed']:.2f} s ({spent['search'] / spent['fixed']:.2f}x faster)"
)
