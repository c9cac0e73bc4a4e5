"""Money as people read it: integer minor units shown with the currency's own exponent.

Amounts are stored in minor units (cents). Most currencies have two decimals; ISO 4217 gives
some none (JPY, KRW...) and some three (BHD, KWD...), so "1577" is 15.77 EUR but 1577 JPY.
Formatting is exact integer arithmetic (never a float, never `:.2f`).
"""

from __future__ import annotations

# ISO 4217 minor units that differ from 2 (the currencies Stripe settles, and their neighbours).
EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "MGA",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def exponent(currency: str) -> int:
    return EXPONENTS.get((currency or "").upper(), 2)


def decimal_str(amount: int | None, currency: str) -> str:
    """Minor units as a plain decimal string: 1577 EUR -> "15.77", -5 -> "-0.05", 1577 JPY -> "1577"."""
    if amount is None:
        return ""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    units, rest = divmod(abs(amount), 10**places)
    return f"{sign}{units}.{rest:0{places}d}" if places else f"{sign}{units}"


_FORMATTERS: dict[str, object] = {}


def formatter(currency: str):
    """decimal_str for one currency, made once (the CSV export formats millions of amounts)."""
    found = _FORMATTERS.get(currency)
    if found is None:
        places = exponent(currency)
        if places == 2:

            def found(amount: int) -> str:
                if amount < 0:
                    return f"-{-amount // 100}.{-amount % 100:02d}"
                return f"{amount // 100}.{amount % 100:02d}"

        else:

            def found(amount: int) -> str:
                return decimal_str(amount, currency)

        _FORMATTERS[currency] = found
    return found


def display(amount: int | None, currency: str) -> str:
    """As staff read it in the admin: 666 EUR -> "6.66 EUR"."""
    if amount is None:
        return "-"
    return f"{decimal_str(amount, currency)} {currency}".strip()
