from decimal import Decimal, InvalidOperation

from django import template

from checkout import energy

register = template.Library()


@register.filter
def price(value) -> str:
    """A unit price as the driver must see it: at least 2 decimals, and up to 4 so none is hidden by rounding."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return ""
    text = f"{amount.quantize(Decimal('0.0001')):f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


@register.filter
def kwh(value) -> str:
    """Energy as shown everywhere (checkout.energy): 3 decimals, one rounding."""
    try:
        return energy.kwh_text(value)
    except (InvalidOperation, TypeError, ValueError):
        return ""
