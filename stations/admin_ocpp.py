"""Admin for OCPP direct: stations with their connection state, bindings, transactions."""

from django.conf import settings
from django.contrib import admin
from django.template.response import TemplateResponse

from .admin_ops import ReadOnlyMixin
from .models import ChargingStation, OcppEvse, OcppTransaction, OcppTransactionEvent


class OcppEvseInline(admin.TabularInline):
    model = OcppEvse
    extra = 1
    readonly_fields = ("status",)
    autocomplete_fields = ("evse",)


@admin.register(ChargingStation)
class ChargingStationAdmin(admin.ModelAdmin):
    list_display = (
        "identity",
        "protocol",
        "location",
        "connected",
        "last_seen_at",
        "last_message",
        "vendor",
        "model",
        "firmware_version",
    )
    list_filter = ("connected", "protocol", "location__operator")
    search_fields = ("identity", "vendor", "model", "serial_number")
    readonly_fields = (
        "connected",
        "gateway",
        "last_seen_at",
        "last_message",
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
    )
    inlines = (OcppEvseInline,)
    actions = ("new_password",)

    def save_model(self, request, obj, form, change):
        if not change:
            # Registering a station: its password is made here and shown once (response_add).
            request._station_password = obj.set_new_password()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        password = getattr(request, "_station_password", None)
        if password is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_passwords(request, [(obj, password)])

    @admin.action(
        description="Give a new password (the old one stops working)", permissions=["change"]
    )
    def new_password(self, request, queryset):
        passwords = []
        for station in queryset:
            password = station.set_new_password()
            station.save(update_fields=["password_hash"])
            passwords.append((station, password))
        return self._show_passwords(request, passwords)

    def _show_passwords(self, request, passwords):
        response = TemplateResponse(
            request,
            "admin/stations/station_password.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "passwords": passwords,
                "url": settings.OCPP_PUBLIC_URL.rstrip("/") + "/",
            },
        )
        response["Cache-Control"] = "no-store"  # a password must not stay in a cache
        return response


class OcppTransactionEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OcppTransactionEvent
    fields = ("seq_no", "event_type", "offline", "timestamp", "received_at", "payload")
    readonly_fields = fields
    extra = 0


@admin.register(OcppTransaction)
class OcppTransactionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "station",
        "state",
        "transaction_id",
        "started_at",
        "ended_at",
        "stopped_reason",
        "psp_ref",
    )
    list_filter = ("state",)
    search_fields = ("reference", "transaction_id", "station__identity", "psp_ref")
    inlines = (OcppTransactionEventInline,)
