"""Stations from a CSV file: the manual counterpart of the OCPI Locations sync.

One row per connector. A location is found by operator + name, an EVSE by `uid`, a connector by
(EVSE, connector_id), a tariff by operator + name; each is created or updated, nothing is deleted.
An EVSE found by its uid is updated in place, never replaced: the QR sticker signs its primary key,
so printed stickers stay valid through any number of imports.

Every row is checked before anything is written, and the errors are reported per row and column
(row numbers as a spreadsheet shows them: the header is row 1). A file with any error writes
nothing; a clean file is written in one transaction. Tariffs are built as OCPI 2.2.1 Tariff objects
and checked with the same code that prices them at checkout (`Tariff.clean` -> `price_lines`).
"""

from __future__ import annotations

import copy
import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import pycountry
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from directpay import csvsafe

from .identifiers import evse_id_valid, time_zone_valid
from .models import Connector, Evse, Location, Operator, Tariff

LOCATION_COLUMNS = ("location_name", "address", "postal_code", "city", "country", "time_zone")
EVSE_COLUMNS = ("evse_uid", "evse_id")
CONNECTOR_COLUMNS = ("connector_id", "standard", "power_type", "max_power_kw")
PRICE_COLUMNS = ("energy_price", "time_price_per_hour", "parking_price_per_hour", "session_fee")
TARIFF_COLUMNS = ("tariff_name", *PRICE_COLUMNS, "vat_percent", "currency")
COLUMNS = (*LOCATION_COLUMNS, *EVSE_COLUMNS, *CONNECTOR_COLUMNS, *TARIFF_COLUMNS)
OPTIONAL_COLUMNS = ("postal_code", *PRICE_COLUMNS, "vat_percent", "currency")

# Big enough for any real network, small enough to check in one request and show the errors.
MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5000

# OCPI dimension per price column. step_size 1 (Wh, second): billed exactly as measured.
_DIMENSION = {
    "energy_price": "ENERGY",
    "time_price_per_hour": "TIME",
    "parking_price_per_hour": "PARKING_TIME",
    "session_fee": "FLAT",
}
_NUMBER_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_STANDARDS = {
    **{s.value.lower(): s.value for s in Connector.Standard},
    **{s.label.lower(): s.value for s in Connector.Standard},
}


@dataclass(frozen=True)
class RowError:
    """One problem: `row` as a spreadsheet numbers it (header = 1), None for the file as a whole."""

    row: int | None
    column: str
    message: str


@dataclass
class ImportResult:
    """What an import did (counts per kind of row), or why it did nothing (`errors`)."""

    errors: list[RowError] = field(default_factory=list)
    rows: int = 0
    created: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        def counts(counter):
            kinds = (
                ("location", "locations"),
                ("EVSE", "EVSEs"),
                ("connector", "connectors"),
                ("tariff", "tariffs"),
            )
            return (
                ", ".join(
                    f"{counter[k]} {one if counter[k] == 1 else many}"
                    for k, (one, many) in zip(("location", "evse", "connector", "tariff"), kinds)
                    if counter[k]
                )
                or "none"
            )

        return (
            f"Imported {self.rows} rows. Created: {counts(self.created)}. Updated: {counts(self.updated)}. "
            f"Unchanged: {counts(self.unchanged)}."
        )


@dataclass
class _Row:
    line: int
    location: dict  # Location field -> value
    location_name: str
    evse_uid: str
    evse_id: str
    connector: dict  # connector_id, standard, power_type, max_power_kw
    tariff_name: str
    prices: dict | None  # price column -> Decimal; None: the row names an existing tariff
    vat: Decimal | None
    currency: str


# --------------------------------------------------------------------------- reading


def _read(file) -> tuple[str | None, RowError | None]:
    """The file's text, or a file-level error (too big, not UTF-8)."""
    raw = file if isinstance(file, bytes) else file.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        return None, RowError(
            None, "", f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB: split it."
        )
    try:
        return raw.decode("utf-8-sig"), None  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        return None, RowError(None, "", "The file is not UTF-8 text: save it as CSV UTF-8.")


def _records(text: str):
    """The header and the rows, split on ";" or "," (whichever the header line uses)."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


class _Cells:
    """One row's cells, checked column by column; problems go to `errors`."""

    def __init__(self, line: int, values: dict, errors: list):
        self.line, self.values, self.errors = line, values, errors

    def error(self, column: str, message: str):
        self.errors.append(RowError(self.line, column, message))

    def text(self, column: str, max_length: int, *, required: bool = True) -> str:
        value = self.values.get(column, "")
        if not value and required:
            self.error(column, "required")
        elif len(value) > max_length:
            self.error(column, f"longer than {max_length} characters")
        return value

    def number(
        self,
        column: str,
        *,
        decimals: int,
        maximum: Decimal,
        minimum: Decimal = Decimal(0),
        required: bool = True,
    ) -> Decimal | None:
        value = self.values.get(column, "")
        if not value:
            if required:
                self.error(column, "required")
            return None
        if re.fullmatch(r"-?[0-9]+,[0-9]+", value):
            return self.error(column, f"{value!r}: use a decimal point (0.45), not a comma")
        if not _NUMBER_RE.match(value):
            return self.error(column, f"{value!r} is not a number")
        number = Decimal(value)
        if number < minimum or number > maximum:
            return self.error(column, f"{value} is not between {minimum} and {maximum}")
        if -number.as_tuple().exponent > decimals:
            return self.error(column, f"{value} has more than {decimals} decimals")
        return number


def _parse_row(line: int, values: dict, operator: Operator, errors: list) -> _Row:
    cells = _Cells(line, values, errors)
    name = cells.text("location_name", 200)
    country = cells.text("country", 2).upper()
    if country and not pycountry.countries.get(alpha_2=country):
        cells.error(
            "country", f"{country!r} is not an ISO 3166-1 alpha-2 country code (NL, DE, ...)"
        )
    time_zone = cells.text("time_zone", 64)
    if time_zone and not time_zone_valid(time_zone):
        cells.error("time_zone", f"{time_zone!r} is not a time zone (Europe/Amsterdam, ...)")
    location = {
        "address": cells.text("address", 200),
        "postal_code": cells.text("postal_code", 20, required=False),
        "city": cells.text("city", 100),
        "country": country,
        "time_zone": time_zone,
    }

    evse_uid = cells.text("evse_uid", 36)
    evse_id = cells.text("evse_id", 48)
    if evse_id and not evse_id_valid(evse_id):
        cells.error("evse_id", f"{evse_id!r} is not an eMI3 EVSE ID (NL*ABC*E0001*1)")

    standard = values.get("standard", "")
    if standard and standard.lower() not in _STANDARDS:
        cells.error(
            "standard", f"{standard!r} is not one of {', '.join(Connector.Standard.values)}"
        )
    elif not standard:
        cells.error("standard", "required")
    power_type = values.get("power_type", "").upper()
    if power_type and power_type not in Connector.PowerType.values:
        cells.error(
            "power_type", f"{power_type!r} is not one of {', '.join(Connector.PowerType.values)}"
        )
    elif not power_type:
        cells.error("power_type", "required")
    connector = {
        "connector_id": cells.text("connector_id", 36),
        "standard": _STANDARDS.get(standard.lower(), ""),
        "power_type": power_type,
        "max_power_kw": cells.number(
            "max_power_kw", decimals=2, minimum=Decimal("0.1"), maximum=Decimal("99999.99")
        ),
    }

    tariff_name = cells.text("tariff_name", 200)
    given = [c for c in (*PRICE_COLUMNS, "vat_percent", "currency") if values.get(c)]
    prices = vat = None
    currency = values.get("currency", "").upper() or operator.currency
    if given:  # the row defines the tariff; with none of these it names an existing one
        prices = {
            c: cells.number(c, decimals=4, maximum=Decimal(10000), required=False)
            for c in PRICE_COLUMNS
            if values.get(c)
        }
        if not prices:
            cells.error(
                "energy_price",
                "give at least one price (or none of the price columns, "
                "to use an existing tariff of this name as it is)",
            )
        vat = cells.number("vat_percent", decimals=2, maximum=Decimal(100))
        if not pycountry.currencies.get(alpha_3=currency):
            cells.error("currency", f"{currency!r} is not an ISO 4217 currency code (EUR, ...)")
    return _Row(
        line, location, name, evse_uid, evse_id, connector, tariff_name, prices, vat, currency
    )


def _rows(text: str, operator: Operator, errors: list) -> list[_Row]:
    try:
        records = _records(text)
    except csv.Error as exc:
        errors.append(RowError(None, "", f"The file is not readable as CSV: {exc}."))
        return []
    if not records or not any(records[0]):
        errors.append(
            RowError(
                None, "", "The file is empty: it needs a header row and one row per connector."
            )
        )
        return []
    header = [h.strip().lower() for h in records[0]]
    for column in dict.fromkeys(header):
        if column and column not in COLUMNS:
            errors.append(
                RowError(1, column, f"unknown column; the columns are: {', '.join(COLUMNS)}")
            )
        elif column and header.count(column) > 1:
            errors.append(RowError(1, column, "the column appears more than once"))
    for column in COLUMNS:
        if column not in header and column not in OPTIONAL_COLUMNS:
            errors.append(RowError(1, column, "missing column"))
    if errors:
        return []
    data = [(i, r) for i, r in enumerate(records[1:], start=2) if any(v.strip() for v in r)]
    if not data:
        errors.append(RowError(None, "", "The file has a header but no rows."))
    if len(data) > MAX_ROWS:
        errors.append(
            RowError(
                None, "", f"The file has {len(data)} rows; at most {MAX_ROWS} at a time: split it."
            )
        )
        return []
    rows = []
    for line, record in data:
        if any(v.strip() for v in record[len(header) :]):
            errors.append(
                RowError(
                    line, "", f"{len(record)} values, but the header has {len(header)} columns"
                )
            )
            continue
        values = {h: v.strip() for h, v in zip(header, record) if h}
        rows.append(_parse_row(line, values, operator, errors))
    return rows


# --------------------------------------------------------------------------- checks across rows


def _agree(rows: list[_Row], key, values, what: str, errors: list):
    """Rows with the same `key` must give the same `values` (column -> value); else flag the later row."""
    first: dict = {}
    for row in rows:
        k = key(row)
        if k is None:
            continue
        if k not in first:
            first[k] = row
            continue
        for column, value in values(row).items():
            if values(first[k])[column] != value:
                errors.append(
                    RowError(
                        row.line, column, f"differs from row {first[k].line} for the same {what}"
                    )
                )
                break


def _check_rows(rows: list[_Row], errors: list):
    _agree(rows, lambda r: r.location_name or None, lambda r: r.location, "location", errors)
    _agree(
        rows,
        lambda r: r.evse_uid or None,
        lambda r: {"evse_id": r.evse_id, "location_name": r.location_name},
        "EVSE uid",
        errors,
    )
    _agree(rows, lambda r: r.evse_id or None, lambda r: {"evse_uid": r.evse_uid}, "EVSE ID", errors)
    _agree(
        rows,
        lambda r: r.tariff_name if r.prices is not None else None,
        lambda r: {
            **{c: r.prices.get(c) for c in PRICE_COLUMNS},
            "vat_percent": r.vat,
            "currency": r.currency,
        },
        "tariff",
        errors,
    )
    seen = {}
    for row in rows:
        key = (row.evse_uid, row.connector["connector_id"])
        if all(key) and key in seen:
            errors.append(
                RowError(
                    row.line, "connector_id", f"the same EVSE uid and connector as row {seen[key]}"
                )
            )
        seen.setdefault(key, row.line)


def _tariff_object(row: _Row, existing: Tariff | None) -> dict:
    """The OCPI 2.2.1 Tariff a row's price columns describe (keeping an existing tariff's id)."""
    components = [
        {
            "type": _DIMENSION[c],
            "price": format(row.prices[c].quantize(Decimal("0.0001")), "f"),
            "vat": float(row.vat),
            "step_size": 1,
        }
        for c in PRICE_COLUMNS
        if row.prices.get(c) is not None
    ]
    return {
        "id": (existing.ocpi.get("id") if existing and isinstance(existing.ocpi, dict) else None)
        or f"CSV-{row.tariff_name}"[:36],
        "currency": row.currency,
        "type": "AD_HOC_PAYMENT",
        "elements": [{"price_components": components}],
    }


def _existing(first_rows: dict, found, what: str, column: str, errors: list) -> tuple[dict, set]:
    """Existing rows by name, and the names that may not be used (ambiguous, or kept in step by OCPI)."""
    by_name: dict = {}
    for obj in found:
        by_name.setdefault(obj.name, []).append(obj)
    usable, refused = {}, set()
    for name, objs in by_name.items():
        line = first_rows[name].line
        if len(objs) > 1:
            errors.append(
                RowError(
                    line,
                    column,
                    f"{len(objs)} {what}s of this operator are called {name!r}: "
                    "rename one in the admin first",
                )
            )
        elif objs[0].ocpi_connection_id:
            errors.append(
                RowError(
                    line,
                    column,
                    f"this {what} is kept in step by the OCPI connection "
                    f"{objs[0].ocpi_connection}: change it in the CSMS",
                )
            )
        else:
            usable[name] = objs[0]
            continue
        refused.add(name)
    return usable, refused


def _check_database(rows: list[_Row], operator: Operator, errors: list) -> tuple[dict, dict, dict]:
    """Existing locations, tariffs and EVSEs the rows refer to; errors where the rows may not touch them."""
    first_of_location, first_of_tariff, defining = {}, {}, {}
    for row in rows:
        first_of_location.setdefault(row.location_name, row)
        first_of_tariff.setdefault(row.tariff_name, row)
        if row.prices is not None:
            defining.setdefault(row.tariff_name, row)
    locations, _ = _existing(
        first_of_location,
        Location.objects.filter(operator=operator, name__in=list(first_of_location)).select_related(
            "ocpi_connection"
        ),
        "location",
        "location_name",
        errors,
    )
    tariffs, refused = _existing(
        first_of_tariff,
        Tariff.objects.filter(operator=operator, name__in=list(first_of_tariff)).select_related(
            "ocpi_connection"
        ),
        "tariff",
        "tariff_name",
        errors,
    )
    for name, row in first_of_tariff.items():
        if name not in defining and name not in tariffs and name not in refused:
            errors.append(
                RowError(
                    row.line,
                    "tariff_name",
                    "this operator has no tariff of this name: give its prices in this row",
                )
            )
    for name, row in defining.items():
        if name in refused:
            continue
        existing = tariffs.get(name)
        tariff = (
            copy.copy(existing) if existing else Tariff(operator=operator, name=name)
        )  # not written yet
        tariff.ocpi = _tariff_object(row, existing)
        try:
            tariff.clean()  # what the admin checks, incl. price_lines (the checkout's pricing code)
        except ValidationError as exc:
            errors.append(RowError(row.line, "tariff_name", "; ".join(exc.messages)))

    evses = {
        e.uid: e
        for e in Evse.objects.filter(uid__in={r.evse_uid for r in rows}).select_related(
            "location__ocpi_connection"
        )
    }
    flagged = set()
    for row in rows:
        evse = evses.get(row.evse_uid)
        if evse is None or row.evse_uid in flagged:
            continue
        if evse.location.operator_id != operator.pk:
            flagged.add(row.evse_uid)
            errors.append(
                RowError(row.line, "evse_uid", "this EVSE uid belongs to another operator")
            )
        elif evse.location.ocpi_connection_id:
            flagged.add(row.evse_uid)
            errors.append(
                RowError(
                    row.line,
                    "evse_uid",
                    f"this EVSE is kept in step by the OCPI connection "
                    f"{evse.location.ocpi_connection}: change it in the CSMS",
                )
            )
    holders = dict(
        Evse.objects.filter(evse_id__in={r.evse_id for r in rows}).values_list("evse_id", "uid")
    )
    flagged = set()
    for row in rows:
        holder = holders.get(row.evse_id)
        if holder is not None and holder != row.evse_uid and row.evse_id not in flagged:
            flagged.add(row.evse_id)
            errors.append(
                RowError(row.line, "evse_id", f"already used by the EVSE with uid {holder!r}")
            )
    return locations, tariffs, evses


# --------------------------------------------------------------------------- writing


class _Writer:
    """Creates or updates rows, counting what it did; saves only what changed."""

    def __init__(self, result: ImportResult):
        self.result = result

    @staticmethod
    def _differs(obj, name: str, value) -> bool:
        if isinstance(value, models.Model):  # compare keys: no query per row for the related object
            return getattr(obj, f"{name}_id") != value.pk
        return getattr(obj, name) != value

    def save(self, kind: str, obj, model, values: dict):
        if obj is None:
            obj = model.objects.create(**values)
            self.result.created[kind] += 1
            return obj
        changed = [name for name, value in values.items() if self._differs(obj, name, value)]
        for name in changed:
            setattr(obj, name, values[name])
        if changed:
            obj.save(update_fields=changed)
            self.result.updated[kind] += 1
        else:
            self.result.unchanged[kind] += 1
        return obj


def _write(
    rows: list[_Row],
    operator: Operator,
    locations: dict,
    tariffs: dict,
    evses: dict,
    result: ImportResult,
):
    writer = _Writer(result)
    done_tariffs, done_locations, done_evses = {}, {}, {}
    connectors = {
        (c.evse_id, c.connector_id): c
        for c in Connector.objects.filter(evse__in=list(evses.values()))
    }
    for row in rows:
        name = row.tariff_name
        if name not in done_tariffs and row.prices is not None:
            existing = tariffs.get(name)
            done_tariffs[name] = writer.save(
                "tariff",
                existing,
                Tariff,
                {"operator": operator, "name": name, "ocpi": _tariff_object(row, existing)},
            )
    for row in rows:
        if row.tariff_name not in done_tariffs:  # named only: used as it is
            done_tariffs[row.tariff_name] = tariffs[row.tariff_name]
        if row.location_name not in done_locations:
            done_locations[row.location_name] = writer.save(
                "location",
                locations.get(row.location_name),
                Location,
                {"operator": operator, "name": row.location_name, **row.location},
            )
        if row.evse_uid not in done_evses:
            done_evses[row.evse_uid] = writer.save(
                "evse",
                evses.get(row.evse_uid),
                Evse,
                {
                    "uid": row.evse_uid,
                    "evse_id": row.evse_id,
                    "location": done_locations[row.location_name],
                },
            )
        evse = done_evses[row.evse_uid]
        writer.save(
            "connector",
            connectors.get((evse.pk, row.connector["connector_id"])),
            Connector,
            {**row.connector, "evse": evse, "tariff": done_tariffs[row.tariff_name]},
        )


# --------------------------------------------------------------------------- the service


def import_stations(*, operator: Operator, file) -> ImportResult:
    """Create or update the operator's locations, EVSEs, connectors and tariffs from a CSV file.

    `file` is an uploaded file (or any binary file object, or bytes). All or nothing: with any
    error the result lists them all and nothing is written.
    """
    result = ImportResult()
    _run(operator, file, result)
    if result.errors:
        result.created, result.updated, result.unchanged, result.rows = (
            Counter(),
            Counter(),
            Counter(),
            0,
        )
    result.errors.sort(
        key=lambda e: (e.row or 0, COLUMNS.index(e.column) if e.column in COLUMNS else -1)
    )
    return result


def _run(operator: Operator, file, result: ImportResult):
    text, error = _read(file)
    if error:
        result.errors.append(error)
        return
    rows = _rows(text, operator, result.errors)
    if result.errors:
        return
    _check_rows(rows, result.errors)
    try:
        with transaction.atomic():
            locations, tariffs, evses = _check_database(rows, operator, result.errors)
            if not result.errors:
                _write(rows, operator, locations, tariffs, evses, result)
                result.rows = len(rows)
    except IntegrityError:  # someone changed the same stations meanwhile: all rolled back
        result.errors.append(
            RowError(
                None, "", "The stations changed while importing; nothing was imported. Try again."
            )
        )


# --------------------------------------------------------------------------- the template

TEMPLATE_ROWS = [
    [
        "Central Station Garage",
        "Stationsplein 1",
        "1012 AB",
        "Amsterdam",
        "NL",
        "Europe/Amsterdam",
        "NL-ABC-E0001-1",
        "NL*ABC*E0001*1",
        "1",
        "IEC_62196_T2",
        "AC_3_PHASE",
        "22",
        "AC ad hoc",
        "0.45",
        "",
        "",
        "",
        "21",
        "EUR",
    ],
    [
        "Central Station Garage",
        "Stationsplein 1",
        "1012 AB",
        "Amsterdam",
        "NL",
        "Europe/Amsterdam",
        "NL-ABC-E0002-1",
        "NL*ABC*E0002*1",
        "1",
        "IEC_62196_T2_COMBO",
        "DC",
        "150",
        "DC ad hoc",
        "0.59",
        "",
        "6.00",
        "1.00",
        "21",
        "EUR",
    ],
    [
        "Central Station Garage",
        "Stationsplein 1",
        "1012 AB",
        "Amsterdam",
        "NL",
        "Europe/Amsterdam",
        "NL-ABC-E0002-1",
        "NL*ABC*E0002*1",
        "2",
        "CHADEMO",
        "DC",
        "50",
        "DC ad hoc",
        "0.59",
        "",
        "6.00",
        "1.00",
        "21",
        "EUR",
    ],
]


def template_csv() -> bytes:
    """The downloadable template: the header and example rows that import cleanly.

    UTF-8 with a BOM, so that Excel opens accented names correctly (the import accepts both).
    """
    out = io.StringIO(newline="")
    writer = csvsafe.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(TEMPLATE_ROWS)
    return ("\ufeff" + out.getvalue()).encode("utf-8")
