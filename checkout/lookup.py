"""A driver finds a receipt again without an account, and receipts travel as signed links.

The lookup needs four facts only the payer has together: the day of charging (in the location's
zone), the EVSE ID, the amount charged and the last 4 digits of the card, or of the phone wallet's
device account number (Apple Pay / Google Pay show those instead of the card's). All four must
match; the answer for "no such EVSE" and "no match" is the same, and both are rate-limited per
client and per EVSE ID typed (whether it exists or not), so the page is no oracle for either.

A found receipt is shown through a signed, expiring link (TimestampSigner), never the status URL,
which would also show the session live and let its holder do more than read documents.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.db.models import Value as V
from django.db.models.functions import Replace, Upper
from django.urls import reverse
from django_ratelimit.core import get_usage

from . import receipts
from .models import Invoice, Receipt

log = logging.getLogger(__name__)

_SALT = "checkout.receipt-link"  # a token signed for anything else never opens a receipt


def receipt_token(receipt: Receipt) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(str(receipt.pk))


def receipt_link(receipt: Receipt, *, absolute: bool = False) -> str:
    path = reverse("checkout:document", args=[receipt_token(receipt)])
    return f"{settings.PUBLIC_BASE_URL}{path}" if absolute else path


def status_links(receipt: Receipt | None) -> dict:
    """What the status page shows about documents: the signed link to keep, the invoice if any."""
    if receipt is None:
        return {"receipt_link": "", "invoice": None}
    return {
        "receipt_link": receipt_link(receipt, absolute=True),
        "invoice": Invoice.objects.filter(receipt=receipt).only("number").first(),
    }


def receipt_from_token(token: str) -> Receipt | None:
    """The receipt a link names, or None when it is forged or older than RECEIPT_LINK_MAX_AGE_DAYS."""
    try:
        pk = signing.TimestampSigner(salt=_SALT).unsign(
            token, max_age=timedelta(days=settings.RECEIPT_LINK_MAX_AGE_DAYS)
        )
    except signing.BadSignature:  # SignatureExpired is one too
        return None
    return (
        Receipt.objects.select_related("payment__session__evse__location", "operator")
        .filter(pk=int(pk))
        .first()
    )


def normal_evse_id(text: str) -> str:
    """EVSE IDs as typed from a sticker: case, spaces and the optional '*' or '-' separators ignored."""
    return re.sub(r"[\s*\-]", "", text).upper()


def parse_amount(text: str) -> int | None:
    """The amount as the driver writes it, in cents: '12.34', '12,34', '1.234,56', '1,234.56', '12'.

    The last '.' or ',' followed by one or two digits is the decimal mark; anything else that is not
    a plain number (three decimals, letters) is no amount. Exact: no rounding.
    """
    text = re.sub(r"[\s€$£]|EUR", "", text.strip(), flags=re.IGNORECASE)
    match = re.fullmatch(r"(\d{1,3}(?:[.,\u00a0']?\d{3})*|\d+)(?:[.,](\d{1,2}))?", text)
    if not match:
        return None
    whole = re.sub(r"\D", "", match.group(1))
    try:
        return int(Decimal(f"{whole}.{match.group(2) or '0'}") * 100)
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Limited:
    retry_after: int

    @property
    def retry_minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


def _usage(request, group: str, key: str, rate: str) -> dict | None:
    if not rate:
        return None
    value = "ip" if key == "ip" else (lambda _group, _request: key)
    try:
        return get_usage(request, group=group, key=value, rate=rate, increment=True)
    except Exception:  # a cache outage: fail open, as Pay does (design §8b), and say so
        log.exception("receipt lookup: counting %s failed; not limiting", group)
        return None


def lookup_refusal(request, *, evse_id: str) -> Limited | None:
    """Count this lookup against the client and the EVSE ID typed; Limited once either is over."""
    for group, key, rate in (
        ("receipt-lookup-ip", "ip", settings.RECEIPT_LOOKUP_RATE_PER_IP),
        ("receipt-lookup-evse", normal_evse_id(evse_id), settings.RECEIPT_LOOKUP_RATE_PER_EVSE),
    ):
        usage = _usage(request, group, key, rate)
        if usage and usage["count"] > usage["limit"]:
            log.warning("receipt lookup refused: %s limit reached", group)
            return Limited(retry_after=max(1, int(usage["time_left"])))
    return None


def invoice_refusal(request) -> Limited | None:
    """Count a business invoice request against the client; Limited once it is over."""
    usage = _usage(request, "invoice-ip", "ip", settings.INVOICE_RATE_PER_IP)
    if usage and usage["count"] > usage["limit"]:
        log.warning("invoice request refused: per-client limit reached")
        return Limited(retry_after=max(1, int(usage["time_left"])))
    return None


def receipt_find(*, day: date, evse_id: str, amount: str, last4: str) -> Receipt | None:
    """The one receipt whose charge matches all four facts, else None (no hint which one failed).

    One query with every condition in it, whatever was typed: "no such EVSE", "digits wrong" and
    "amount off" take the same path and come back as the same empty list.
    """
    cents = parse_amount(amount) or -1  # an unreadable amount matches nothing, by the same query
    last4 = last4.strip()
    wanted = normal_evse_id(evse_id)
    # The local day, from a UTC window around it (zones reach -12 h .. +14 h); checked exactly below.
    start = datetime.combine(day, time.min, tzinfo=UTC) - timedelta(hours=14)
    end = datetime.combine(day, time.max, tzinfo=UTC) + timedelta(hours=12)
    evse_norm = Upper(
        Replace(
            Replace(Replace("payment__session__evse__evse_id", V(" "), V("")), V("*"), V("")),
            V("-"),
            V(""),
        )
    )
    rows = (
        Receipt.objects.select_related("payment__session__evse__location", "operator")
        .annotate(evse_norm=evse_norm)
        .filter(
            Q(payment__card_last4=last4) | Q(payment__wallet_last4=last4),
            total_incl_vat=cents,
            evse_norm=wanted,
            payment__session__started_at__gte=start,
            payment__session__started_at__lte=end,
        )[:5]
    )
    found = []
    for receipt in rows:
        session = receipt.payment.session
        zone = receipts.first_zone(session.evse.location.time_zone, session.time_zone)
        if session.started_at.astimezone(zone).date() == day:
            found.append(receipt)
    # Two identical charges (same day, charger, amount, card) cannot be told apart: show none
    # rather than someone else's; staff can help from the audit trail.
    return found[0] if len(found) == 1 else None
