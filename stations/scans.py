"""Counting the clients that scan QR codes per EVSE and day, and the tamper signals read from them.

A sticker covered by a fake one shows as clients that fall away against the EVSE's own history; a
fake that copies an old or forged code shows as clients scanning voided or invalid codes. Clients
are counted, not requests: anyone can send a GET, so one client (one IPv4 address, or one IPv6 /64)
counts at most once per EVSE, kind and day, and a forged-code signal needs several clients.

Privacy: nothing identifying is kept past the day. A scan leaves a ScanMark holding a 16-bit
bucket of an HMAC of the client's address, keyed from SECRET_KEY and the date (the key changes
every day, so marks of two days cannot be linked). Some 65,000 IPv4 addresses share a bucket; the
address itself is never written. `roll_up` (hourly, by beat) counts the marks of days that are over
into ScanDay and deletes them, leaving counts only.

Where the cache is Redis (production), a scan writes nothing to the database: its mark is held in
Redis (stations/scan_buffer.py) and `flush` (every few minutes, by beat, and before each roll-up)
writes the held marks as ScanMark rows. Without Redis (`make run`) the scan writes its mark itself.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import salted_hmac

from . import qr, scan_buffer
from .models import Evse, ScanDay, ScanMark

log = logging.getLogger(__name__)

KINDS = ("valid", "voided", "invalid")
RECENT_DAYS = 7  # the window compared against the EVSE's own history
HISTORY_DAYS = 28
MIN_HISTORY_SCANS = 14  # below this the history says too little to call a drop
DROP_RATIO = 0.3  # recent scans under 30 % of what the history predicts: flag
# A 16-bit bucket: two clients of one EVSE and day rarely share one, and a bucket names no address.
CLIENT_BYTES = 2


def client_bucket(ip: str, day: date) -> int:
    """The bucket `ip` falls in on `day`. An IPv6 client is its /64 (one subscriber's network), so
    that a single machine cannot pose as many clients by changing its interface id."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None  # no usable address: all such clients share one bucket
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or ipaddress.ip_network(f"{address}/64", strict=False)
    digest = salted_hmac(
        f"stations.scans.client:{day.isoformat()}", str(address), algorithm="sha256"
    )
    return int.from_bytes(digest.digest()[:CLIENT_BYTES], "big")


def scan_record(*, evse_id: int | None, kind: str, client: str) -> None:
    """Count one scan by `client` (its IP address): a mark held in Redis when the cache is Redis,
    else one INSERT that does nothing if this client was already counted for this EVSE, kind and
    day."""
    if kind not in KINDS:
        raise ValueError(kind)
    day = timezone.localdate()
    bucket = client_bucket(client, day)
    if scan_buffer.enabled():
        try:
            scan_buffer.add(evse_id=evse_id, day=day, kind=kind, client=bucket)
            return
        except Exception:  # Redis away: count in the database rather than lose the scan
            log.exception("scan counter: Redis failed; writing the mark to the database")
    _write_marks([(evse_id, day, kind, bucket)])


def _write_marks(marks) -> None:
    # A mark already written (the same client again, or a drain retried) is ignored, not counted.
    rows = [ScanMark(evse_id=e, day=d, kind=k, client=c) for e, d, k, c in marks]
    ScanMark.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)


def flush() -> int:
    """Write the marks held in Redis as ScanMark rows; return how many were held (0 without Redis).

    Marks of EVSEs deleted since are dropped (their rows would be deleted with them)."""
    if not scan_buffer.enabled():
        return 0
    with scan_buffer.lock() as locked:
        return _drain() if locked else 0


def _drain() -> int:
    def write(marks):
        named = {e for e, *_ in marks if e is not None}
        known = set(Evse.objects.filter(pk__in=named).values_list("pk", flat=True))
        _write_marks([m for m in marks if m[0] is None or m[0] in known])

    return scan_buffer.drain(write)


def scan_seen(
    code: str, *, client: str, evse: Evse | None = None, error: qr.InvalidCode | None = None
) -> None:
    """Count a scan of `code` by `client`: valid for `evse`, or by what was wrong with it. A voided
    or forged code counts against the EVSE it names, when that EVSE exists: that is the tamper
    signal."""
    if error is None:
        scan_record(evse_id=evse.pk, kind="valid", client=client)
        return
    voided = error.reason == "voided"
    pk = error.evse.pk if error.evse else qr.claimed_evse_pk(code)
    known = pk if pk is not None and (voided or Evse.objects.filter(pk=pk).exists()) else None
    scan_record(evse_id=known, kind="voided" if voided else "invalid", client=client)


def roll_up(today: date | None = None) -> int:
    """Count the marks of days before `today` into ScanDay and delete them; return how many.

    DELETE ... RETURNING counts exactly the rows it removed: a scan marked while this runs is left
    for the next run, and two runs at once cannot count a mark twice. With Redis, the held marks
    are flushed first, under the flush's lock: a flush that read marks of a day before this
    deleted that day's rows would otherwise write them again, to be counted twice."""
    if scan_buffer.enabled():
        with scan_buffer.lock() as locked:
            if not locked:
                log.warning("scan roll-up: another flush or roll-up holds the lock; next run")
                return 0
            _drain()
            return _roll_up(today)
    return _roll_up(today)


def _roll_up(today: date | None) -> int:
    today = today or timezone.localdate()
    per_day: dict[tuple, Counter] = defaultdict(Counter)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {ScanMark._meta.db_table} WHERE day < %s RETURNING evse_id, day, kind",
            [today],
        )
        for evse_id, day, kind in cursor:
            per_day[evse_id, day][kind] += 1
        for (evse_id, day), counts in per_day.items():
            _add(evse_id, day, counts)
    return sum(sum(counts.values()) for counts in per_day.values())


def _add(evse_id: int | None, day, counts: Counter) -> None:
    if evse_id is None:
        _add_unknown(day, counts)
        return
    table = ScanDay._meta.db_table
    with connection.cursor() as cursor:
        # Column names come from KINDS above, never from input.
        added = ", ".join(f"{k} = {table}.{k} + excluded.{k}" for k in KINDS)
        cursor.execute(
            f"INSERT INTO {table} (evse_id, day, valid, voided, invalid) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (evse_id, day) DO UPDATE SET {added}",
            [evse_id, day, *(counts[k] for k in KINDS)],
        )


def _add_unknown(day, counts: Counter) -> None:
    # Codes that name no EVSE: one row per day with no EVSE (NULLs never conflict, so no upsert).
    for _ in range(2):
        try:
            with transaction.atomic():
                row, _ = ScanDay.objects.get_or_create(evse=None, day=day)
                ScanDay.objects.filter(pk=row.pk).update(**{k: F(k) + counts[k] for k in KINDS})
                return
        except IntegrityError:  # a concurrent run created it
            continue


@dataclass(frozen=True)
class Signals:
    """Counts are client-days: distinct clients per day, summed over the window (a client is not
    recognised from one day to the next)."""

    recent: int  # clients that scanned valid codes in the last RECENT_DAYS days
    history: int  # the same, in the HISTORY_DAYS days before those
    suspicious: int  # clients that scanned voided or invalid codes in the last RECENT_DAYS days

    @property
    def expected(self) -> float:
        """What the history predicts for the recent window."""
        return self.history * RECENT_DAYS / HISTORY_DAYS

    @property
    def dropped(self) -> bool:
        return self.history >= MIN_HISTORY_SCANS and self.recent < DROP_RATIO * self.expected

    @property
    def bad_codes(self) -> bool:
        """Enough clients scanned voided or forged codes: one client alone can forge any code."""
        return self.suspicious >= settings.SCAN_TAMPER_MIN_CLIENTS

    @property
    def flagged(self) -> bool:
        return self.dropped or self.bad_codes


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
    """EVSEs annotated with the last RECENT_DAYS days' scans (clients), checkouts and charges, and
    the history.

    Subqueries, not joins: scans and sessions are separate tables and must not multiply each other.
    Scans are the counted days (ScanDay) plus the marks not rolled up yet (today's, or more if beat
    has not run). Checkouts come from the sessions checkout opens against an EVSE (counted, never
    read).
    """
    today = today or timezone.localdate()
    recent_from = today - timedelta(days=RECENT_DAYS - 1)
    history_from = recent_from - timedelta(days=HISTORY_DAYS)
    sessions = Evse._meta.get_field("sessions").related_model.objects.filter(evse=OuterRef("pk"))
    since = timezone.make_aware(datetime.combine(recent_from, time.min))

    def count(queryset):
        return Coalesce(Subquery(queryset.values("evse").annotate(n=Count("pk")).values("n")), 0)

    def scans(kinds, **days):
        counted = (
            ScanDay.objects.filter(evse=OuterRef("pk"), **days)
            .values("evse")
            .annotate(t=Sum(sum((F(k) for k in kinds[1:]), F(kinds[0]))))
        )
        marked = ScanMark.objects.filter(evse=OuterRef("pk"), kind__in=kinds, **days)
        return models.ExpressionWrapper(
            Coalesce(Subquery(counted.values("t")), 0) + count(marked),
            output_field=models.IntegerField(),
        )

    return evses.annotate(
        scans_recent=scans(["valid"], day__gte=recent_from),
        scans_history=scans(["valid"], day__gte=history_from, day__lt=recent_from),
        scans_suspicious=scans(["voided", "invalid"], day__gte=recent_from),
        checkouts_recent=count(sessions.filter(created_at__gte=since)),
        charged_recent=count(sessions.filter(created_at__gte=since, started_at__isnull=False)),
    )
