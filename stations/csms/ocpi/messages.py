"""The OCPI 2.2.1 objects we receive, checked field by field before anything is stored.

No PyPI package validates these well (see docs/design.md §6), so each parser here checks what we use
and says which field is wrong. Peers differ in small ways we tolerate: numbers sent as floats or
strings, optional fields sent as explicit nulls, CommandResponse wrapped in a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime

from stations.identifiers import evse_id_valid, time_zone_valid
from stations.tariffs import TariffError, price_lines

from ..base import SignedData, SignedValue


class Invalid(ValueError):
    """An object we cannot use; the message names the field."""


SESSION_STATUSES = {"ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION"}
COMMAND_RESPONSES = {"ACCEPTED", "NOT_SUPPORTED", "REJECTED", "UNKNOWN_SESSION"}
COMMAND_RESULTS = {
    "ACCEPTED",
    "CANCELED_RESERVATION",
    "EVSE_OCCUPIED",
    "EVSE_INOPERATIVE",
    "FAILED",
    "NOT_SUPPORTED",
    "REJECTED",
    "TIMEOUT",
    "UNKNOWN_RESERVATION",
}
TOKEN_TYPES = {"AD_HOC_USER", "APP_USER", "OTHER", "RFID"}
WHITELISTS = {"ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"}
EVSE_STATUSES = {
    "AVAILABLE",
    "BLOCKED",
    "CHARGING",
    "INOPERATIVE",
    "OUTOFORDER",
    "PLANNED",
    "REMOVED",
    "RESERVED",
    "UNKNOWN",
}


def _object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise Invalid(f"{name}: an object is required")
    return value


def text(
    obj: dict, key: str, *, required: bool = True, max_length: int = 255, strict: bool = False
) -> str:
    """A string field. Numbers are taken for ids (some platforms send them so) unless `strict`:
    a field we store or show as text must be sent as a string."""
    value = obj.get(key)
    if value is None:
        if required:
            raise Invalid(f"{key}: required")
        return ""
    if not strict and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > max_length:
        raise Invalid(f"{key}: a string of at most {max_length} characters is required")
    return value


def ci_string(obj: dict, key: str, *, required: bool = True, max_length: int = 36) -> str:
    """An OCPI CiString id: printable ASCII only, as the specification defines it."""
    value = text(obj, key, required=required, max_length=max_length)
    if not all(" " <= c <= "~" for c in value):
        raise Invalid(f"{key}: printable ASCII characters only")
    return value


# Larger than any real charger or session, small enough for our decimal columns.
MAX_NUMBER = Decimal(10) ** 9


def number(
    obj: dict, key: str, *, required: bool = True, maximum: Decimal = MAX_NUMBER
) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise Invalid(f"{key}: required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"{key}: a number is required")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise Invalid(f"{key}: a number is required") from exc
    if not result.is_finite() or result < 0:
        raise Invalid(f"{key}: a number of zero or more is required")
    if result > maximum:
        raise Invalid(f"{key}: at most {maximum} is accepted")
    return result


def moment(obj: dict, key: str, *, required: bool = True) -> datetime | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise Invalid(f"{key}: required")
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible, e.g. February 30th
        parsed = None
    if parsed is None:
        raise Invalid(f"{key}: an RFC 3339 date-time is required")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # OCPI times are UTC


def choice(obj: dict, key: str, allowed: set[str]) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise Invalid(f"{key}: one of {', '.join(sorted(allowed))} is required")
    return value


def _price_incl_vat(obj: dict, key: str) -> Decimal | None:
    price = obj.get(key)
    if price is None:
        return None
    price = _object(price, key)
    number(price, "excl_vat")
    return number(price, "incl_vat", required=False)


def _display_text(value) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return str(value[0].get("text") or "")[:300]
    return str(value or "")[:300] if isinstance(value, str) else ""


# --- Sessions and CDRs -------------------------------------------------------------------------

# What our columns hold (kWh with 4 decimals in 10 digits; parking minutes in 10 digits, 2 decimals).
MAX_KWH = Decimal(999_999)
MAX_HOURS = Decimal(99_999)


@dataclass(frozen=True)
class Session:
    id: str
    status: str
    kwh: Decimal
    start: datetime
    end: datetime | None
    last_updated: datetime
    authorization_reference: str
    token_uid: str
    parking_hours: Decimal


def _parking_hours(periods) -> Decimal:
    if periods is None:
        return Decimal(0)
    if not isinstance(periods, list):
        raise Invalid("charging_periods: a list is required")
    hours = Decimal(0)
    for period in periods:
        period = _object(period, "charging_periods")
        moment(period, "start_date_time")
        dimensions = period.get("dimensions")
        if not isinstance(dimensions, list):
            raise Invalid("charging_periods: each period needs a list of dimensions")
        if hours > MAX_HOURS:
            raise Invalid(f"charging_periods: more than {MAX_HOURS} hours of parking")
        for dimension in dimensions:
            dimension = _object(dimension, "dimensions")
            text(dimension, "type")
            volume = number(dimension, "volume", maximum=MAX_KWH)
            if dimension["type"] == "PARKING_TIME":
                hours += volume
    return hours


def parse_session(data) -> Session:
    data = _object(data, "session")
    token = _object(data.get("cdr_token"), "cdr_token")
    _price_incl_vat(data, "total_cost")
    return Session(
        id=text(data, "id", max_length=36),
        status=choice(data, "status", SESSION_STATUSES),
        kwh=number(data, "kwh", maximum=MAX_KWH),
        start=moment(data, "start_date_time"),
        end=moment(data, "end_date_time", required=False),
        last_updated=moment(data, "last_updated"),
        authorization_reference=text(
            data, "authorization_reference", required=False, max_length=36
        ),
        token_uid=text(token, "uid", max_length=36),
        parking_hours=_parking_hours(data.get("charging_periods")),
    )


def merge_session_patch(stored: dict, patch) -> dict:
    """A Session PATCH: fields replace ours, except charging_periods, which are appended."""
    patch = _object(patch, "session patch")
    moment(patch, "last_updated")  # the specification requires it in every PATCH
    merged = {**stored, **{k: v for k, v in patch.items() if k != "charging_periods"}}
    if "charging_periods" in patch:
        if not isinstance(patch["charging_periods"], list):
            raise Invalid("charging_periods: a list is required")
        merged["charging_periods"] = [
            *(stored.get("charging_periods") or []),
            *patch["charging_periods"],
        ]
    return merged


@dataclass(frozen=True)
class Cdr:
    id: str
    country_code: str
    party_id: str
    start: datetime
    end: datetime
    session_id: str
    authorization_reference: str
    token_uid: str
    total_energy: Decimal
    total_parking_time: Decimal
    total_cost_incl_vat: Decimal | None
    credit: bool
    signed_data: SignedData | None = None


# OCPI 2.2.1 SignedData field sizes (string(36), string(512), string(5000), string(512)).
MAX_SIGNED_VALUES = 20


def parse_signed_data(value) -> SignedData | None:
    """A CDR's signed meter data. Never rejects the CDR: the session is billed whatever the meter
    data holds; what cannot be read is kept as a problem for the receipt to report."""
    if value is None:
        return None
    try:
        data = _object(value, "signed_data")
        values = data.get("signed_values")
        if not isinstance(values, list) or not values or len(values) > MAX_SIGNED_VALUES:
            raise Invalid(f"signed_values: a list of 1 to {MAX_SIGNED_VALUES} objects is required")
        signed_values = []
        for item in values:
            item = _object(item, "signed_values")
            signed_values.append(
                SignedValue(
                    nature=text(item, "nature", max_length=32, strict=True),
                    plain_data=text(
                        item, "plain_data", required=False, max_length=512, strict=True
                    ),
                    signed_data=text(item, "signed_data", max_length=5000, strict=True),
                )
            )
        return SignedData(
            encoding_method=text(data, "encoding_method", max_length=36, strict=True),
            public_key=text(data, "public_key", required=False, max_length=512, strict=True),
            values=tuple(signed_values),
            url=text(data, "url", required=False, max_length=512, strict=True),
        )
    except Invalid as exc:
        return SignedData(problem=str(exc))


def parse_cdr(data) -> Cdr:
    data = _object(data, "cdr")
    token = _object(data.get("cdr_token"), "cdr_token")
    _object(data.get("cdr_location"), "cdr_location")
    text(data, "currency", max_length=3)
    if data.get("total_cost") is None:
        raise Invalid("total_cost: required")
    credit = data.get("credit")
    if credit is not None and not isinstance(credit, bool):
        raise Invalid("credit: true or false is required")
    number(data, "total_time")
    moment(data, "last_updated")
    return Cdr(
        id=text(data, "id", max_length=39),
        country_code=text(data, "country_code", max_length=2),
        party_id=text(data, "party_id", max_length=3),
        start=moment(data, "start_date_time"),
        end=moment(data, "end_date_time"),
        session_id=text(data, "session_id", required=False, max_length=36),
        authorization_reference=text(
            data, "authorization_reference", required=False, max_length=36
        ),
        token_uid=text(token, "uid", max_length=36),
        total_energy=number(data, "total_energy", maximum=MAX_KWH),
        total_parking_time=number(data, "total_parking_time", required=False, maximum=MAX_HOURS)
        or Decimal(0),
        total_cost_incl_vat=_price_incl_vat(data, "total_cost"),
        credit=bool(credit),
        signed_data=parse_signed_data(data.get("signed_data")),
    )


# --- Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandAnswer:
    result: str
    message: str = ""
    timeout: int = 0  # CommandResponse only: seconds the CPO expects to need for the result


def parse_command_response(data) -> CommandAnswer:
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # some platforms wrap the object in a list
    data = _object(data, "CommandResponse")
    timeout = number(data, "timeout")
    return CommandAnswer(
        result=choice(data, "result", COMMAND_RESPONSES),
        message=_display_text(data.get("message")),
        timeout=min(int(timeout), 3600),
    )


def parse_command_result(data) -> CommandAnswer:
    data = _object(data, "CommandResult")
    return CommandAnswer(
        result=choice(data, "result", COMMAND_RESULTS), message=_display_text(data.get("message"))
    )


# --- Locations and Tariffs ---------------------------------------------------------------------


def check_connector(data) -> dict:
    data = _object(data, "connector")
    ci_string(data, "id", max_length=36)
    text(data, "standard", max_length=30, strict=True)
    text(data, "power_type", required=False, max_length=20, strict=True)
    for key in ("max_voltage", "max_amperage", "max_electric_power"):
        number(data, key, required=False)
    tariff_ids = data.get("tariff_ids")
    if tariff_ids is not None and not (
        isinstance(tariff_ids, list) and all(isinstance(t, str) for t in tariff_ids)
    ):
        raise Invalid("tariff_ids: a list of strings is required")
    return data


def check_evse(data) -> dict:
    data = _object(data, "evse")
    ci_string(data, "uid", max_length=36)
    # Drivers read it on the checkout page and staff in exports: eMI3 only (our fallback when it is
    # absent is the uid, which must then be one too).
    evse_id = data.get("evse_id") or data.get("uid")
    if not evse_id_valid(evse_id) or len(evse_id) > 48:
        raise Invalid("evse_id: an eMI3 EVSE ID is required, e.g. NL*ABC*E0001*1")
    choice(data, "status", EVSE_STATUSES)
    connectors = data.get("connectors")
    if not isinstance(connectors, list):
        raise Invalid("connectors: a list is required")
    for connector in connectors:
        check_connector(connector)
    return data


def check_location(data) -> dict:
    data = _object(data, "location")
    ci_string(data, "id", max_length=36)
    text(data, "name", required=False, max_length=255, strict=True)
    text(data, "address", max_length=45, strict=True)
    text(data, "city", max_length=45, strict=True)
    text(data, "postal_code", required=False, max_length=10, strict=True)
    text(data, "country", max_length=3, strict=True)
    time_zone = text(data, "time_zone", required=False, max_length=255, strict=True)
    if time_zone and not time_zone_valid(time_zone):
        raise Invalid("time_zone: an IANA time zone is required, e.g. Europe/Amsterdam")
    evses = data.get("evses")
    if evses is not None and not isinstance(evses, list):
        raise Invalid("evses: a list is required")
    for evse in evses or []:
        check_evse(evse)
    return data


def check_tariff(data) -> dict:
    data = _object(data, "tariff")
    ci_string(data, "id", max_length=36)
    text(data, "currency", max_length=3, strict=True)
    text(data, "type", required=False, max_length=30, strict=True)
    names = data.get("tariff_alt_text")
    if names is not None and not (
        isinstance(names, list)
        and all(isinstance(n, dict) and isinstance(n.get("text"), str) for n in names)
    ):
        raise Invalid("tariff_alt_text: a list of {language, text} objects is required")
    moment(
        data, "last_updated", required=False
    )  # required by the spec, missing in its own PUT example
    try:
        price_lines(data)
    except TariffError as exc:
        raise Invalid(f"elements: {exc}") from exc
    return data


def check_token(data) -> dict:
    data = _object(data, "token")
    text(data, "country_code", max_length=2)
    text(data, "party_id", max_length=3)
    text(data, "uid", max_length=36)
    choice(data, "type", TOKEN_TYPES)
    text(data, "contract_id", max_length=36)
    text(data, "issuer", max_length=64)
    if not isinstance(data.get("valid"), bool):
        raise Invalid("valid: true or false is required")
    choice(data, "whitelist", WHITELISTS)
    moment(data, "last_updated")
    return data
