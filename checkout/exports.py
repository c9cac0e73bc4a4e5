"""The bookkeeping CSV: receipts and credit notes, one row each, streamed with flat memory.

Layout (README "Finance"): the columns of COLUMNS in that order, then a `net <rate>%` and
`vat <rate>%` pair per VAT rate found in the exported documents, rates ascending. Amounts are
decimal strings with the currency's exponent ("15.77", never cents). Credit-note rows carry
negative net, VAT and gross, so a column's sum over all rows is what was earned after refunds;
`refunded` on a receipt row is what its payment has had refunded so far (informational: the
credit-note rows are the documents). Times are in the location's zone, with their offset.

Rows come from `.values()` over a server-side cursor (`.iterator(chunk_size=...)`): only the
columns written are read (never the PDF; of the document JSON only its `vat_lines`), and the
response yields a chunk every CHUNK rows, so memory stays flat and bytes keep flowing.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connections, transaction
from django.db.models import QuerySet

from directpay import csvsafe

from .currencies import formatter
from .models import CreditNote, Receipt
from .zones import first_zone

CHUNK = 2000

RECEIPT, CREDIT_NOTE = "receipt", "credit note"


class Row:
    """What a column's formatter knows about the document besides its own value.

    One per kind of document, updated for each row (no object per row: a million rows).
    """

    __slots__ = ("kind", "money", "sign", "zone")

    def __init__(self, kind: str):
        self.kind = kind
        self.sign = -1 if kind == CREDIT_NOTE else 1
        self.zone: ZoneInfo | None = None
        self.money = None  # the currency's formatter (currencies.formatter)


def blank(value, row: Row) -> str:
    return ""


def amount(value, row: Row) -> str:
    return "" if value is None else row.money(row.sign * value)


def local_time(value, row: Row) -> str:
    return value.astimezone(row.zone).isoformat() if value else ""


def local_date(value, row: Row) -> str:
    return value.astimezone(row.zone).date().isoformat() if value else ""


def both(path: str) -> tuple[str, str]:
    """A field of the document itself (receipt and credit note alike)."""
    return (path, path)


def paid(path: str) -> tuple[str, str]:
    """A field reached from the document's payment (a credit note's through its refund)."""
    return (f"payment__{path}", f"refund__payment__{path}")


@dataclass(frozen=True)
class Column:
    header: str
    # The field read: (path from a Receipt, path from a CreditNote); None: not on that kind.
    source: tuple[str | None, str | None] | None
    # Formats the value for the row; None: written as read (the csv module writes None as "").
    show: Callable | None = None


COLUMNS = [
    Column("number", both("number")),
    Column("type", None, lambda value, row: row.kind),
    Column("corrects_receipt", (None, "receipt__number")),
    Column("issue_date", both("issued_at"), local_date),
    Column("issued_at", both("issued_at"), local_time),
    Column("time_zone", None, lambda value, row: row.zone.key),
    Column("session_started_at", paid("session__started_at"), local_time),
    Column("session_ended_at", paid("session__ended_at"), local_time),
    Column("operator", both("operator__legal_name")),
    Column("operator_vat_id", both("operator__vat_id")),
    Column("location", paid("session__evse__location__name")),
    Column("country", paid("session__evse__location__country")),
    Column("evse_id", paid("session__evse__evse_id")),
    Column("kwh", (paid("session__kwh")[0], None)),
    Column("currency", paid("currency")),
    Column("net", both("total_excl_vat"), amount),
    Column("vat", both("vat_amount"), amount),
    Column("gross", both("total_incl_vat"), amount),
    Column("refunded", (paid("amount_refunded")[0], None), amount),
    Column("payment_intent", paid("stripe_payment_intent_id")),
    # card (Stripe) or terminal (settled by the charger's own terminal; its PSP's reference).
    Column("method", paid("method")),
    Column("psp_reference", paid("psp_reference")),
    # What Stripe booked for the capture (checkout/reconciliation.py keeps them right).
    Column("stripe_charge_id", (paid("stripe_charge_id")[0], None)),
    Column("stripe_fee", (paid("stripe_fee")[0], None), amount),
]

# Read for every row first, not printed as such: the zone and currency its columns are shown in,
# and the per-rate split (only the `vat_lines` key of the document JSON).
_CONTEXT = {
    "x_location_zone": paid("session__evse__location__time_zone"),
    "x_session_zone": paid("session__time_zone"),
    "x_currency": paid("currency"),
    "x_vat_lines": both("document__vat_lines"),
}


def rate_label(rate) -> str:
    return format(Decimal(str(rate)).normalize(), "f")


def header(rates: list[str]) -> list[str]:
    return [c.header for c in COLUMNS] + [f"{p} {rate}%" for rate in rates for p in ("net", "vat")]


def _select(qs: QuerySet, kind: str) -> tuple[QuerySet, list[tuple[int, Callable]]]:
    """`qs` reduced to the fields written (context first), and per column: (position, shown by)."""
    side = 0 if kind == RECEIPT else 1
    fields = [paths[side] for paths in _CONTEXT.values()]
    plan = []
    for column in COLUMNS:
        path = column.source[side] if column.source else None
        if column.source and path is None:
            plan.append((0, blank))  # not on this kind of document
            continue
        if path is not None and path not in fields:
            fields.append(path)
        plan.append((fields.index(path) if path else 0, column.show))
    selected = qs.order_by("operator", "year", "sequence").values_list(*fields)
    return selected, plan


def rows(qs: QuerySet, kind: str, rates: list[str]) -> Iterator[list]:
    selected, plan = _select(qs, kind)
    row = Row(kind)
    zones: dict[tuple[str, str], ZoneInfo] = {}
    labels: dict[str, str] = {}
    for values in selected.iterator(chunk_size=CHUNK):
        location_zone, session_zone, currency, vat_lines = values[: len(_CONTEXT)]
        names = (location_zone, session_zone)
        row.zone = zones.get(names) or zones.setdefault(names, first_zone(*names))
        row.money = formatter(currency)
        out = [values[i] if show is None else show(values[i], row) for i, show in plan]
        if rates:
            per_rate = {}
            for line in vat_lines or ():
                raw = line["rate"]
                label = labels.get(raw) or labels.setdefault(raw, rate_label(raw))
                per_rate[label] = line
            for rate in rates:
                line = per_rate.get(rate)
                out += [amount(line["net"], row), amount(line["vat"], row)] if line else ["", ""]
        yield out


def rates_present(*querysets: QuerySet) -> list[str]:
    """The VAT rates of the exported documents, ascending: one pair of columns each."""
    found: set[str] = set()
    for qs in querysets:
        qs = qs.order_by().values_list("document__vat_lines", flat=True)
        connection = connections[qs.db]
        if connection.vendor == "postgresql":
            # Found by the database in one pass: nothing but the distinct rates comes back.
            sql, params = qs.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT line->>'rate' FROM (" + sql + ") AS docs(lines) "
                    "CROSS JOIN LATERAL jsonb_array_elements(docs.lines) AS line",
                    params,
                )
                found.update(rate for (rate,) in cursor.fetchall() if rate is not None)
        else:
            for lines in qs.iterator(chunk_size=CHUNK):
                found.update(str(line["rate"]) for line in lines or [])
    return sorted({rate_label(r) for r in found}, key=Decimal)


def csv_chunks(receipts: QuerySet, notes: QuerySet | None) -> Iterator[str]:
    """The CSV text, CHUNK rows at a time: receipts by number, then credit notes by number.

    One read-only transaction: PostgreSQL's server-side cursor streams inside it (outside one,
    Django declares it WITH HOLD, and the database builds the whole result before the first row).
    """
    sources = [(receipts, RECEIPT)] + ([(notes, CREDIT_NOTE)] if notes is not None else [])
    with transaction.atomic(using=receipts.db):
        rates = rates_present(*(qs for qs, _ in sources))
        buffer = io.StringIO()
        writer = csvsafe.writer(buffer)  # names and EVSE ids come from outside: no formulas
        writer.writerow(header(rates))
        written = 0
        for qs, kind in sources:
            for row in rows(qs, kind, rates):
                writer.writerow(row)
                written += 1
                if written % CHUNK == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()


def notes_of(receipts: QuerySet) -> QuerySet:
    """The credit notes that correct the given receipts (the admin action's export)."""
    return CreditNote.objects.filter(receipt__in=receipts.values("pk"))


def receipts_by_pk(receipts: QuerySet) -> QuerySet:
    """A plain queryset over the same receipts (a changelist's carries joins and ordering)."""
    return Receipt.objects.filter(pk__in=receipts.values("pk"))
