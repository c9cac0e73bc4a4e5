"""The unit prices the checkout page shows, computed once per price rather than once per scan.

Keyed by the tariff's price digest (its priced content and currency, stations/tariffs.py): an edit,
an import or a CPO's PUT that changes the price changes the key, so no stale price can be shown and
nothing has to be invalidated. Per process: the lines are Decimals, cheaper to keep than to fetch.
"""

from __future__ import annotations

from threading import Lock

from . import tariffs

MAX_PRICES = 512  # distinct prices kept per process; far more than the tariffs one site has

_lines: dict[str, tuple[dict, ...]] = {}
_lock = Lock()


def price_lines(tariff) -> tuple[dict, ...]:
    """tariffs.price_lines of `tariff` (a stations Tariff), shared: read, never change, the lines."""
    digest = tariff.price_digest
    lines = _lines.get(digest)
    if lines is None:
        lines = tuple(tariffs.price_lines(tariff.ocpi))
        with _lock:
            if len(_lines) >= MAX_PRICES:
                _lines.clear()
            _lines[digest] = lines
    return lines
