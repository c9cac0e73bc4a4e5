"""One money rule for documents (design §4 rule 9): what a receipt prints, computed from the charge.

Pure (no Django). Gross first: the amount actually charged is split across the priced components
in proportion to their priced gross (largest remainder, so the parts add up to the cent), then per
VAT rate net = round_half_up(gross / (1 + rate)) and VAT = gross - net. Printed lines, net, VAT
and total therefore add up to the cent and equal the charge, whatever capped or lowered it.
One rounding rule everywhere: Decimal.quantize(ROUND_HALF_UP), and money is formatted from
integer cents (never `:.2f`, which rounds half to even).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

_HUNDRED = Decimal(100)


def round_half_up(value: Decimal, exp: str = "1") -> Decimal:
    return Decimal(value).quantize(Decimal(exp), rounding=ROUND_HALF_UP)


def cents(amount) -> int:
    """A major-unit amount (Decimal or numeric string) as integer cents, half-up."""
    return int(round_half_up(Decimal(str(amount)) * _HUNDRED))


def allocate(total: int, weights: list[Decimal]) -> list[int]:
    """Split `total` cents in proportion to `weights`, largest remainder first: parts sum to total.

    Ties go to the earlier weight, so the split is deterministic. All-zero weights: all to the first.
    """
    if not weights:
        return []
    weight_sum = sum(weights, Decimal(0))
    if weight_sum <= 0:
        return [total] + [0] * (len(weights) - 1)
    exact = [Decimal(total) * w / weight_sum for w in weights]
    parts = [int(e // 1) for e in exact]  # floor (total and weights are non-negative)
    left = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts


def fmt_money(amount_cents: int) -> str:
    """Integer cents as 1,234.56 (exact; a minus sign for negatives)."""
    sign = "-" if amount_cents < 0 else ""
    units, rest = divmod(abs(amount_cents), 100)
    return f"{sign}{units:,}.{rest:02d}"


def fmt_decimal(value, places: int) -> str:
    """A Decimal quantized half-up to `places`, trailing zeros kept: 10.13 -> '10.130'."""
    return format(round_half_up(Decimal(str(value)), f"1e-{places}" if places else "1"), "f")


def fmt_rate(rate: Decimal) -> str:
    """21.0 -> '21', 5.50 -> '5.5'."""
    return format(Decimal(rate).normalize(), "f")


@dataclass(frozen=True)
class Item:
    """A priced component as printed: its gross in cents (the parts add up to the priced total)."""

    type: str
    volume: Decimal
    unit_price_incl_vat: Decimal
    rate: Decimal
    gross: int


@dataclass(frozen=True)
class VatLine:
    rate: Decimal
    gross: int
    net: int
    vat: int


@dataclass
class Document:
    items: list[Item]
    # Signed amounts between the priced components and the charge: ("minimum_price" | "maximum_price"
    # | "csms_lower" | "shortfall" | "adjustment", cents).
    adjustments: list[tuple[str, int]]
    charged: int
    vat_lines: list[VatLine]
    assumed_rate: bool = (
        False  # some component had no VAT in the tariff: the operator's rate was used
    )
    notes: list[str] = field(default_factory=list)

    @property
    def net(self) -> int:
        return sum(v.net for v in self.vat_lines)

    @property
    def vat(self) -> int:
        return sum(v.vat for v in self.vat_lines)

    @property
    def zero_rated(self) -> bool:
        return any(v.rate == 0 and v.gross for v in self.vat_lines)

    def as_dict(self) -> dict:
        return {
            "items": [
                {
                    "type": i.type,
                    "volume": str(i.volume),
                    "unit_price_incl_vat": str(i.unit_price_incl_vat),
                    "rate": fmt_rate(i.rate),
                    "gross": i.gross,
                }
                for i in self.items
            ],
            "adjustments": [[kind, amount] for kind, amount in self.adjustments],
            "charged": self.charged,
            "vat_lines": [
                {"rate": fmt_rate(v.rate), "gross": v.gross, "net": v.net, "vat": v.vat}
                for v in self.vat_lines
            ],
            "net": self.net,
            "vat": self.vat,
            "assumed_rate": self.assumed_rate,
        }


def split(
    *,
    charged: int,
    breakdown: dict,
    fallback_rate: Decimal,
    shortfall: int = 0,
) -> Document:
    """The document for a charge of `charged` cents of a session priced as `breakdown`.

    `breakdown` is Quote.as_dict() (components with volume, price, vat, incl_vat; the totals after
    min/max price). A component without VAT, or a charge with no component to carry it, is taxed at
    `fallback_rate` (the operator's). `shortfall` is the part of the price above the hold, not
    charged; whatever else lies between the price and the charge is the CSMS's lower total.
    """
    components = breakdown.get("components") or []
    assumed = False
    rates, weights = [], []
    for comp in components:
        if comp.get("vat") is None:
            assumed = True
            rates.append(Decimal(fallback_rate))
        else:
            rates.append(Decimal(str(comp["vat"])))
        weights.append(Decimal(str(comp["incl_vat"])))

    # The printed lines: each component's gross, adding up to the components' rounded total.
    items_total = cents(sum(weights, Decimal(0)))
    item_gross = allocate(items_total, weights)
    items = [
        Item(
            type=comp["type"],
            volume=Decimal(str(comp["volume"])),
            # The driver saw prices incl. VAT: a tariff without VAT showed its price as the total.
            unit_price_incl_vat=Decimal(str(comp["price"]))
            * (_HUNDRED + Decimal(str(comp.get("vat") or 0)))
            / _HUNDRED,
            rate=rate,
            gross=gross,
        )
        for comp, rate, gross in zip(components, rates, item_gross, strict=True)
    ]

    adjustments: list[tuple[str, int]] = []
    priced = cents(breakdown["total_incl_vat"]) if "total_incl_vat" in breakdown else items_total
    if priced != items_total:
        adjustments.append(
            ("minimum_price" if priced > items_total else "maximum_price", priced - items_total)
        )
    if shortfall:
        adjustments.append(("shortfall", -shortfall))
    lowered = priced - shortfall - charged
    if lowered > 0:
        adjustments.append(("csms_lower", -lowered))
    elif lowered < 0:  # should not happen; printed so that the lines still add up to the charge
        adjustments.append(("adjustment", -lowered))

    # The charge, split across the components by their priced gross, then per rate.
    if not components:
        rates, weights = [Decimal(fallback_rate)], [Decimal(1)]
        assumed = True
    per_rate: dict[Decimal, int] = {}
    for rate, part in zip(rates, allocate(charged, weights), strict=True):
        per_rate[rate] = per_rate.get(rate, 0) + part
    vat_lines = [vat_line(rate, per_rate[rate]) for rate in sorted(per_rate)]
    return Document(items, adjustments, charged, vat_lines, assumed_rate=assumed)


def vat_line(rate: Decimal, gross: int) -> VatLine:
    """Gross first: the net is the gross without VAT, rounded half-up; the VAT is the rest."""
    net = int(round_half_up(Decimal(gross) * _HUNDRED / (_HUNDRED + rate)))
    return VatLine(rate=rate, gross=gross, net=net, vat=gross - net)


def split_refund(amount: int, rates: list[tuple[Decimal, int, int, int]]) -> list[VatLine]:
    """A refund of `amount` cents, split by the same rule as the receipt it corrects.

    `rates` is, per VAT rate of the receipt: (rate, gross charged, gross and net already credited).
    The refund is shared across the rates by what is left to credit there (largest remainder), so
    no rate is credited more than it was charged; each net is the net of the running total minus
    what was credited before, so credit notes that refund everything return exactly the
    receipt's net and VAT, to the cent.
    """
    parts = allocate(amount, [Decimal(max(charged - gross, 0)) for _, charged, gross, _ in rates])
    lines = []
    for (rate, _, gross_before, net_before), part in zip(rates, parts, strict=True):
        if part:
            net = vat_line(rate, gross_before + part).net - net_before
            lines.append(VatLine(rate=rate, gross=part, net=net, vat=part - net))
    return lines
