"""Signed QR codes for EVSE stickers.

The URL carries the EVSE's primary key, its sticker version and an HMAC tag made with a key of its
own (QR_SIGNING_KEYS, newest first). Older keys still verify, so rotating keys does not void printed
stickers; raising an EVSE's sticker_version does void its old sticker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re

import segno
from django.conf import settings

from stations.models import Evse

_PATH_RE = re.compile(
    r"^(?P<pk>[1-9][0-9]{0,11})-(?P<version>[1-9][0-9]{0,5})-(?P<tag>[a-z2-7]{16})$"
)


class InvalidCode(Exception):
    """The scanned code is not one we issued, or was voided. `reason` is for the log, not the driver."""

    def __init__(self, reason: str, evse: Evse | None = None):
        super().__init__(reason)
        self.reason = reason
        self.evse = evse


def _tag(key: str, pk: int, version: int) -> str:
    digest = hmac.new(key.encode(), f"evse:{pk}:{version}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def key_id(key: str | None = None) -> str:
    """A short fingerprint of a signing key (default: the newest), to record which key signed a
    printed sticker. Safe to store and show: a hash of the key, never the key."""
    key = settings.QR_SIGNING_KEYS[0] if key is None else key
    return hashlib.sha256(b"qr-key-id:" + key.encode()).hexdigest()[:12]


def code_for(evse: Evse) -> str:
    """The path segment printed on the EVSE's current sticker."""
    return f"{evse.pk}-{evse.sticker_version}-{_tag(settings.QR_SIGNING_KEYS[0], evse.pk, evse.sticker_version)}"


def url_for(evse: Evse) -> str:
    return f"{settings.PUBLIC_BASE_URL}/q/{code_for(evse)}"


def claimed_evse_pk(code: str) -> int | None:
    """The EVSE a code names, signed or not (to count forged codes against the EVSE they imitate)."""
    match = _PATH_RE.match(code or "")
    return int(match["pk"]) if match else None


def signed(code: str) -> tuple[int, int]:
    """The EVSE pk and sticker version a code carries, if we signed it (no database), or raise
    InvalidCode."""
    match = _PATH_RE.match(code or "")
    if not match:
        raise InvalidCode("malformed")
    pk, version, tag = int(match["pk"]), int(match["version"]), match["tag"]
    if not any(
        hmac.compare_digest(_tag(key, pk, version), tag) for key in settings.QR_SIGNING_KEYS
    ):
        raise InvalidCode("bad_tag")
    return pk, version


def _load(pk: int) -> Evse | None:
    return Evse.objects.select_related("location__operator").filter(pk=pk).first()


def verify(code: str, load=_load) -> Evse:
    """Return the EVSE a scanned code belongs to, or raise InvalidCode. `load(pk)` reads the EVSE
    (or None), for a page that needs more of it in the same query."""
    pk, version = signed(code)
    evse = load(pk)
    if evse is None:
        raise InvalidCode("unknown_evse")
    if version != evse.sticker_version:
        raise InvalidCode("voided", evse=evse)
    return evse


# A fixed data mask instead of segno's search over all eight (80 % of a sticker sheet's time). Mask 2
# scored best on our URLs' shape: over 400 sticker URLs it was the search's own choice 150 times and
# on average 48 penalty points from the best, less than any other; tests decode every code printed.
MASK = 2


def make(evse: Evse) -> segno.QRCode:
    # Error correction Q survives a dirty or scratched sticker.
    return segno.make(url_for(evse), error="q", micro=False, mask=MASK)


def render(evse: Evse, kind: str, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    make(evse).save(buf, kind=kind, scale=scale, border=4)
    return buf.getvalue()
