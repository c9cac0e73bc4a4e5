"""The monthly summary finance reconciles: per operator and location, what was billed and given back.

A month is the operator's (checkout/periods.py): receipts, credit notes and disputes are counted
in the month their date falls in, in the operator's zone (else the location's). Amounts stay in
minor units here; the admin and the CSV show them as money. One line per operator, location and
currency; receipts give sessions, kWh, net, VAT per rate, gross and shortfalls; credit notes
issued in the month give refunds; disputes opened in the month give disputes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import F

from directpay import csvsafe
from stations.models import Operator

from . import periods
from .currencies import decimal_str
from .exports import rate_label
from .models import CreditNote, Dispute, Receipt

WHERE = {
    Receipt: "payment__session__evse__location",
    CreditNote: "refund__payment__session__evse__location",
    Dispute: "payment__session__evse__location",
}


@dataclass
class Line:
    operator: str
    location: str
    country: str
    currency: str
    sessions: int = 0
    kwh: Decimal = Decimal(0)
    net: int = 0
    vat: int = 0
    gross: int = 0
    per_rate: dict[str, list[int]] = field(default_factory=dict)  # rate -> [net, VAT]
    shortfall: int = 0
    refunds: int = 0
    refunds_net: int = 0
    refunds_vat: int = 0
    credit_notes: int = 0
    disputes: int = 0
    disputed: int = 0
    stripe_fees: int = 0  # Stripe's fees on the captures and refunds (reconciliation's fields)


@dataclass
class Summary:
    year: int
    month: int
    lines: list[Line]
    rates: list[str]

    COLUMNS = (
        ("Sessions", "sessions"),
        ("kWh", "kwh"),
        ("Net", "net"),
        ("VAT", "vat"),
        ("Gross", "gross"),
        ("Refunds", "refunds"),
        ("Refunds net", "refunds_net"),
        ("Refunds VAT", "refunds_vat"),
        ("Credit notes", "credit_notes"),
        ("Disputes", "disputes"),
        ("Disputed", "disputed"),
        ("Shortfalls", "shortfall"),
        ("Stripe fees", "stripe_fees"),
    )
    MONEY = frozenset(
        {
            "net",
            "vat",
            "gross",
            "refunds",
            "refunds_net",
            "refunds_vat",
            "disputed",
            "shortfall",
            "stripe_fees",
        }
    )

    def header(self) -> list[str]:
        head = ["Operator", "Location", "Country", "Currency"] + [h for h, _ in self.COLUMNS]
        return head + [f"{p} {rate}%" for rate in self.rates for p in ("Net", "VAT")]

    def table(self) -> Iterator[list[str]]:
        """Each line as the admin and the CSV show it (money in major units)."""
        for line in self.lines:
            cells = [line.operator, line.location, line.country, line.currency]
            for _, name in self.COLUMNS:
                value = getattr(line, name) if name else None
                if value is None:
                    cells.append("")
                elif name in self.MONEY:
                    cells.append(decimal_str(value, line.currency))
                else:
                    cells.append(str(value))
            for rate in self.rates:
                net, tax = line.per_rate.get(rate, (0, 0))
                cells += [decimal_str(net, line.currency), decimal_str(tax, line.currency)]
            yield cells

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csvsafe.writer(buffer)  # operator and location names come from outside
        writer.writerow(self.header())
        writer.writerows(self.table())
        return buffer.getvalue()


def month_summary(year: int, month: int) -> Summary:
    start, end = periods.month(year, month)
    lines: dict[tuple, Line] = {}

    def line(values) -> Line:
        key = (values["x_operator"], values["x_location"], values["x_currency"])
        if key not in lines:
            lines[key] = Line(
                operator=values["x_operator"],
                location=values["x_location"],
                country=values["x_country"],
                currency=values["x_currency"],
            )
        return lines[key]

    def rows(model, operator, pay: str, *fields: str):
        where = WHERE[model]
        # Disputes have no operator of their own: the location's is the one who sold.
        seller = "operator" if model is not Dispute else f"{where}__operator"
        when = "issued_at" if model is not Dispute else "created_at"
        qs = model.objects.filter(
            periods.within(operator, start, end, when=when, location=f"{where}__"),
            **{seller: operator},
        )
        return (
            qs.order_by("pk")
            .values(
                *fields,
                x_operator=F(f"{seller}__name"),
                x_location=F(f"{where}__name"),
                x_country=F(f"{where}__country"),
                x_currency=F(f"{pay}currency"),
            )
            .iterator(chunk_size=2000)
        )

    for operator in Operator.objects.order_by("name"):
        receipts = rows(
            Receipt,
            operator,
            "payment__",
            "total_excl_vat",
            "vat_amount",
            "total_incl_vat",
            "document__vat_lines",
            "payment__session__kwh",
            "payment__shortfall",
            "payment__stripe_fee",
        )
        for r in receipts:
            summed = line(r)
            summed.sessions += 1
            summed.kwh += r["payment__session__kwh"] or 0
            summed.net += r["total_excl_vat"]
            summed.vat += r["vat_amount"]
            summed.gross += r["total_incl_vat"]
            summed.shortfall += r["payment__shortfall"]
            summed.stripe_fees += r["payment__stripe_fee"] or 0
            for vat_line in r["document__vat_lines"] or []:
                pair = summed.per_rate.setdefault(rate_label(vat_line["rate"]), [0, 0])
                pair[0] += vat_line["net"]
                pair[1] += vat_line["vat"]
        notes = rows(
            CreditNote,
            operator,
            "refund__payment__",
            "total_incl_vat",
            "total_excl_vat",
            "vat_amount",
            "refund__stripe_fee",
        )
        for n in notes:
            summed = line(n)
            summed.credit_notes += 1
            summed.refunds += n["total_incl_vat"]
            summed.refunds_net += n["total_excl_vat"]
            summed.refunds_vat += n["vat_amount"]
            summed.stripe_fees += n["refund__stripe_fee"] or 0
        disputes = rows(Dispute, operator, "payment__", "amount")
        for d in disputes:
            summed = line(d)
            summed.disputes += 1
            summed.disputed += d["amount"]
    rates = sorted({rate for ln in lines.values() for rate in ln.per_rate}, key=Decimal)
    return Summary(year=year, month=month, lines=list(lines.values()), rates=rates)
