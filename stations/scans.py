"""Counting QR scans per EVSE and day, and the tamper signals read from those counts.

Only counts are kept: no IP address, no device, nothing about the driver. A sticker covered by a
fake one shows as scans that fall away against the EVSE's own history; a fake that copies an old or
forged code shows as scans of voided or invalid codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import qr
from .models import Evse, ScanDay

KINDS = ("valid", "voided", "invalid")
RECENT_DAYS = 7  # the window compared against the EVSE's own history
HISTORY_DAYS = 28
MIN_HISTORY_SCANS = 14  # below this the history says too little to call a drop
DROP_RATIO = 0.3  # recent scans under 30 % of what the history predicts: flag


def scan_record(*, evse_id: int | None, kind: str) -> None:
    """Count one scan. A single upsert for a known EVSE, so the checkout page stays within budget."""
    if kind not in KINDS:
        raise ValueError(kind)
    day = timezone.localdate()
    if evse_id is None:
        _count_unknown(day, kind)
        return
    table = ScanDay._meta.db_table
    with connection.cursor() as cursor:
        # Column names come from KINDS above, never from input.
        cursor.execute(
            f"INSERT INTO {table} (evse_id, day, valid, voided, invalid) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (evse_id, day) DO UPDATE SET {kind} = {table}.{kind} + 1",
            [evse_id, day, *(int(k == kind) for k in KINDS)],
        )


def scan_seen(code: str, *, evse: Evse | None = None, error: qr.InvalidCode | None = None) -> None:
    """Count a scan of `code`: valid for `evse`, or by what was wrong with it. A voided or forged code
    counts against the EVSE it names, when that EVSE exists: that is the tamper signal."""
    if error is None:
        scan_record(evse_id=evse.pk, kind="valid")
        return
    voided = error.reason == "voided"
    pk = error.evse.pk if error.evse else qr.claimed_evse_pk(code)
    known = pk if pk is not None and (voided or Evse.objects.filter(pk=pk).exists()) else None
    scan_record(evse_id=known, kind="voided" if voided else "invalid")


def _count_unknown(day, kind: str) -> None:
    # Codes that name no EVSE: one row per day with no EVSE (NULLs never conflict, so no upsert).
    for _ in range(2):
        try:
            with transaction.atomic():
                row, _ = ScanDay.objects.get_or_create(evse=None, day=day)
                ScanDay.objects.filter(pk=row.pk).update(**{kind: F(kind) + 1})
                return
        except IntegrityError:  # a concurrent first scan of the day created it
            continue


@dataclass(frozen=True)
class Signals:
    recent: int  # valid scans in the last RECENT_DAYS days
    history: int  # valid scans in the HISTORY_DAYS days before those
    suspicious: int  # scans of voided or invalid codes in the last RECENT_DAYS days

    @property
    def expected(self) -> float:
        """What the history predicts for the recent window."""
        return self.history * RECENT_DAYS / HISTORY_DAYS

    @property
    def dropped(self) -> bool:
        return self.history >= MIN_HISTORY_SCANS and self.recent < DROP_RATIO * self.expected

    @property
    def flagged(self) -> bool:
        return self.dropped or self.suspicious > 0


def signals(evse_ids=None, today=None) -> dict[int, Signals]:
    """Tamper signals per EVSE (every EVSE when `evse_ids` is None), from the admin's own counts."""
    evses = Evse.objects.all() if evse_ids is None else Evse.objects.filter(pk__in=list(evse_ids))
    rows = with_activity(evses, today).values_list(
        "pk", "scans_recent", "scans_history", "scans_suspicious"
    )
    return {pk: Signals(recent, history, suspicious) for pk, recent, history, suspicious in rows}


def flagged_evse_ids(today=None) -> set[int]:
    """EVSEs whose stickers may have been tampered with (for the admin filter)."""
    return {pk for pk, signal in signals(today=today).items() if signal.flagged}


def with_activity(evses, today=None):
    """EVSEs annotated with the last RECENT_DAYS days' scans, checkouts and charges, and the history.

    Subqueries, not joins: scans and sessions are separate tables and must not multiply each other.
    Checkouts come from the sessions checkout opens against an EVSE (counted, never read).
    """
    today = today or timezone.localdate()
    recent_from = today - timedelta(days=RECENT_DAYS - 1)
    history_from = recent_from - timedelta(days=HISTORY_DAYS)
    sessions = Evse._meta.get_field("sessions").related_model.objects.filter(evse=OuterRef("pk"))
    since = timezone.make_aware(datetime.combine(recent_from, time.min))

    def scans(expression, **days):
        total = (
            ScanDay.objects.filter(evse=OuterRef("pk"), **days)
            .values("evse")
            .annotate(t=Sum(expression))
        )
        return Coalesce(Subquery(total.values("t")), 0)

    def count(queryset):
        return Coalesce(Subquery(queryset.values("evse").annotate(n=Count("pk")).values("n")), 0)

    return evses.annotate(
        scans_recent=scans("valid", day__gte=recent_from),
        scans_history=scans("valid", day__gte=history_from, day__lt=recent_from),
        scans_suspicious=scans(F("voided") + F("invalid"), day__gte=recent_from),
        checkouts_recent=count(sessions.filter(created_at__gte=since)),
        charged_recent=count(sessions.filter(created_at__gte=since, started_at__isnull=False)),
    )
