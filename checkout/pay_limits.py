"""Abuse limits on Pay: how often one client, one EVSE and one card may try, and how many declines an
EVSE may see, before Pay answers 429 without calling Stripe; and the decline spikes staff should see.

Card testers loop Pay with stolen card numbers: each try costs a PaymentIntent (Stripe's fees, our
Radar standing) and holds a web worker for several Stripe calls. The counters are django-ratelimit's
fixed windows in the default cache, which production keeps in Redis so every web process shares them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.core import checks
from django.utils.translation import gettext, ngettext
from django_ratelimit.core import get_usage

from . import pay_challenge, payments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Pay refused before anything reached Stripe: nothing was charged or held."""

    limit: str  # which limit, for the log
    retry_after: int  # seconds until the driver may try again
    status: int = 429

    @property
    def retry_minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))

    @property
    def message(self) -> str:
        """For the driver, in the active language."""
        if self.limit == "challenge":
            return gettext(
                "Please complete the check above the Pay button. Nothing has been charged."
            )
        minutes = self.retry_minutes
        return ngettext(
            "Too many payment attempts. Nothing has been charged. "
            "Please try again in %(minutes)d minute.",
            "Too many payment attempts. Nothing has been charged. "
            "Please try again in %(minutes)d minutes.",
            minutes,
        ) % {"minutes": minutes}


# Caches whose counters each process keeps to itself (or not at all): limits per process are no limits.
NOT_SHARED = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@checks.register(checks.Tags.caches)
def check_shared_cache(app_configs=None, **kwargs):
    """Production fails closed: Pay's limits need a cache every web process shares (CACHE_URL)."""
    backend = settings.CACHES["default"]["BACKEND"]
    if settings.DEBUG or not settings.RATELIMIT_ENABLE or backend not in NOT_SHARED:
        return []
    return [
        checks.Error(
            f"the default cache ({backend}) is not shared by the web processes, so the abuse "
            "limits on Pay would count per process",
            hint="Set CACHE_URL, e.g. redis://host:6379/1",
            id="pay_limits.E001",
        )
    ]


def _usage(request, group: str, key, rate: str, *, increment: bool) -> dict | None:
    """One counter: None when the limit is off or the cache failed (fail open: drivers keep paying)."""
    if not rate:
        return None
    value = key if callable(key) or key == "ip" else (lambda _group, _request: key)
    try:
        return get_usage(request, group=group, key=value, rate=rate, increment=increment)
    except Exception:
        log.exception("pay limits: counting %s failed; not limiting", group)
        return None


def _over(usage: dict | None, *, counted: bool) -> bool:
    # A counted attempt is over when it is the limit+1st; a check of declines only looks, so the
    # limit-th decline already closes the window.
    if usage is None:
        return False
    return usage["count"] > usage["limit"] if counted else usage["count"] >= usage["limit"]


def pay_refusal(
    request, *, evse, payment_method_id: str = "", confirmation_token: str = ""
) -> Refusal | None:
    """Count this press of Pay; a Refusal if a limit is reached. Call before any Stripe write.

    Cheapest first: the EVSE's declines, the client, the EVSE; the card last (its fingerprint costs
    a Stripe read, which a client already refused never gets): the payment method's, or the one in
    the ConfirmationToken's payment_method_preview.
    """
    if not pay_challenge.passed(request):
        return Refusal(limit="challenge", retry_after=0, status=403)
    evse_key = str(evse.pk)
    limits = (
        ("pay-declines-evse", evse_key, settings.PAY_DECLINES_PER_EVSE, False),
        ("pay-ip", "ip", settings.PAY_RATE_PER_IP, True),
        ("pay-evse", evse_key, settings.PAY_RATE_PER_EVSE, True),
    )
    for group, key, rate, counted in limits:
        usage = _usage(request, group, key, rate, increment=counted)
        if _over(usage, counted=counted):
            return _refused(group, usage, evse)
    if settings.PAY_RATE_PER_CARD:
        # A card tester rotates clients and chargers but tries each card more than once.
        fingerprint = (
            payments.token_card_fingerprint(confirmation_token)
            if confirmation_token
            else payments.card_fingerprint(payment_method_id)
        )
        if fingerprint:
            usage = _usage(
                request, "pay-card", fingerprint, settings.PAY_RATE_PER_CARD, increment=True
            )
            if _over(usage, counted=True):
                return _refused("pay-card", usage, evse)
    return None


def resume_refusal(request, *, evse) -> Refusal | None:
    """Count one question "which charge did my press of Pay open?" from this client."""
    usage = _usage(request, "pay-resume-ip", "ip", settings.PAY_RESUME_RATE_PER_IP, increment=True)
    return _refused("pay-resume-ip", usage, evse) if _over(usage, counted=True) else None


def _refused(group: str, usage: dict, evse) -> Refusal:
    retry_after = max(1, int(usage["time_left"]))
    log.warning(
        "pay refused: %s limit reached at %s (%s of %s), retry in %ss",
        group,
        evse.evse_id,
        usage["count"],
        usage["limit"],
        retry_after,
    )
    return Refusal(limit=group, retry_after=retry_after)


def decline_counted(*, evse) -> str:
    """Count a declined payment at `evse`. Returns why staff should look ('' when nothing unusual).

    Each spike is reported once per window: when its count reaches the limit, not on every decline after.
    """
    reasons = []
    at_evse = _usage(
        None, "pay-declines-evse", str(evse.pk), settings.PAY_DECLINES_PER_EVSE, increment=True
    )
    if at_evse and at_evse["count"] == at_evse["limit"]:
        reasons.append(
            f"{at_evse['count']} declined payments at {evse.evse_id} "
            f"(limit {settings.PAY_DECLINES_PER_EVSE}): possible card testing; Pay is paused there "
            f"for {max(1, math.ceil(at_evse['time_left'] / 60))} min"
        )
    total = _usage(
        None, "pay-declines-total", "all", settings.PAY_DECLINES_SPIKE_TOTAL, increment=True
    )
    if total and total["count"] == total["limit"]:
        reasons.append(
            f"{total['count']} declined payments across all chargers "
            f"(spike threshold {settings.PAY_DECLINES_SPIKE_TOTAL}): possible card testing"
        )
    return "; ".join(reasons)
