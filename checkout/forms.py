from django import forms
from django.utils.translation import gettext_lazy as _


class PayForm(forms.Form):
    connector = forms.IntegerField(min_value=1)
    hold_amount = forms.IntegerField(min_value=1)
    # The digest of the price the page showed (stations.tariffs.price_digest). Required: a page
    # from before it existed, or a request made without a page, is asked to reload.
    price = forms.RegexField(
        regex=r"^[0-9a-f]{32}$",
        error_messages={
            "invalid": _("This page is out of date. Reload it to see the current price."),
            "required": _("This page is out of date. Reload it to see the current price."),
        },
    )
    # The browser's id for one press of Pay, so the same press arriving twice opens one session.
    attempt = forms.RegexField(regex=r"^[A-Za-z0-9-]{8,64}$", required=False)
    email = forms.EmailField(required=False, max_length=254)
    # Stripe.js's Radar Session (createRadarSession), passed on to Stripe when the browser has one.
    radar_session = forms.RegexField(regex=r"^rse_[A-Za-z0-9_]{1,200}$", required=False)
    payment_method = forms.RegexField(
        regex=r"^(pm|card)_[A-Za-z0-9_]{1,200}$",
        error_messages={
            "invalid": _("The card details could not be read. Please enter them again."),
            "required": _("Please enter your card details."),
        },
    )
