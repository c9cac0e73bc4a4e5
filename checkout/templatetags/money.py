from decimal import Decimal, InvalidOperation

from django import template
from django.utils.formats import number_format

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
    _whole, _, frac = text.partition(".")
    # In the driver's locale (0,25 in nl/de/fr), with the places worked out above.
    return number_format(Decimal(text), decimal_pos=max(2, len(frac)))


@register.filter
def kwh(value) -> str:
    """Energy as shown everywhere (checkout.energy: 3 decimals, one rounding), in the locale."""
    try:
        return number_format(energy.kwh_value(value), 3)
    except (InvalidOperation, TypeError, ValueError):
        return ""
