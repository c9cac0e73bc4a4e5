"""kWh as a driver reads them: one rounding, the same everywhere (status page, status.json, receipt).

The energy is recorded with 4 decimals (ChargingSession.kwh); a price line carries its volume with
6 (stations.tariffs), and a reading may arrive with more. Each is first brought to the recorded
precision and then rounded half-up once for display, so the same energy never reads 3.662 kWh in
one line and 3.663 kWh in the next.
"""

from decimal import ROUND_HALF_UP, Decimal

RECORDED = Decimal("0.0001")  # ChargingSession.kwh: decimal_places=4
SHOWN = Decimal("0.001")


def kwh_text(value) -> str:
    """3.66249 -> '3.663' (via the recorded 3.6625); 10.13 -> '10.130'."""
    recorded = Decimal(str(value)).quantize(RECORDED, rounding=ROUND_HALF_UP)
    return format(recorded.quantize(SHOWN, rounding=ROUND_HALF_UP), "f")


def kwh_value(value) -> Decimal:
    """The shown energy as a number (3 decimals, the same rounding), to format in a locale."""
    return Decimal(kwh_text(value))
