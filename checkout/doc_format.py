"""Numbers, amounts and dates on the driver's documents and e-mails, in the active language.

Babel's CLDR patterns (1.234,56 in nl/de, 1 234,56 in fr); the rounding stays vat.py's half-up,
done before formatting, so a document prints the same digits in every language.
"""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_decimal
from django.utils import translation

from . import vat

# Helvetica (the PDFs' font) has no narrow no-break space (CLDR's French grouping): use the plain one.
_SPACES = str.maketrans({"\u202f": "\u00a0"})


def _locale() -> str:
    return translation.to_locale(translation.get_language() or "en")


def money(amount_cents: int, currency: str, *, signed: bool = False) -> str:
    """1234 cents -> '12.34 EUR' (en), '12,34 EUR' (nl/de/fr); exact."""
    sign = "+" if signed and amount_cents > 0 else ""
    text = format_decimal(Decimal(amount_cents) / 100, format="#,##0.00", locale=_locale())
    return f"{sign}{text} {currency}".translate(_SPACES)


def decimal(value, places: int) -> str:
    """Half-up to `places`, trailing zeros kept: 10.13 -> '10.130' (en), '10,130' (nl/de/fr)."""
    rounded = Decimal(vat.fmt_decimal(value, places))
    pattern = "0." + "0" * places if places else "0"
    return format_decimal(rounded, format=pattern, locale=_locale()).translate(_SPACES)


def rate(value) -> str:
    """A VAT rate without needless zeros: 21 -> '21', 5.50 -> '5.5' (en), '5,5' (nl/de/fr)."""
    return format_decimal(Decimal(vat.fmt_rate(Decimal(value))), format="0.##", locale=_locale())


def moment(value: datetime, zone: ZoneInfo) -> str:
    """'Jul 15, 2026 17:05 CEST' (en), '15.07.2026 17:05 CEST' (de): the date in the driver's words."""
    local = value.astimezone(zone)
    day = format_date(local.date(), format="medium", locale=_locale())
    return f"{day} {local:%H:%M %Z}".translate(_SPACES)
