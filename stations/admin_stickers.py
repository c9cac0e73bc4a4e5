"""Admin for QR stickers: the print action (EVSEs and locations), the sticker filter, print batches.

Kept apart from admin.py so the stations admin stays readable; what a print does lives in
stations/stickers.py. Printing is a separate permission (stations.print_sticker) because a reprint
voids the sticker on the charger: without it the action is not offered.
"""

import tempfile

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import stickers
from .admin_ops import ReadOnlyMixin
from .models import Evse, PrintBatch, PrintedSticker

SPOOL_BYTES = 8 * 1024 * 1024  # a larger PDF is spooled to a temporary file, not kept in memory


class StickerPrintForm(forms.Form):
    layout = forms.ChoiceField(widget=forms.RadioSelect, initial="a4-3x8")

    def __init__(self, *args, count: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["layout"].choices = [
            (
                key,
                f"{layout.name}: {layout.pages(count)} page{'s' if layout.pages(count) != 1 else ''}",
            )
            for key, layout in stickers.LAYOUTS.items()
        ]


def pdf_response(model_admin, request, batch):
    """The batch's PDF as a download, or None (with a message) when a newer print voided it."""
    # Closed by the response that streams it (or below), not by a with-block.
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        count = stickers.render_pdf(batch, out)
    except stickers.StaleBatch as exc:  # another print of the same EVSE came in between
        out.close()
        model_admin.message_user(
            request, f"Print {batch.pk} is out of date: {exc}. Print again.", messages.ERROR
        )
        return None
    out.seek(0)
    model_admin.message_user(
        request,
        f"Print {batch.pk}: {count} sticker{'s' if count != 1 else ''} "
        f"({batch.layout}). Stick them on soon: reprinted chargers' old stickers are void.",
    )
    return FileResponse(
        out,
        as_attachment=True,
        filename=f"qr-stickers-{batch.pk}-{batch.layout}.pdf",
        content_type="application/pdf",
    )


class StickerPrintMixin:
    """The "Print QR stickers…" action: choose a layout on a page that says how many stickers a
    print voids, then download the PDF. `sticker_evses` says which EVSEs a selection means."""

    actions = ("print_stickers",)

    def sticker_evses(self, queryset):
        raise NotImplementedError

    def has_print_sticker_permission(self, request):
        return request.user.has_perm("stations.print_sticker")

    @admin.action(description="Print QR stickers…", permissions=["print_sticker"])
    def print_stickers(self, request, queryset):
        evses = self.sticker_evses(queryset)
        count = evses.count()
        if not count:
            self.message_user(request, "The selection has no EVSEs to print.", messages.WARNING)
            return None
        form = StickerPrintForm(request.POST if "post" in request.POST else None, count=count)
        if form.is_valid():
            batch = stickers.print_batch_create(
                evses=evses, layout=form.cleaned_data["layout"], user=request.user
            )
            return pdf_response(self, request, batch)
        reprinted = stickers.reprinted(evses).order_by("evse_id")  # voided by a print
        context = {
            **self.admin_site.each_context(request),
            "title": "Print QR stickers",
            "opts": self.model._meta,
            "form": form,
            "count": count,
            "reprint_count": reprinted.count(),
            "reprinted": reprinted.values_list("evse_id", flat=True)[:20],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action": "print_stickers",
        }
        return TemplateResponse(request, "admin/stations/print_stickers.html", context)


class EvseStickerMixin(StickerPrintMixin):
    """For the EVSE admin: the action, the "Sticker" filter and a printed-version column."""

    def sticker_evses(self, queryset):
        return Evse.objects.filter(pk__in=queryset.values("pk"))

    def get_queryset(self, request):
        return stickers.with_printed(super().get_queryset(request))

    @admin.display(description="printed sticker", ordering="printed_version")
    def printed_version(self, evse):
        if evse.printed_version is None:
            return "-"
        voided = " (voided)" if evse.printed_version < evse.sticker_version else ""
        return f"v{evse.printed_version}{voided}"


class LocationStickerMixin(StickerPrintMixin):
    """For the Location admin: print every EVSE of the selected locations."""

    def sticker_evses(self, queryset):
        return Evse.objects.filter(location__in=queryset.values("pk"))


class StickerFilter(admin.SimpleListFilter):
    """Which chargers still carry a sticker that should be replaced."""

    title = "sticker"
    parameter_name = "sticker"

    def lookups(self, request, model_admin):
        return [
            ("never", "Never printed"),
            ("voided", "Printed sticker voided / outdated"),
            ("old_key", "Signed with an older key"),
            ("current", "Current"),
        ]

    def queryset(self, request, queryset):
        if self.value() in dict(self.lookups(request, None)):
            return stickers.sticker_state(queryset, self.value())
        return queryset


class PrintedStickerInline(ReadOnlyMixin, admin.TabularInline):
    model = PrintedSticker
    fields = readonly_fields = ("evse", "sticker_version", "key_id", "on_the_charger")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("evse").order_by("evse__evse_id")

    @admin.display(description="still on the charger")
    def on_the_charger(self, sticker):
        return (
            "yes"
            if sticker.sticker_version == sticker.evse.sticker_version
            else "no (reprinted since)"
        )


@admin.register(PrintBatch)
class PrintBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Who printed which stickers when: a record, so nobody edits it."""

    list_display = ("__str__", "created_by", "created_at", "layout", "sticker_count")
    list_filter = ("layout",)
    fields = readonly_fields = ("created_by", "created_at", "layout", "sticker_count", "download")
    inlines = (PrintedStickerInline,)

    def get_urls(self):
        own = [
            path(
                "<int:pk>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="stations_printbatch_pdf",
            )
        ]
        return own + super().get_urls()

    def pdf_view(self, request, pk):
        """The same PDF again (a printer jam): only while every sticker in it is still the current one."""
        if not request.user.has_perm("stations.print_sticker"):
            raise PermissionDenied
        batch = get_object_or_404(PrintBatch, pk=pk)
        return pdf_response(self, request, batch) or redirect(
            "admin:stations_printbatch_change", pk
        )

    @admin.display(description="PDF")
    def download(self, batch):
        if not batch.pk or stickers.batch_is_stale(batch):
            return "Voided by a later print or a new signing key: print these EVSEs again."
        return format_html(
            '<a href="{}">Download the PDF again</a> (no new version: the same stickers)',
            reverse("admin:stations_printbatch_pdf", args=[batch.pk]),
        )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(sticker_count=Count("stickers"))
        )

    @admin.display(description="stickers", ordering="sticker_count")
    def sticker_count(self, batch):
        return batch.sticker_count
