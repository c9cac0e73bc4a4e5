"""The admin's "Import from CSV" page on the Location list: upload, errors per row, or the counts.

Only the form and the page live here; what an import does is `stations.imports`. An import creates
and changes locations, EVSEs, connectors and tariffs, so it needs the add and change permissions
on all four.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import imports
from .models import Operator

PERMISSIONS = [
    f"stations.{action}_{model}"
    for model in ("location", "evse", "connector", "tariff")
    for action in ("add", "change")
]
SHOWN_ERRORS = 200  # a wholly wrong file can have thousands: the first ones tell what to fix


class ImportForm(forms.Form):
    operator = forms.ModelChoiceField(
        Operator.objects.order_by("name"),
        help_text="The locations, EVSEs and tariffs in the file belong to it.",
    )
    file = forms.FileField(
        label="CSV file",
        help_text=(
            f"UTF-8, separated by ; or , with a header row; one row per connector; at most {imports.MAX_ROWS} rows "
            f"and {imports.MAX_BYTES // (1024 * 1024)} MB."
        ),
    )


def urls(model_admin) -> list:
    """URLs to put before the LocationAdmin's own."""
    site = model_admin.admin_site
    return [
        path(
            "import/",
            site.admin_view(lambda request: import_view(model_admin, request)),
            name="stations_location_import",
        ),
        path(
            "import/template.csv",
            site.admin_view(template_view),
            name="stations_location_import_template",
        ),
    ]


def _check(request):
    if not request.user.has_perms(PERMISSIONS):
        raise PermissionDenied


def template_view(request):
    _check(request)
    response = HttpResponse(imports.template_csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="stations-import-template.csv"'
    return response


def import_view(model_admin, request):
    _check(request)
    errors = []
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        result = imports.import_stations(
            operator=form.cleaned_data["operator"], file=form.cleaned_data["file"]
        )
        if result.ok:
            model_admin.message_user(
                request, f"{form.cleaned_data['operator']}: {result.summary()}", messages.SUCCESS
            )
            return HttpResponseRedirect(reverse("admin:stations_location_changelist"))
        errors = result.errors
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Import stations from CSV",
        "opts": model_admin.opts,
        "form": form,
        "errors": errors[:SHOWN_ERRORS],
        "more_errors": max(len(errors) - SHOWN_ERRORS, 0),
        "columns": imports.COLUMNS,
        "template_url": reverse("admin:stations_location_import_template"),
    }
    return TemplateResponse(request, "admin/stations/location/import.html", context)
