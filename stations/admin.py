from django.contrib import admin
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from . import qr
from .models import Connector, Evse, Location, Operator, Tariff


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin):
    list_display = ["name", "legal_name", "vat_id", "receipt_prefix"]


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "operator", "city", "country"]
    list_filter = ["operator", "country"]
    search_fields = ["name", "address", "city"]


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ["name", "operator", "currency"]


class ConnectorInline(admin.TabularInline):
    model = Connector
    extra = 0


@admin.register(Evse)
class EvseAdmin(admin.ModelAdmin):
    list_display = ["evse_id", "location", "status", "sticker_version", "sim_behaviour"]
    list_filter = ["status", "location__operator", "sim_behaviour"]
    search_fields = ["evse_id", "uid", "location__name"]
    readonly_fields = ["qr_code"]
    inlines = [ConnectorInline]

    def get_urls(self):
        own = [
            path("<int:pk>/qr.<str:kind>", self.admin_site.admin_view(self.qr_download), name="stations_evse_qr"),
        ]
        return own + super().get_urls()

    def qr_download(self, request, pk, kind):
        if kind not in ("svg", "png") or not self.has_view_permission(request):
            return HttpResponse(status=404)
        evse = get_object_or_404(Evse, pk=pk)
        content_type = {"svg": "image/svg+xml", "png": "image/png"}[kind]
        response = HttpResponse(qr.render(evse, kind), content_type=content_type)
        safe_name = evse.evse_id.replace("*", "-")
        response["Content-Disposition"] = f'attachment; filename="qr-{safe_name}-v{evse.sticker_version}.{kind}"'
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
