import re

import pycountry
from django import forms
from django.utils.translation import gettext_lazy as _
from stdnum.eu import vat as eu_vat

from .invoices import VAT_ID_INVALID, buyer_vat_id
from .lookup import parse_amount

PRICE_DIGEST = re.compile(r"^[0-9a-f]{32}$")
CARD_UNREADABLE = _("The card details could not be read. Please enter them again.")


class PayForm(forms.Form):
    connector = forms.IntegerField(min_value=1)
    hold_amount = forms.IntegerField(min_value=1)
    # The digest of the price the page showed (stations.tariffs.price_digest). Required: a page
    # from before it existed, or a request made without a page, is asked to reload.
    price = forms.RegexField(
        regex=PRICE_DIGEST,
        error_messages={
            "invalid": _("This page is out of date. Reload it to see the current price."),
            "required": _("This page is out of date. Reload it to see the current price."),
        },
    )
    # On an EVSE with several connectors each option also posts its own digest as
    # `price_<connector>`: the one of the chosen connector is checked, whatever `price` says
    # (a page without script cannot update `price` when the driver picks another connector).
    # The browser's id for one press of Pay, so the same press arriving twice opens one session.
    attempt = forms.RegexField(regex=r"^[A-Za-z0-9-]{8,64}$", required=False)
    email = forms.EmailField(required=False, max_length=254)
    # Stripe.js's Radar Session (createRadarSession), passed on to Stripe when the browser has one.
    radar_session = forms.RegexField(regex=r"^rse_[A-Za-z0-9_]{1,200}$", required=False)
    # The card, exactly one of: a payment method (the embedded default: localstripe's card element)
    # or a ConfirmationToken (production: Stripe.js createConfirmationToken).
    payment_method = forms.RegexField(
        regex=r"^(pm|card)_[A-Za-z0-9_]{1,200}$",
        required=False,
        error_messages={"invalid": CARD_UNREADABLE},
    )
    confirmation_token = forms.RegexField(
        regex=r"^ctoken_[A-Za-z0-9_]{1,200}$",
        required=False,
        error_messages={"invalid": CARD_UNREADABLE},
    )

    def clean(self):
        data = super().clean()
        if "payment_method" in data and "confirmation_token" in data:
            given = [bool(data["payment_method"]), bool(data["confirmation_token"])]
            if not any(given):
                self.add_error(None, _("Please enter your card details."))
            elif all(given):  # not what our page sends: which card was meant is unknown
                self.add_error(None, CARD_UNREADABLE)
        own = self.data.get(f"price_{data.get('connector')}")
        if own is not None:
            if not PRICE_DIGEST.fullmatch(own):
                raise forms.ValidationError(self.fields["price"].error_messages["invalid"])
            data["price"] = own
            self.errors.pop("price", None)
        return data


class ReceiptFindForm(forms.Form):
    """What a driver can read off the charger, the bank statement and the phone: all four must match."""

    day = forms.DateField(
        label=_("Day of charging"), widget=forms.DateInput(attrs={"type": "date"})
    )
    evse_id = forms.CharField(
        label=_("EVSE ID"),
        max_length=48,
        widget=forms.TextInput(attrs={"autocapitalize": "characters", "spellcheck": "false"}),
        help_text=_("Printed on the charger and on the QR sticker, e.g. NL*ABC*E12345*1."),
    )
    amount = forms.CharField(
        label=_("Amount charged"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text=_("As on your bank statement, e.g. 12.34 (not the amount held)."),
    )
    last4 = forms.CharField(
        label=_("Last 4 digits of the card"),
        max_length=8,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text=_(
            "Paid with Apple Pay or Google Pay? Your phone's wallet may show other digits "
            "(the device account number) than the card itself: either set of 4 digits works."
        ),
    )

    def clean_amount(self):
        cents = parse_amount(self.cleaned_data["amount"])
        if cents is None or cents <= 0:
            raise forms.ValidationError(_("Please enter the amount like 12.34."))
        return self.cleaned_data["amount"]

    def clean_last4(self):
        digits = self.cleaned_data["last4"].strip()
        if not re.fullmatch(r"\d{4}", digits):
            raise forms.ValidationError(_("Please enter exactly 4 digits."))
        return digits


class InvoiceForm(forms.Form):
    company = forms.CharField(label=_("Company name"), max_length=200)
    address = forms.CharField(
        label=_("Address"), max_length=500, widget=forms.Textarea(attrs={"rows": 3})
    )
    country = forms.ChoiceField(label=_("Country"), choices=())
    vat_id = forms.CharField(
        label=_("VAT id"), max_length=20, help_text=_("For example DE136695976 or NL004495445B01.")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = eu_countries()

    def clean(self):
        data = super().clean()
        country, vat_id = data.get("country"), data.get("vat_id")
        if country and vat_id:
            number = buyer_vat_id(country, vat_id)
            if number is None:
                self.add_error("vat_id", VAT_ID_INVALID())
            else:
                data["vat_id"] = number
        return data


def eu_countries() -> list[tuple[str, str]]:
    """EU member states by ISO code (Greece's VAT ids start EL; checkout/invoices.py maps it)."""
    codes = sorted(c.upper() for c in eu_vat.MEMBER_STATES if c != "xi")
    return [(code, getattr(pycountry.countries.get(alpha_2=code), "name", code)) for code in codes]


class ResumeForm(forms.Form):
    """A tab's question after a lost answer: which session did my press of Pay open?"""

    attempt = forms.RegexField(regex=r"^[A-Za-z0-9-]{8,64}$")
