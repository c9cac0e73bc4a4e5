"""Locations and Tariffs from a CPO: pulled on a schedule, pushed by PUT/PATCH, kept in our tables.

The CPO's objects are the truth for its chargers: each Location is kept as the CPO last sent it
(`Location.ocpi`), and every change, pulled or pushed, is applied by merging into that object and
writing our rows from the result. The EVSE `uid` is the stable key, so an EVSE keeps its primary
key, and the QR sticker that signs it stays valid, across any number of syncs. Tariffs of type
AD_HOC_PAYMENT are preferred for a connector; a connector with no tariff we can price is left out
(it cannot be paid for) and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

import pycountry
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from stations.models import Connector, Evse, Location, OcpiConnection, Tariff

from ..base import CsmsError
from . import client, messages

log = logging.getLogger(__name__)

EVSE_STATUS = {
    "AVAILABLE": Evse.Status.AVAILABLE,
    "CHARGING": Evse.Status.CHARGING,
    "BLOCKED": Evse.Status.CHARGING,
    "RESERVED": Evse.Status.CHARGING,
    "INOPERATIVE": Evse.Status.OUT_OF_ORDER,
    "OUTOFORDER": Evse.Status.OUT_OF_ORDER,
    "PLANNED": Evse.Status.OUT_OF_ORDER,
    "REMOVED": Evse.Status.OUT_OF_ORDER,  # kept (its sessions and sticker refer to it), never payable
    "UNKNOWN": Evse.Status.UNKNOWN,
}
TARIFF_PREFERENCE = ("AD_HOC_PAYMENT", None, "REGULAR")
MAX_KW = Decimal("99999.99")  # what Connector.max_power_kw holds


class UnknownLocation(LookupError):
    pass


@dataclass
class Report:
    """What a sync or push did, and what it had to leave out (for the log and the admin)."""

    locations: int = 0
    evses: int = 0
    tariffs: int = 0
    skipped: list[str] = field(default_factory=list)

    def __str__(self):
        text = f"{self.locations} locations, {self.evses} EVSEs, {self.tariffs} tariffs"
        return f"{text}; left out: {'; '.join(self.skipped)}" if self.skipped else text


def _operator(connection: OcpiConnection):
    if connection.operator is None:
        raise messages.Invalid(
            f"the connection {connection.name} has no operator set: ask staff to set it"
        )
    return connection.operator


def _country(alpha3: str) -> str:
    country = pycountry.countries.get(alpha_3=str(alpha3).upper())
    if country is None:
        raise messages.Invalid(f"country: {alpha3!r} is not an ISO 3166-1 alpha-3 code")
    return country.alpha_2


def _power_kw(connector: dict) -> Decimal | None:
    watts = messages.number(connector, "max_electric_power", required=False)
    if watts is None:
        volts = messages.number(connector, "max_voltage", required=False)
        amps = messages.number(connector, "max_amperage", required=False)
        if volts is None or amps is None:
            return None
        # For three-phase AC, max_voltage is line to neutral: three times V x A.
        watts = volts * amps * (3 if connector.get("power_type") == "AC_3_PHASE" else 1)
    kw = (watts / 1000).quantize(Decimal("0.01"))
    if kw > MAX_KW:
        raise messages.Invalid(f"max_electric_power: more than {MAX_KW} kW")
    return max(kw, Decimal("0.1"))


def _tariff_for(connection: OcpiConnection, tariff_ids) -> Tariff | None:
    tariffs = list(Tariff.objects.filter(ocpi_connection=connection, ocpi_id__in=tariff_ids or []))
    for kind in TARIFF_PREFERENCE:
        if match := next((t for t in tariffs if t.ocpi.get("type") == kind), None):
            return match
    return None


def _apply(connection: OcpiConnection, data: dict, report: Report) -> Location:
    """Write our rows from a whole OCPI Location (already checked)."""
    location, _ = Location.objects.update_or_create(
        ocpi_connection=connection,
        ocpi_id=data["id"],
        defaults={
            "operator": _operator(connection),
            "name": (data.get("name") or data["address"])[:200],
            "address": data["address"],
            "postal_code": data.get("postal_code") or "",
            "city": data["city"],
            "country": _country(data["country"]),
            "time_zone": data.get("time_zone") or settings.TIME_ZONE,
            "ocpi": data,
        },
    )
    report.locations += 1
    for evse_data in data.get("evses") or []:
        uid = evse_data["uid"]
        evse_id = evse_data.get("evse_id") or uid
        evse = Evse.objects.select_related("location").filter(uid=uid).first()
        if evse and evse.location.ocpi_connection_id != connection.pk:
            report.skipped.append(f"EVSE {uid}: the uid belongs to another network")
            continue
        if Evse.objects.filter(evse_id=evse_id).exclude(uid=uid).exists():
            report.skipped.append(f"EVSE {uid}: EVSE ID {evse_id} is already used by another EVSE")
            continue
        evse, _ = Evse.objects.update_or_create(
            uid=uid,
            defaults={
                "location": location,
                "evse_id": evse_id,
                "status": EVSE_STATUS[evse_data["status"]],
            },
        )
        report.evses += 1
        for connector_data in evse_data["connectors"]:
            _apply_connector(connection, evse, connector_data, report)
    return location


def _apply_connector(connection: OcpiConnection, evse: Evse, data: dict, report: Report) -> None:
    connector = Connector.objects.filter(evse=evse, connector_id=data["id"]).first()
    tariff = _tariff_for(connection, data.get("tariff_ids"))
    power = _power_kw(data)
    name = f"EVSE {evse.uid} connector {data['id']}"
    if connector is None and (tariff is None or power is None or not data.get("power_type")):
        missing = "an ad hoc tariff we know" if tariff is None else "power_type and power"
        report.skipped.append(f"{name}: no {missing}")
        return
    connector = connector or Connector(evse=evse, connector_id=data["id"])
    connector.standard = data["standard"]
    connector.power_type = data.get("power_type") or connector.power_type
    connector.max_power_kw = power or connector.max_power_kw
    if tariff is None:  # keep charging at the tariff we had rather than at no price
        report.skipped.append(f"{name}: no ad hoc tariff we know; kept {connector.tariff}")
    connector.tariff = tariff or connector.tariff
    connector.save()


# --- pushes (the CPO's PUT and PATCH) -------------------------------------------------------


def location_push(
    *,
    connection: OcpiConnection,
    location_id: str,
    evse_uid: str | None = None,
    connector_id: str | None = None,
    data,
    patch: bool,
) -> Report:
    """A PUT or PATCH of a Location, one of its EVSEs, or one connector."""
    if not isinstance(data, dict):
        raise messages.Invalid("an object is required")
    report = Report()
    with transaction.atomic():
        location = (
            Location.objects.select_for_update()
            .filter(ocpi_connection=connection, ocpi_id__iexact=location_id)
            .first()
        )
        if location is None and (patch or evse_uid):
            raise UnknownLocation(location_id)
        stored = location.ocpi if location else {}
        if evse_uid is None:
            whole = {**stored, **data} if patch else data
        else:
            whole = _replace_child(stored, evse_uid, connector_id, data, patch=patch)
        if (
            not patch
            and evse_uid is None
            and str(data.get("id", "")).lower() != location_id.lower()
        ):
            raise messages.Invalid("id: differs from the location id in the URL")
        _apply(connection, messages.check_location(whole), report)
    return report


def find_child(children, key: str, ident: str) -> dict | None:
    return next((c for c in children or [] if str(c.get(key, "")).lower() == ident.lower()), None)


def _put_child(children, key: str, ident: str, data: dict, *, patch: bool, what: str) -> list:
    """The list with the child whose `key` is `ident` replaced (PUT), merged (PATCH) or added (PUT)."""
    children = list(children or [])
    current = find_child(children, key, ident)
    if current is None:
        if patch:
            raise UnknownLocation(f"{what} {ident}")
        return [*children, data]
    children[children.index(current)] = {**current, **data} if patch else data
    return children


def _replace_child(
    stored: dict, evse_uid: str, connector_id: str | None, data: dict, *, patch: bool
) -> dict:
    evses = stored.get("evses")
    if connector_id is None:
        return {
            **stored,
            "evses": _put_child(evses, "uid", evse_uid, data, patch=patch, what="EVSE"),
        }
    evse = find_child(evses, "uid", evse_uid)
    if evse is None:
        raise UnknownLocation(f"EVSE {evse_uid}")
    connectors = _put_child(
        evse.get("connectors"), "id", connector_id, data, patch=patch, what="connector"
    )
    return {
        **stored,
        "evses": _put_child(
            evses, "uid", evse_uid, {**evse, "connectors": connectors}, patch=True, what="EVSE"
        ),
    }


def tariff_push(*, connection: OcpiConnection, tariff_id: str, data) -> Report:
    """A PUT of a Tariff. Connectors waiting for it (pushed before it) get it."""
    data = messages.check_tariff(data)
    if str(data["id"]).lower() != tariff_id.lower():
        raise messages.Invalid("id: differs from the tariff id in the URL")
    report = Report()
    with transaction.atomic():
        _, created = _apply_tariff(connection, data, report)
        if created:
            for location in Location.objects.filter(ocpi_connection=connection).exclude(ocpi={}):
                _apply(connection, location.ocpi, report)
    return report


def _apply_tariff(connection: OcpiConnection, data: dict, report: Report) -> tuple[Tariff, bool]:
    names = data.get("tariff_alt_text") or []
    name = (
        next((t.get("text") for t in names if isinstance(t, dict) and t.get("text")), "")
        or f"Tariff {data['id']}"
    )
    tariff, created = Tariff.objects.update_or_create(
        ocpi_connection=connection,
        ocpi_id=data["id"],
        defaults={"operator": _operator(connection), "name": name[:200], "ocpi": data},
    )
    report.tariffs += 1
    return tariff, created


def tariff_delete(*, connection: OcpiConnection, tariff_id: str) -> bool:
    """Remove a tariff no connector uses. One in use stays (a connector needs a price); staff see it logged."""
    tariff = Tariff.objects.filter(ocpi_connection=connection, ocpi_id__iexact=tariff_id).first()
    if tariff is None:
        return False
    if tariff.connectors.exists():
        log.warning(
            "ocpi: %s deleted tariff %s, which connectors still use: kept",
            connection.name,
            tariff_id,
        )
        return True
    tariff.delete()
    return True


# --- the scheduled pull -------------------------------------------------------------------------


def _pages(connection: OcpiConnection, url: str, params: dict):
    """Every object of a paginated OCPI list, following the Link headers."""
    seen = set()
    while url and url not in seen:
        seen.add(url)
        answer = client.call(connection, "GET", url, params=params)
        items = client.data(answer)
        if not isinstance(items, list):
            raise CsmsError(f"{url} did not answer with a list", permanent=True)
        yield from items
        url, params = (
            answer.links.get("next", {}).get("url"),
            None,
        )  # the next link carries the query


def syncable(connections):
    """Connections a pull can file stations for: connected, with an operator to sell on them."""
    return connections.filter(state=OcpiConnection.State.CONNECTED, operator__isnull=False)


def sync_pull(*, connection_id: int) -> Report:
    """Pull Tariffs, then Locations, changed since the last complete pull."""
    connection = OcpiConnection.objects.get(pk=connection_id)
    started = timezone.now()
    params = {"limit": settings.OCPI_PAGE_LIMIT}
    if connection.synced_at:
        params["date_from"] = connection.synced_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    report = Report()
    try:
        _operator(connection)
        for module, apply in (("tariffs", _apply_tariff), ("locations", _apply)):
            url = connection.endpoint(module, "SENDER")
            if not url:
                continue
            for item in _pages(connection, url, dict(params)):
                check = messages.check_tariff if module == "tariffs" else messages.check_location
                try:
                    with transaction.atomic():
                        apply(connection, check(item), report)
                except messages.Invalid as exc:
                    # One bad object is left out; the rest of the pull goes on.
                    what = f"{module[:-1]} {str(item.get('id'))[:36] if isinstance(item, dict) else '?'}"
                    log.warning("ocpi: pull from %s left out %s: %s", connection.name, what, exc)
                    report.skipped.append(f"{what}: {exc}")
    except (CsmsError, messages.Invalid) as exc:
        OcpiConnection.objects.filter(pk=connection.pk).update(last_error=str(exc)[:300])
        raise
    OcpiConnection.objects.filter(pk=connection.pk).update(
        synced_at=started, last_error=str(report)[:300] if report.skipped else ""
    )
    log.info("ocpi: pulled from %s: %s", connection.name, report)
    return report
