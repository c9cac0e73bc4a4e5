"""Time zones of receipts and periods, checked: a typo in the admin must not stop receipts."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

log = logging.getLogger(__name__)


def first_zone(*names: str) -> ZoneInfo:
    """The first valid zone of `names` (a typo in the admin must not stop receipts), else ours."""
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.error("unknown time zone %r on a receipt; trying the next", name)
    return ZoneInfo(settings.TIME_ZONE)
