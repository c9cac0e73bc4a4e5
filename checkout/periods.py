"""Finance periods: calendar days and months as the operator counts them.

A period runs from local midnight of its first day to local midnight after its last, in the
operator's zone (Operator.time_zone, the zone that numbers its receipts); an operator without one
counts each location in that location's zone, as its receipt series does.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q

from stations.models import Location, Operator

from .zones import first_zone


def bounds(zone: ZoneInfo, start: date, end: date) -> tuple[datetime, datetime]:
    """[start, end] as instants: local midnight of `start` up to local midnight after `end`."""
    return (
        datetime.combine(start, time(), tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=zone),
    )


def month(year: int, number: int) -> tuple[date, date]:
    first = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return first, following - timedelta(days=1)


def within(operator: Operator, start: date, end: date, *, when: str, location: str) -> Q:
    """Rows whose `when` falls in [start, end] where `operator` counts; `location` leads to it."""
    if operator.time_zone:
        low, high = bounds(first_zone(operator.time_zone), start, end)
        return Q(**{f"{when}__gte": low, f"{when}__lt": high})
    found = Q(pk__in=[])
    zones = Location.objects.filter(operator=operator).values_list("time_zone", flat=True)
    for name in sorted(set(zones)):
        low, high = bounds(first_zone(name), start, end)
        found |= Q(**{f"{location}time_zone": name, f"{when}__gte": low, f"{when}__lt": high})
    return found
