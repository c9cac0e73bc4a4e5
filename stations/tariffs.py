"""Pure OCPI 2.2.1 tariff pricing engine (stdlib only, no Django).

``quote(tariff, usage, tz)`` prices one charging session against an OCPI 2.2.1 Tariff object
(a dict as parsed from JSON); ``price_lines(tariff)`` lists the unit prices a driver must see
before starting.

How a session is priced (OCPI 2.2.1 mod_tariffs, plus the choices where the spec is silent or
contradicts itself):

* The session runs from ``start`` to ``end``; the last ``parking_minutes`` are parking, the rest
  is charging. Energy is delivered at a constant rate over the charging part (if that part has
  zero length, all energy counts as delivered at the start).
* The session is cut into segments at every point where the active element could change:
  local midnights and start_time/end_time of every local day (incl. DST transitions),
  min/max_duration, min/max_kwh and the charging -> parking boundary. Every restriction is a
  half-open interval ``[min, max)`` along the session (start_time, start_date, min_kwh,
  min_duration inclusive; end_time, end_date, max_kwh, max_duration exclusive), so the state at
  a segment's *start* holds for the whole segment.
* Per segment and per dimension the FIRST element whose restrictions all hold and that has a
  price component of that dimension is used. ENERGY and TIME are billed only while charging,
  PARKING_TIME only while parking; FLAT is billed once, from the first element with a FLAT
  component that is active at any point (chronologically first).
* Elements with a ``reservation`` restriction describe reservation costs, which do not exist for
  an ad hoc session: they are ignored by ``quote`` and ``price_lines``.
* Current/power restrictions compare session-level values (``Usage.max_current_a`` etc.):
  ``max_*`` holds when the session's maximum is below it (exclusive), ``min_*`` holds when the
  session's minimum (or, if not given, its maximum) is at or above it (inclusive). An unknown
  value never satisfies such a restriction, so the (usually dearer) fallback element applies.
* step_size: per dimension, the total volume billed by price components is rounded UP to a
  multiple of the step_size of the LAST component used for that dimension (Wh for ENERGY,
  seconds for TIME/PARKING_TIME); the extra is billed at that component's price. Earlier
  components' step sizes are ignored. TIME and PARKING_TIME are rounded independently: this
  matches the spec's complex example (tariff_4) and the parking examples; the spec's step_size
  example #1 (parking "absorbed" by rounded charging time) contradicts them and is not followed
  (see ocpi/ocpi#396).
* Money: each component's ``excl_vat``/``incl_vat`` is kept at 4 decimals (ROUND_HALF_UP);
  ``incl_vat = excl_vat * (1 + vat/100)``, no VAT given counts as 0 %. The totals are the sums
  of those 4-decimal amounts, clamped by min_price/max_price, then rounded to 2 decimals
  (ROUND_HALF_UP). A Price without ``incl_vat`` is converted with the session's effective VAT
  ratio. Component volumes are shown with 6 decimals (amounts use the exact volume).
* Each restriction is checked on its own at the local moment: a 22:00-06:00 window with
  day_of_week FRIDAY does not cover Saturday 02:00. start_time == end_time means all day.
* Quote components are aggregated per (type, price, vat), ordered ENERGY, TIME, FLAT,
  PARKING_TIME; zero-volume components are left out (FLAT always shows).
* Parsing is strict where money is at stake (unknown dimension type, negative price/VAT, bad
  step_size -> TariffError) and lenient elsewhere: numbers may be numeric strings, a missing
  step_size means no rounding, unknown fields are ignored.
* Tariff-level ``start_date_time``/``end_date_time``/``type`` are not checked: choosing the
  tariff that applies is the caller's job.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PricedComponent",
    "Quote",
    "TariffError",
    "Usage",
    "price_digest",
    "price_lines",
    "quote",
]

ENERGY, TIME, PARKING_TIME, FLAT = "ENERGY", "TIME", "PARKING_TIME", "FLAT"
# Display order (EU AFIR: energy price first).
_ORDER = {ENERGY: 0, TIME: 1, FLAT: 2, PARKING_TIME: 3}
_UNIT = {ENERGY: "kWh", TIME: "hour", PARKING_TIME: "hour", FLAT: "session"}
_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_RESERVATION = ("RESERVATION", "RESERVATION_EXPIRES")
_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_DATE_RE = re.compile(r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")

_Q2, _Q4, _Q6, _Q9 = Decimal("0.01"), Decimal("0.0001"), Decimal("0.000001"), Decimal("1e-9")
_ZERO, _HUNDRED = Decimal(0), Decimal(100)
_SECONDS_PER_HOUR = Decimal(3600)
_WH_PER_KWH = Decimal(1000)
_MICRO = timedelta(microseconds=1)


class TariffError(ValueError):
    """The tariff is not a usable OCPI 2.2.1 Tariff object."""


# --------------------------------------------------------------------------- public data types


def _decimal(value, what: str, *, optional: bool = False, error=ValueError) -> Decimal | None:
    """Number (int/float/Decimal/numeric str) -> finite Decimal; floats via str (0.1 stays 0.1)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise error(f"{what} must be a number, got {value!r}")
    try:
        result = Decimal(str(value).strip()) if isinstance(value, (float, str)) else Decimal(value)
    except InvalidOperation:
        raise error(f"{what} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise error(f"{what} must be a finite number, got {value!r}")
    return result


@dataclass(frozen=True)
class Usage:
    """One charging session as far as pricing is concerned (numbers are coerced to Decimal)."""

    start: datetime  # aware; plug-in
    end: datetime  # aware, >= start; plug-out (end of the whole session)
    kwh: Decimal  # energy delivered
    parking_minutes: Decimal = Decimal(0)  # the LAST parking_minutes of the session are parking
    max_current_a: Decimal | None = None
    max_power_kw: Decimal | None = None
    min_current_a: Decimal | None = None
    min_power_kw: Decimal | None = None

    def __post_init__(self):
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        for name in (
            "kwh",
            "parking_minutes",
            "max_current_a",
            "max_power_kw",
            "min_current_a",
            "min_power_kw",
        ):
            value = _decimal(getattr(self, name), name, optional=name != "kwh")
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        duration = self.end.astimezone(UTC) - self.start.astimezone(UTC)
        if duration < timedelta(0):
            raise ValueError(
                f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})"
            )
        if self.parking_minutes * 60 > _seconds(duration):
            raise ValueError(
                f"parking_minutes ({self.parking_minutes}) exceeds the session duration"
            )


@dataclass(frozen=True)
class PricedComponent:
    type: str  # ENERGY | TIME | PARKING_TIME | FLAT
    volume: Decimal  # billed volume after step_size: kWh, hours, or 1 for FLAT (6 decimals)
    price: Decimal  # unit price excl. VAT, as in the tariff
    vat: Decimal | None  # percent as in the tariff; None = not given (counted as 0 %)
    excl_vat: Decimal  # 4 decimals
    incl_vat: Decimal  # 4 decimals

    def as_dict(self) -> dict:
        return {
            "type": self.type,
            "volume": _str(self.volume),
            "price": _str(self.price),
            "vat": None if self.vat is None else _str(self.vat),
            "excl_vat": _str(self.excl_vat),
            "incl_vat": _str(self.incl_vat),
        }


@dataclass(frozen=True)
class Quote:
    currency: str
    components: tuple[PricedComponent, ...]
    total_excl_vat: Decimal  # 2 decimals, after min_price/max_price
    total_incl_vat: Decimal

    def as_dict(self) -> dict:
        """JSON-serialisable form; Decimals become strings."""
        return {
            "currency": self.currency,
            "total_excl_vat": _str(self.total_excl_vat),
            "total_incl_vat": _str(self.total_incl_vat),
            "components": [c.as_dict() for c in self.components],
        }


def _str(value: Decimal) -> str:
    return format(value, "f")  # never scientific notation


# --------------------------------------------------------------------------- tariff parsing


@dataclass(frozen=True)
class _Component:
    type: str
    price: Decimal
    vat: Decimal | None
    step_size: int


@dataclass(frozen=True)
class _Restrictions:
    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: Decimal | None = None  # seconds since session start
    max_duration: Decimal | None = None
    days: frozenset[int] | None = None  # datetime.weekday() numbers
    reservation: str | None = None

    @property
    def calendar(self) -> bool:
        """Depends on local wall-clock time / date."""
        return any(
            v is not None
            for v in (self.start_time, self.end_time, self.start_date, self.end_date, self.days)
        )


@dataclass(frozen=True)
class _Element:
    components: dict[str, _Component]  # first component of each dimension
    all_components: tuple[_Component, ...]
    restrictions: _Restrictions


@dataclass(frozen=True)
class _Tariff:
    currency: str
    elements: tuple[_Element, ...]  # reservation elements already removed
    min_price: tuple[Decimal, Decimal | None] | None  # (excl_vat, incl_vat)
    max_price: tuple[Decimal, Decimal | None] | None


def _number(value, where: str, *, optional: bool = True, minimum: Decimal | None = _ZERO):
    result = _decimal(value, where, optional=optional, error=TariffError)
    if result is not None and minimum is not None and result < minimum:
        raise TariffError(f"{where} must be >= {minimum}, got {value!r}")
    return result


def _parse_price(value, where: str):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TariffError(f"{where} must be a Price object with excl_vat, got {value!r}")
    return (
        _number(value.get("excl_vat"), f"{where}.excl_vat", optional=False),
        _number(value.get("incl_vat"), f"{where}.incl_vat"),
    )


def _parse_component(raw, where: str) -> _Component:
    if not isinstance(raw, dict):
        raise TariffError(f"{where} must be an object, got {raw!r}")
    kind = raw.get("type")
    if kind not in _ORDER:
        raise TariffError(f"{where}.type must be one of {', '.join(_ORDER)}, got {kind!r}")
    # step_size is required by the spec; a missing one is read as "no rounding".
    step = raw.get("step_size", 0)
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TariffError(f"{where}.step_size must be a non-negative integer, got {step!r}")
    return _Component(
        kind,
        _number(raw.get("price"), f"{where}.price", optional=False),
        _number(raw.get("vat"), f"{where}.vat"),
        int(step),
    )


def _parse_clock(value, where: str) -> time | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise TariffError(f"{where} must be HH:MM (24h), got {value!r}")
    return time(int(value[:2]), int(value[3:]))


def _parse_date(value, where: str) -> date | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not _DATE_RE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise TariffError(f"{where} must be a date YYYY-MM-DD, got {value!r}") from None


def _parse_restrictions(raw, where: str) -> _Restrictions:
    if raw is None:
        return _Restrictions()
    if not isinstance(raw, dict):
        raise TariffError(f"{where} must be an object, got {raw!r}")
    days = raw.get("day_of_week")
    if days is not None:
        if not isinstance(days, list) or any(d not in _DAYS for d in days):
            raise TariffError(
                f"{where}.day_of_week must be a list of {'/'.join(_DAYS)}, got {days!r}"
            )
        days = frozenset(_DAYS.index(d) for d in days)
    reservation = raw.get("reservation")
    if reservation is not None and reservation not in _RESERVATION:
        raise TariffError(f"{where}.reservation must be one of {_RESERVATION}, got {reservation!r}")
    num = {
        k: _number(raw.get(k), f"{where}.{k}")
        for k in (
            "min_kwh",
            "max_kwh",
            "min_current",
            "max_current",
            "min_power",
            "max_power",
            "min_duration",
            "max_duration",
        )
    }
    return _Restrictions(
        start_time=_parse_clock(raw.get("start_time"), f"{where}.start_time"),
        end_time=_parse_clock(raw.get("end_time"), f"{where}.end_time"),
        start_date=_parse_date(raw.get("start_date"), f"{where}.start_date"),
        end_date=_parse_date(raw.get("end_date"), f"{where}.end_date"),
        days=days,
        reservation=reservation,
        **num,
    )


def _parse(tariff) -> _Tariff:
    if not isinstance(tariff, dict):
        raise TariffError(f"tariff must be a JSON object, got {type(tariff).__name__}")
    currency = tariff.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise TariffError(f"tariff.currency must be a 3-letter ISO 4217 code, got {currency!r}")
    raw_elements = tariff.get("elements")
    if not isinstance(raw_elements, list) or not raw_elements:
        raise TariffError("tariff.elements must be a non-empty list of TariffElements")
    elements = []
    for i, raw in enumerate(raw_elements):
        where = f"elements[{i}]"
        if not isinstance(raw, dict):
            raise TariffError(f"{where} must be an object, got {raw!r}")
        raw_components = raw.get("price_components")
        if not isinstance(raw_components, list) or not raw_components:
            raise TariffError(f"{where}.price_components must be a non-empty list")
        components = tuple(
            _parse_component(c, f"{where}.price_components[{j}]")
            for j, c in enumerate(raw_components)
        )
        restrictions = _parse_restrictions(raw.get("restrictions"), f"{where}.restrictions")
        if restrictions.reservation:  # reservation costs: not part of an ad hoc session
            continue
        first: dict[str, _Component] = {}
        for c in components:
            first.setdefault(c.type, c)
        elements.append(_Element(first, components, restrictions))
    return _Tariff(
        currency.upper(),
        tuple(elements),
        _parse_price(tariff.get("min_price"), "min_price"),
        _parse_price(tariff.get("max_price"), "max_price"),
    )


# --------------------------------------------------------------------------- session timeline


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta // _MICRO) / 1_000_000  # exact, microsecond resolution


def _zone(tz) -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {tz!r}") from None


@dataclass(frozen=True)
class _Segment:
    seconds_in: Decimal  # session time at segment start
    kwh_in: Decimal  # energy delivered at segment start
    seconds: Decimal  # length
    kwh: Decimal  # energy delivered during the segment
    charging: bool
    local: datetime  # wall-clock time at segment start


def _calendar_breaks(start: datetime, end: datetime, zone: tzinfo, elements) -> list[datetime]:
    """UTC instants in (start, end) where a start/end_time, the local day or the offset changes."""
    clocks = {time(0, 0)}
    for el in elements:
        clocks |= {t for t in (el.restrictions.start_time, el.restrictions.end_time) if t}
    instants = {start, end}
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    while day <= last:
        for clock in clocks:
            for fold in (0, 1):  # both readings of an ambiguous (DST fall-back) wall time
                local = datetime.combine(day, clock).replace(tzinfo=zone, fold=fold)
                instants.add(local.astimezone(UTC))
        day += timedelta(days=1)
    ordered = sorted(i for i in instants if start <= i <= end)
    # A wall time inside a DST gap (or a repeated hour) starts/stops applying exactly at the
    # offset change, which no wall-clock conversion yields: find those changes by bisection.
    # Consecutive instants are at most a day apart, so each pair holds at most one change.
    offset = lambda i: i.astimezone(zone).utcoffset()
    for lo, hi in itertools.pairwise(ordered):
        if offset(lo) != offset(hi):
            before = offset(lo)
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == before else (lo, mid)
            instants.add(hi.replace(microsecond=0))  # zone transitions are on whole seconds
    return [i for i in instants if start < i < end]


def _segments(tariff: _Tariff, usage: Usage, zone: tzinfo) -> list[_Segment]:
    # All arithmetic in UTC: aware datetimes sharing a tzinfo subtract as wall-clock times.
    start, end = usage.start.astimezone(UTC), usage.end.astimezone(UTC)
    total, energy = _seconds(end - start), usage.kwh
    charging_end = total - usage.parking_minutes * 60

    times, kwhs = {charging_end}, set()
    for el in tariff.elements:
        r = el.restrictions
        times |= {v for v in (r.min_duration, r.max_duration) if v is not None}
        kwhs |= {v for v in (r.min_kwh, r.max_kwh) if v is not None}
    if any(el.restrictions.calendar for el in tariff.elements):
        times |= {_seconds(i - start) for i in _calendar_breaks(start, end, zone, tariff.elements)}

    # Points on the session's path (seconds, kWh): energy rises linearly while charging, then
    # stays flat while parking. Both coordinates are kept exact at every breakpoint so that the
    # half-open restriction intervals are decided correctly at segment starts.
    points = {(_ZERO, _ZERO), (charging_end, energy), (total, energy)}
    for t in times:
        if 0 < t < total:
            points.add((t, energy * t / charging_end) if t < charging_end else (t, energy))
    for k in kwhs:
        if 0 < k < energy:
            points.add((charging_end * k / energy, k))
    ordered = sorted(points)

    segments = []
    for (t0, e0), (t1, e1) in itertools.pairwise(ordered):
        local = (
            start + timedelta(microseconds=int((t0 * 1_000_000).to_integral_value(ROUND_CEILING)))
        ).astimezone(zone)
        segments.append(_Segment(t0, e0, t1 - t0, e1 - e0, e1 > e0 or t1 <= charging_end, local))
    if not segments:  # empty session: still evaluate the start (a FLAT fee may apply)
        segments.append(_Segment(_ZERO, _ZERO, _ZERO, _ZERO, True, start.astimezone(zone)))
    return segments


def _in_window(clock: time, start: time | None, end: time | None) -> bool:
    if start is None and end is None:
        return True
    start = start or time(0, 0)
    if end is None:
        return clock >= start
    if start < end:
        return start <= clock < end
    if start > end:  # wraps past midnight, e.g. 22:00-06:00
        return clock >= start or clock < end
    return True  # start == end: read as the whole day


def _holds(r: _Restrictions, seg: _Segment, usage: Usage) -> bool:
    local = seg.local
    peak_current, peak_power = usage.max_current_a, usage.max_power_kw
    low_current = usage.min_current_a if usage.min_current_a is not None else peak_current
    low_power = usage.min_power_kw if usage.min_power_kw is not None else peak_power
    checks = (
        r.start_date is None or local.date() >= r.start_date,
        r.end_date is None or local.date() < r.end_date,  # end_date is exclusive
        r.days is None or local.weekday() in r.days,
        _in_window(local.time(), r.start_time, r.end_time),
        r.min_kwh is None or seg.kwh_in >= r.min_kwh,
        r.max_kwh is None or seg.kwh_in < r.max_kwh,
        r.min_duration is None or seg.seconds_in >= r.min_duration,
        r.max_duration is None or seg.seconds_in < r.max_duration,
        # Unknown current/power (None) never satisfies a current/power restriction.
        r.max_current is None or (peak_current is not None and peak_current < r.max_current),
        r.max_power is None or (peak_power is not None and peak_power < r.max_power),
        r.min_current is None or (low_current is not None and low_current >= r.min_current),
        r.min_power is None or (low_power is not None and low_power >= r.min_power),
    )
    return all(checks)


# --------------------------------------------------------------------------- pricing


def _step_extra(dimension: str, total: Decimal, step: int) -> Decimal:
    """Volume (kWh or seconds) to add so that `total` becomes a multiple of `step`."""
    if step <= 0:
        return _ZERO
    scale = _WH_PER_KWH if dimension == ENERGY else Decimal(1)  # step is in Wh / seconds
    # Quantize first: a sum of divided energies may carry a 1e-26 artefact that must not add a step.
    units = (total * scale).quantize(_Q9, ROUND_HALF_UP)
    billed = (units / step).to_integral_value(ROUND_CEILING) * step
    return (billed - units) / scale


def _money(component: _Component, volume: Decimal) -> tuple[Decimal, Decimal]:
    excl = component.price * volume
    incl = excl * (_HUNDRED + (component.vat or _ZERO)) / _HUNDRED
    return excl.quantize(_Q4, ROUND_HALF_UP), incl.quantize(_Q4, ROUND_HALF_UP)


def _clamp(excl: Decimal, incl: Decimal, bound, keep) -> tuple[Decimal, Decimal]:
    """Apply one Price bound; `keep` is max for min_price and min for max_price."""
    if bound is None:
        return excl, incl
    bound_excl, bound_incl = bound
    if bound_incl is None:  # not given: use the session's effective VAT ratio
        bound_incl = bound_excl * incl / excl if excl else bound_excl
    return keep(excl, bound_excl), keep(incl, bound_incl)


def quote(tariff: dict, usage: Usage, tz: str | None = None) -> Quote:
    """Price `usage` with OCPI 2.2.1 `tariff`; `tz` (IANA name) is the location's time zone used
    for start/end_time, day_of_week and start/end_date restrictions (default UTC).

    Raises TariffError for a malformed tariff, ValueError for an unknown time zone.
    """
    parsed = _parse(tariff)
    zone = _zone(tz)

    used: dict[str, list[tuple[_Component, Decimal]]] = {ENERGY: [], TIME: [], PARKING_TIME: []}
    flat: _Component | None = None
    for seg in _segments(parsed, usage, zone):
        active = [el for el in parsed.elements if _holds(el.restrictions, seg, usage)]

        def pick(dimension, active=active):
            return next(
                (el.components[dimension] for el in active if dimension in el.components), None
            )

        if flat is None:
            flat = pick(FLAT)
        if seg.charging:
            volumes = {ENERGY: seg.kwh, TIME: seg.seconds}
        else:
            volumes = {PARKING_TIME: seg.seconds}
        for dimension, volume in volumes.items():
            component = pick(dimension)
            if component is not None and volume > 0:
                used[dimension].append((component, volume))

    # Aggregate per (dimension, price, vat); volumes in kWh / seconds until the end.
    lines: dict[tuple, list] = {}
    for dimension, parts in used.items():
        for component, volume in parts:
            key = (dimension, component.price, component.vat)
            lines.setdefault(key, [component, _ZERO])[1] += volume
        if parts:  # step_size of the LAST component used for this dimension rounds the total
            last = parts[-1][0]
            extra = _step_extra(dimension, sum(v for _, v in parts), last.step_size)
            lines[(dimension, last.price, last.vat)][1] += extra
    if flat is not None:
        lines[(FLAT, flat.price, flat.vat)] = [flat, Decimal(1)]

    components = []
    for (dimension, _, _), (component, volume) in sorted(
        lines.items(), key=lambda kv: _ORDER[kv[0][0]]
    ):
        if dimension in (TIME, PARKING_TIME):
            volume = volume / _SECONDS_PER_HOUR
        excl, incl = _money(component, volume)
        components.append(
            PricedComponent(
                dimension,
                volume.quantize(_Q6, ROUND_HALF_UP),
                component.price,
                component.vat,
                excl,
                incl,
            )
        )

    excl = sum((c.excl_vat for c in components), _ZERO)
    incl = sum((c.incl_vat for c in components), _ZERO)
    # Spec: both the excl. and incl. VAT totals are bounded independently.
    excl, incl = _clamp(excl, incl, parsed.min_price, max)
    excl, incl = _clamp(excl, incl, parsed.max_price, min)
    return Quote(
        parsed.currency,
        tuple(components),
        excl.quantize(_Q2, ROUND_HALF_UP),
        incl.quantize(_Q2, ROUND_HALF_UP),
    )


# --------------------------------------------------------------------------- price display


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")  # 16.00 -> "16"


def _duration_text(seconds: Decimal) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
        f"{secs} s" if secs else "",
    ]
    return " ".join(p for p in parts if p) or "0 min"


def _range_text(minimum, maximum, unit: str, *, low: str, high: str) -> str:
    """'from 1 to 2 kWh', '<low> 1 kWh' or '<high> 2 kWh' for a [minimum, maximum) restriction."""
    minimum = minimum or None  # a minimum of 0 restricts nothing
    if minimum is not None and maximum is not None:
        return f"from {_fmt(minimum)} to {_fmt(maximum)} {unit}"
    if minimum is not None:
        return f"{low} {_fmt(minimum)} {unit}"
    if maximum is not None:
        return f"{high} {_fmt(maximum)} {unit}"
    return ""


def _days_text(days: frozenset[int]) -> str:
    if days == frozenset(range(5)):
        return "on weekdays"
    if days == frozenset({5, 6}):
        return "on weekends"
    return "on " + ", ".join(_DAYS[d].capitalize() for d in sorted(days))


def _restrictions_text(r: _Restrictions) -> str:
    parts = []
    if r.start_time and r.end_time:
        parts.append(f"between {r.start_time:%H:%M} and {r.end_time:%H:%M}")
    elif r.start_time:
        parts.append(f"from {r.start_time:%H:%M}")
    elif r.end_time:
        parts.append(f"until {r.end_time:%H:%M}")
    if r.days is not None:
        parts.append(_days_text(r.days))
    if r.start_date:
        parts.append(f"from {r.start_date.isoformat()}")
    if r.end_date:
        parts.append(f"before {r.end_date.isoformat()}")
    min_duration = r.min_duration or None  # a minimum of 0 restricts nothing
    if min_duration is not None and r.max_duration is not None:
        parts.append(f"from {_duration_text(min_duration)} to {_duration_text(r.max_duration)}")
    elif min_duration is not None:
        parts.append(f"after {_duration_text(min_duration)}")
    elif r.max_duration is not None:
        parts.append(f"first {_duration_text(r.max_duration)}")
    parts.append(_range_text(r.min_kwh, r.max_kwh, "kWh", low="after", high="first"))
    parts.append(_range_text(r.min_power, r.max_power, "kW", low="from", high="below"))
    parts.append(_range_text(r.min_current, r.max_current, "A", low="from", high="below"))
    return ", ".join(p for p in parts if p)


def price_lines(tariff: dict) -> list[dict]:
    """Unit prices to show before a session starts, ENERGY, TIME, FLAT, PARKING_TIME first.

    One entry per distinct (type, price, vat, step_size, restrictions) of the non-reservation
    elements, in element order within each type. Decimals stay Decimal; the caller formats.
    """
    parsed = _parse(tariff)
    seen, lines = set(), []
    for el in parsed.elements:
        text = _restrictions_text(el.restrictions)
        for c in el.all_components:
            key = (c.type, c.price, c.vat, c.step_size, text)
            if key in seen:
                continue
            seen.add(key)
            incl = c.price * (_HUNDRED + (c.vat or _ZERO)) / _HUNDRED
            per_minute = None
            if c.type in (TIME, PARKING_TIME):
                per_minute = (incl / 60).quantize(_Q6, ROUND_HALF_UP)
            lines.append(
                {
                    "type": c.type,
                    "price_excl_vat": c.price,
                    "price_incl_vat": incl,
                    "vat": c.vat,
                    "unit": _UNIT[c.type],
                    "per_minute_incl_vat": per_minute,
                    "step_size": c.step_size,
                    "restrictions": text,
                }
            )
    lines.sort(key=lambda line: _ORDER[line["type"]])  # stable: element order kept per type
    return lines


# What of a Tariff object prices a session (see _parse): the digest covers these and nothing else,
# so a CPO re-sending a tariff with only a new `last_updated` does not send drivers back to reload.
PRICED_FIELDS = ("currency", "elements", "min_price", "max_price")


def price_digest(tariff: dict, currency: str) -> str:
    """A short fingerprint of a price as a driver sees it: the tariff's priced fields (VAT is in
    its price components) and the currency it is shown in.

    A price is identified by its content, not by a database row: an edit, an import or a CPO's
    update of the same row changes the digest, identical content keeps it. Canonical JSON (sorted
    keys, no whitespace), so the same content always hashes the same.
    """
    content = (
        {key: tariff.get(key) for key in PRICED_FIELDS} if isinstance(tariff, dict) else tariff
    )
    canonical = json.dumps(
        {"tariff": content, "shown_in": currency},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,  # a Decimal in an object that was never saved as JSON
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
