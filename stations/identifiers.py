"""Formats of identifiers and names we accept from staff (CSV import) and from CPOs (OCPI)."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import available_timezones

# eMI3 / ISO 15118 EVSE ID: country, operator id, "E", outlet id; the "*" separators are optional,
# and OCPI compares ids case-insensitively.
EVSE_ID_RE = re.compile(r"^[A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9*]{1,30}$", re.IGNORECASE)


def evse_id_valid(value) -> bool:
    return isinstance(value, str) and EVSE_ID_RE.match(value) is not None


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """IANA time zone names this machine's zoneinfo knows."""
    return frozenset(available_timezones())


def time_zone_valid(value) -> bool:
    return isinstance(value, str) and value in time_zones()
