"""Admin pieces for station operations: tamper signals per EVSE, the tariff price preview, and a
read-only base for records kept as evidence.

The preview renders the checkout page's own price table from the same pricing code, so what staff
see is what drivers will see.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib import admin
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html

from . import scans, tariffs


class ReadOnlyMixin:
    """Records kept as evidence (money, what a CPO sent, what was printed): they change only through
    services, never by hand in the admin. For model admins and inlines alike."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TamperFilter(admin.SimpleListFilter):
    title = "tamper signals"
    parameter_name = "tamper"

    def lookups(self, request, model_admin):
        return [
            ("flagged", "Flagged (scans dropped, or several clients scanned voided/invalid codes)")
        ]

    def queryset(self, request, queryset):
        if self.value() == "flagged":
            return queryset.filter(pk__in=scans.flagged_evse_ids())
        return queryset


class EvseActivityMixin:
    """Scans, checkouts and conversion over the last week per EVSE, and whether to look at its sticker.
    Scans are distinct clients per day (stations/scans.py), not requests."""

    class Media:
        # A stylesheet, not a style attribute: the CSP admits no inline styles.
        css = {"all": ("css/admin.css",)}  # noqa: RUF012 - Django reads it, nobody mutates it

    def get_queryset(self, request):
        return scans.with_activity(super().get_queryset(request))

    @admin.display(description=f"scans ({scans.RECENT_DAYS} d)", ordering="scans_recent")
    def scans_recent(self, evse):
        return evse.scans_recent

    @admin.display(description=f"checkouts ({scans.RECENT_DAYS} d)", ordering="checkouts_recent")
    def checkouts_recent(self, evse):
        return evse.checkouts_recent

    @admin.display(description="conversion")
    def conversion(self, evse):
        """Scans that ended in a charge."""
        return f"{evse.charged_recent * 100 // evse.scans_recent} %" if evse.scans_recent else "-"

    @admin.display(description="sticker check")
    def tamper(self, evse):
        signal = scans.Signals(evse.scans_recent, evse.scans_history, evse.scans_suspicious)
        reasons = []
        if signal.dropped:
            reasons.append(f"scans dropped: {signal.recent} against {signal.expected:.0f} expected")
        if signal.bad_codes:
            reasons.append(f"{signal.suspicious} clients scanned voided or invalid codes")
        if reasons:
            return format_html('<strong class="tamper-alert">{}</strong>', "; ".join(reasons))
        # Below the threshold one client may be playing with codes: shown, not flagged.
        return (
            f"ok ({signal.suspicious} with voided or invalid codes)" if signal.suspicious else "ok"
        )


# An example charge for the preview: an hour, 11 kWh, ten minutes idle after.
EXAMPLE = {
    "hours": 1,
    "kwh": Decimal(11),
    "parking_minutes": Decimal(10),
    "max_power_kw": Decimal(11),
}


class TariffPreviewMixin:
    @admin.display(description="what drivers see")
    def price_preview(self, tariff):
        if not tariff.pk:
            return "-"
        try:
            lines = tariffs.price_lines(tariff.ocpi)
            start = timezone.now().replace(minute=0, second=0, microsecond=0)
            usage = tariffs.Usage(
                start=start,
                end=start + timedelta(hours=EXAMPLE["hours"]),
                kwh=EXAMPLE["kwh"],
                parking_minutes=EXAMPLE["parking_minutes"],
                max_power_kw=EXAMPLE["max_power_kw"],
            )
            example = tariffs.quote(tariff.ocpi, usage, tz=settings.TIME_ZONE)
        except tariffs.TariffError as exc:
            return f"This tariff cannot be priced: {exc}"
        table = render_to_string(
            "checkout/_price_table.html", {"price_lines": lines, "currency": tariff.currency}
        )
        return format_html(
            "{}<p>Example, starting now: 1 hour, 11 kWh, 10 minutes idle: <strong>{} {}</strong> "
            "incl. VAT.</p>",
            table,
            example.total_incl_vat,
            tariff.currency,
        )
