from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import (
    admin_ocpp,  # noqa: F401 - registers the OCPP station admin
    qr,
)
from . import tasks as ocpi_tasks
from .admin_ops import EvseActivityMixin, ReadOnlyMixin, TamperFilter, TariffPreviewMixin
from .admin_stickers import (
    EvseStickerMixin,
    LocationStickerMixin,
    StickerFilter,
)  # also registers PrintBatch
from .csms.base import CsmsError
from .csms.ocpi import credentials as ocpi_credentials
from .csms.ocpi import locations as ocpi_locations
from .models import (
    Connector,
    Evse,
    Location,
    OcpiCdr,
    OcpiConnection,
    OcpiSession,
    Operator,
    Tariff,
)


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin):
    list_display = ("name", "legal_name", "vat_id", "receipt_prefix")


@admin.register(Location)
class LocationAdmin(LocationStickerMixin, admin.ModelAdmin):
    list_display = ("name", "operator", "city", "country")
    list_filter = ("operator", "country")
    search_fields = ("name", "address", "city")

    def get_urls(self):
        from . import admin_import  # the "Import from CSV" page (button on the list's template)

        return admin_import.urls(self) + super().get_urls()


@admin.register(Tariff)
class TariffAdmin(TariffPreviewMixin, admin.ModelAdmin):
    list_display = ("name", "operator", "currency", "valid_until", "replaced_by")
    readonly_fields = ("price_preview",)


class ConnectorInline(admin.TabularInline):
    model = Connector
    extra = 0


@admin.register(Evse)
class EvseAdmin(EvseStickerMixin, EvseActivityMixin, admin.ModelAdmin):
    list_display = (
        "evse_id",
        "location",
        "status",
        "sticker_version",
        "printed_version",
        "scans_recent",
        "checkouts_recent",
        "conversion",
        "tamper",
        "sim_behaviour",
    )
    list_filter = ("status", TamperFilter, StickerFilter, "location__operator", "sim_behaviour")
    search_fields = ("evse_id", "uid", "location__name")
    readonly_fields = (
        "sticker_version",
        "qr_code",
    )  # only printing changes the version (it voids the old sticker)
    inlines = (ConnectorInline,)

    def get_urls(self):
        own = [
            path(
                "<int:pk>/qr.<str:kind>",
                self.admin_site.admin_view(self.qr_download),
                name="stations_evse_qr",
            ),
        ]
        return own + super().get_urls()

    def qr_download(self, request, pk, kind):
        if kind not in ("svg", "png") or not self.has_view_permission(request):
            return HttpResponse(status=404)
        evse = get_object_or_404(Evse, pk=pk)
        content_type = {"svg": "image/svg+xml", "png": "image/png"}[kind]
        response = HttpResponse(qr.render(evse, kind), content_type=content_type)
        safe_name = evse.evse_id.replace("*", "-")
        response["Content-Disposition"] = (
            f'attachment; filename="qr-{safe_name}-v{evse.sticker_version}.{kind}"'
        )
        return response

    @admin.display(description="QR code")
    def qr_code(self, evse):
        if not evse.pk:
            return "-"
        svg = qr.make(evse).svg_inline(scale=4, border=4)  # segno output: no user-controlled markup
        links = format_html(
            '<a href="{}">Download SVG</a> · <a href="{}">Download PNG</a><br><code>{}</code>',
            reverse("admin:stations_evse_qr", args=[evse.pk, "svg"]),
            reverse("admin:stations_evse_qr", args=[evse.pk, "png"]),
            qr.url_for(evse),
        )
        return mark_safe(f"<div>{svg}</div>") + links


class OcpiConnectionChangeForm(forms.ModelForm):
    versions_url = forms.URLField(
        required=False, assume_scheme="https", help_text="The CPO's OCPI versions endpoint."
    )

    class Meta:
        model = OcpiConnection
        fields = ("name", "versions_url", "raw_token", "operator")


class OcpiConnectionForm(OcpiConnectionChangeForm):
    token_a = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        label="Token A",
        help_text="The token the CPO gave us for registering. Leave the versions URL and this empty to "
        "invite the CPO instead: a Token A for it is shown once after saving.",
    )

    def clean(self):
        data = super().clean()
        if bool(data.get("versions_url")) != bool(data.get("token_a")):
            raise forms.ValidationError(
                "Give both the CPO's versions URL and its Token A, or neither (to invite)."
            )
        return data


def _masked(token: str) -> str:
    return f"…{token[-4:]}" if token else "-"


@admin.register(OcpiConnection)
class OcpiConnectionAdmin(admin.ModelAdmin):
    """Connections to CPO platforms. Tokens are secrets: only their last characters are shown."""

    form = OcpiConnectionForm
    list_display = (
        "name",
        "state",
        "party",
        "operator",
        "version",
        "synced_at",
        "last_error",
        "updated_at",
    )
    list_filter = ("state",)
    readonly_fields = (
        "state",
        "party",
        "business_name",
        "version",
        "endpoints_table",
        "our_token",
        "their_token",
        "token_a_expires_at",
        "synced_at",
        "last_error",
        "created_at",
        "updated_at",
    )
    actions = ("sync_now", "revoke_token_a")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "versions_url", "token_a", "raw_token", "operator"]
        return ["name", "versions_url", "raw_token", "operator", *self.readonly_fields]

    # It changes locations, EVSEs and tariffs from the CPO's data: for who may change the connection.
    @admin.action(description="Pull locations and tariffs now", permissions=["change"])
    def sync_now(self, request, queryset):
        # Queued, not run here: a large network takes longer than a request may.
        ready = ocpi_locations.syncable(queryset)
        for connection in queryset.exclude(pk__in=ready.values("pk")):
            messages.error(
                request, f"{connection.name}: needs to be connected and to have an operator."
            )
        for connection in ready:
            ocpi_tasks.ocpi_sync.delay(connection.pk)
            messages.success(
                request,
                f"{connection.name}: pull queued. 'Synced at' and 'last error' show the outcome.",
            )

    @admin.action(description="Revoke Token A (invited connections)", permissions=["change"])
    def revoke_token_a(self, request, queryset):
        revoked = ocpi_credentials.token_a_revoke(connection_ids=queryset.values("pk"))
        messages.success(request, f"Token A revoked for {revoked} invited connection(s).")

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = OcpiConnectionChangeForm
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="party")
    def party(self, connection):
        return f"{connection.country_code}*{connection.party_id}" if connection.party_id else "-"

    @admin.display(description="our token (the CPO calls us with it)")
    def our_token(self, connection):
        return _masked(connection.token_ours)

    @admin.display(description="their token (we call the CPO with it)")
    def their_token(self, connection):
        return _masked(connection.token_theirs)

    @admin.display(description="endpoints")
    def endpoints_table(self, connection):
        rows = [
            (e.get("identifier", ""), e.get("role", ""), e.get("url", ""))
            for e in connection.endpoints
        ]
        if not rows:
            return "-"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        if not form.cleaned_data.get("token_a"):
            obj.state, obj.token_ours = OcpiConnection.State.INVITED, ocpi_credentials.new_token()
            obj.token_a_expires_at = ocpi_credentials.token_a_expiry()
            obj.save()
            messages.warning(
                request,
                f"Give the CPO our versions URL {ocpi_credentials.versions_url()} and this "
                f"Token A, shown only now: {obj.token_ours} (valid until "
                f"{obj.token_a_expires_at:%Y-%m-%d %H:%M %Z})",
            )
            return None
        obj.state, obj.token_ours = OcpiConnection.State.PENDING, ocpi_credentials.new_token()
        obj.token_theirs = form.cleaned_data["token_a"]
        obj.save()
        # After the admin's transaction commits: the CPO reads our versions while we register.
        transaction.on_commit(lambda: self._register(request, obj.pk))
        return None

    def _register(self, request, pk):
        try:
            connected = ocpi_credentials.connection_register(connection_id=pk)
            messages.success(
                request,
                f"Connected to {connected.business_name or connected.name} "
                f"(OCPI {connected.version}).",
            )
        except (CsmsError, ocpi_credentials.CredentialsInvalid) as exc:
            messages.error(
                request,
                f"Registration with the CPO failed: {exc}. The connection is kept as pending.",
            )


class UnmatchedFilter(admin.SimpleListFilter):
    """What a CPO sent that matches no purchase of ours: kept for staff to look into."""

    title = "matched"
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return [("no", "Unmatched")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            field = "reference__isnull" if queryset.model is OcpiSession else "session__isnull"
            return queryset.filter(**{field: True})
        return queryset


@admin.register(OcpiSession)
class OcpiSessionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "connection",
        "session_id",
        "start_response",
        "start_result",
        "stop_result",
        "updated_at",
    )
    list_filter = (UnmatchedFilter, "connection", "start_result")
    search_fields = ("reference", "session_id", "token_uid")


@admin.register(OcpiCdr)
class OcpiCdrAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("__str__", "connection", "session", "credit", "received_at")
    list_filter = (UnmatchedFilter, "connection", "credit")
    search_fields = ("cdr_id", "session__reference", "session__session_id")
