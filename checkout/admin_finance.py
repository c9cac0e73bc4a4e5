"""Finance in the admin: the streamed CSV export, the monthly summary, the PDF ZIPs, list filters.

Every page here checks its permission itself (tests/test_admin_permissions.py walks them): the
CSV and the summary need checkout.view_receipt (credit-note rows also view_creditnote), a ZIP
holds both kinds of PDF, so requesting and downloading one needs both view permissions.
"""

from __future__ import annotations

import re
from copy import copy

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from stations.models import Location

from . import exports, finance_summary, pdf_exports
from .models import CreditNote, PdfExport

VIEW_RECEIPTS = "checkout.view_receipt"
VIEW_NOTES = "checkout.view_creditnote"

# --- list filters: the same parameter names on receipts and credit notes, so one query string
# --- (the receipts list's) selects both in the export.


def location_filter(path: str):
    class LocationFilter(admin.SimpleListFilter):
        title = "location"
        parameter_name = "location"

        def lookups(self, request, model_admin):
            return list(Location.objects.order_by("name", "pk").values_list("pk", "name"))

        def queryset(self, request, queryset):
            return queryset.filter(**{path: self.value()}) if self.value() else queryset

    return LocationFilter


def country_filter(path: str):
    class CountryFilter(admin.SimpleListFilter):
        title = "country"
        parameter_name = "country"

        def lookups(self, request, model_admin):
            countries = Location.objects.order_by("country").values_list("country", flat=True)
            return [(c, c) for c in dict.fromkeys(countries)]

        def queryset(self, request, queryset):
            return queryset.filter(**{path: self.value()}) if self.value() else queryset

    return CountryFilter


def finance_filters(location_path: str) -> tuple:
    return (
        "operator",
        location_filter(f"{location_path}__pk"),
        country_filter(f"{location_path}__country"),
        "year",
    )


# --- the CSV export -------------------------------------------------------------------------


def changelist_queryset(model_admin, request):
    """What the list shows under the request's filters, search and date drill-down (all pages)."""
    request = copy(request)
    request.GET = request.GET.copy()
    for ignored in ("o", "p", "all"):  # ordering and page: the export has its own, and all rows
        request.GET.pop(ignored, None)
    changelist = model_admin.get_changelist_instance(request)
    return changelist.get_queryset(request)


def csv_response(receipts, notes, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        exports.csv_chunks(receipts, notes), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_view(model_admin, request):
    """The receipts (and credit notes) the list's current filters select, as one streamed CSV."""
    if not request.user.has_perm(VIEW_RECEIPTS):
        raise PermissionDenied
    try:
        receipts = changelist_queryset(model_admin, request)
        notes = None
        if request.user.has_perm(VIEW_NOTES):
            notes = changelist_queryset(model_admin.admin_site._registry[CreditNote], request)
    except IncorrectLookupParameters:
        return HttpResponse("Unknown filter.", status=400, content_type="text/plain")
    return csv_response(receipts, notes, f"receipts-{timezone.localdate()}.csv")


# --- the monthly summary --------------------------------------------------------------------


class MonthForm(forms.Form):
    month = forms.RegexField(
        regex=r"^\d{4}-(0[1-9]|1[0-2])$",
        error_messages={"invalid": "A month as YYYY-MM, e.g. 2026-03."},
        widget=forms.TextInput(attrs={"type": "month"}),
    )

    def year_month(self) -> tuple[int, int]:
        year, month = re.match(r"(\d{4})-(\d{2})", self.cleaned_data["month"]).groups()
        return int(year), int(month)


def month_form(request) -> MonthForm:
    today = timezone.localdate()
    return MonthForm(request.GET or {"month": f"{today:%Y-%m}"})


def summary_view(model_admin, request):
    if not request.user.has_perm(VIEW_RECEIPTS):
        raise PermissionDenied
    form = month_form(request)
    summary = finance_summary.month_summary(*form.year_month()) if form.is_valid() else None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Monthly summary per operator and location",
        "opts": model_admin.opts,
        "form": form,
        "summary": summary,
        "csv_url": reverse("admin:checkout_receipt_summary_csv") + "?" + request.GET.urlencode(),
    }
    return TemplateResponse(request, "admin/checkout/receipt/summary.html", context)


def summary_csv_view(model_admin, request):
    if not request.user.has_perm(VIEW_RECEIPTS):
        raise PermissionDenied
    form = month_form(request)
    if not form.is_valid():
        return HttpResponse(form.errors["month"][0], status=400, content_type="text/plain")
    year, month = form.year_month()
    response = HttpResponse(
        finance_summary.month_summary(year, month).csv(), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="summary-{year}-{month:02d}.csv"'
    return response


# --- ZIPs of PDFs ---------------------------------------------------------------------------


def may_export_pdfs(user) -> bool:
    return user.has_perm(VIEW_RECEIPTS) and user.has_perm(VIEW_NOTES)


class PdfExportForm(forms.ModelForm):
    class Meta:
        model = PdfExport
        fields = ("operator", "period_start", "period_end")
        widgets = {  # noqa: RUF012 - Django reads it, nobody mutates it
            "period_start": forms.DateInput(attrs={"type": "date"}),
            "period_end": forms.DateInput(attrs={"type": "date"}),
        }
        help_texts = {  # noqa: RUF012
            "period_end": "Included. Days are the operator's (its time zone)."
        }


class PdfExportAdmin(admin.ModelAdmin):
    form = PdfExportForm
    list_display = (
        "created_at",
        "operator",
        "period_start",
        "period_end",
        "status",
        "progress",
        "download",
        "requested_by",
        "error",
    )
    list_filter = ("status", "operator")
    readonly_fields = ("status", "progress", "download", "requested_by", "error", "finished_at")

    def get_fields(self, request, obj=None):
        return ("operator", "period_start", "period_end") + (self.readonly_fields if obj else ())

    def has_add_permission(self, request):
        return super().has_add_permission(request) and may_export_pdfs(request.user)

    def has_change_permission(self, request, obj=None):
        return False  # a request is not edited: ask for another one

    def save_model(self, request, obj, form, change):
        obj.requested_by = request.user.get_username()
        obj.save()
        pdf_exports.pdf_export_queue(obj)

    @admin.display(description="progress")
    def progress(self, export):
        return f"{export.done}/{export.total}"

    @admin.display(description="ZIP")
    def download(self, export):
        if export.status != PdfExport.Status.DONE or not export.file:
            return "-"
        url = reverse("admin:checkout_pdfexport_download", args=[export.pk])
        return format_html('<a href="{}">{}</a>', url, export.file.name.rsplit("/", 1)[-1])

    def get_urls(self):
        own = [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="checkout_pdfexport_download",
            )
        ]
        return own + super().get_urls()

    def download_view(self, request, pk):
        if not may_export_pdfs(request.user):
            raise PermissionDenied
        export = PdfExport.objects.filter(pk=pk, status=PdfExport.Status.DONE).first()
        if export is None or not export.file:
            raise Http404("No finished ZIP with this id.")
        name = export.file.name.rsplit("/", 1)[-1]
        return FileResponse(export.file.open("rb"), as_attachment=True, filename=name)
