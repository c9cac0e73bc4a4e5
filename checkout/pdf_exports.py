"""A ZIP of an operator's receipt and credit-note PDFs for a period, for finance and auditors.

Requested from the admin (a PdfExport row), built by a worker on the receipts queue: the PDFs are
read a few at a time by primary key and written one by one into a temporary file, so memory stays
flat whatever the period holds; progress (done/total) is committed as it goes, so the admin shows
it. The finished file goes to storage (MEDIA_ROOT) and is downloaded through the admin only.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from datetime import date

from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import credit_notes, periods, receipts, tasks
from .models import CreditNote, PdfExport, Receipt

log = logging.getLogger(__name__)

BATCH = 25  # PDFs held in memory at once (each some kB)
LOCATION = {
    Receipt: "payment__session__evse__location__",
    CreditNote: "refund__payment__session__evse__location__",
}


class PdfExportError(Exception):
    pass


def pdf_export_request(*, operator, start: date, end: date, requested_by: str) -> PdfExport:
    """Record the request and queue the build once it is committed."""
    if end < start:
        raise PdfExportError("The period ends before it starts.")
    with transaction.atomic():
        export = PdfExport.objects.create(
            operator=operator, period_start=start, period_end=end, requested_by=requested_by
        )
        pdf_export_queue(export)
    return export


def pdf_export_queue(export: PdfExport) -> None:
    """Build `export` on a worker once the request is committed."""
    transaction.on_commit(lambda: tasks.receipt_pdf_export.delay(export.pk))


def documents(export: PdfExport, model) -> QuerySet:
    where = periods.within(
        export.operator,
        export.period_start,
        export.period_end,
        when="issued_at",
        location=LOCATION[model],
    )
    return model.objects.filter(where, operator=export.operator_id)


def pdf_export_build(*, export_id: int) -> PdfExport:
    """Build the ZIP (a redelivered task builds it again unless it is done)."""
    with transaction.atomic():
        export = PdfExport.objects.select_for_update().get(pk=export_id)
        if export.status == PdfExport.Status.DONE:
            return export
        sources = [
            (documents(export, Receipt), "receipts", receipts.receipt_render, "receipt_id"),
            (
                documents(export, CreditNote),
                "credit-notes",
                credit_notes.credit_note_render,
                "credit_note_id",
            ),
        ]
        export.status = PdfExport.Status.RUNNING
        export.total = sum(qs.count() for qs, *_ in sources)
        export.done = 0
        export.error = ""
        export.save(update_fields=["status", "total", "done", "error"])
    try:
        with tempfile.TemporaryFile() as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                done = 0
                for qs, folder, render, key in sources:
                    for number, pdf in _pdfs(qs, render, key):
                        archive.writestr(f"{folder}/{number}.pdf", pdf)
                        done += 1
                        if done % BATCH == 0:
                            PdfExport.objects.filter(pk=export.pk).update(done=done)
            tmp.seek(0)
            name = f"{export.operator.receipt_prefix}-{export.period_start}-{export.period_end}.zip"
            export.file.save(name, File(tmp), save=False)
    except Exception as exc:
        log.exception("PDF export %s failed", export.pk)
        PdfExport.objects.filter(pk=export.pk).update(
            status=PdfExport.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        raise
    export.status, export.done, export.finished_at = PdfExport.Status.DONE, done, timezone.now()
    export.save(update_fields=["file", "status", "done", "finished_at"])
    return export


def _pdfs(qs: QuerySet, render, key: str):
    """(number, PDF bytes) in primary-key order, BATCH at a time (keyset: no long transaction)."""
    last = 0
    while True:
        batch = list(
            qs.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "number", "pdf", "rendered_at")[:BATCH]
        )
        for pk, number, pdf, rendered_at in batch:
            if rendered_at is None:  # not rendered yet (its task still queued): render it now
                pdf = render(**{key: pk}).pdf
            yield number, bytes(pdf)
        if len(batch) < BATCH:
            return
        last = batch[-1][0]
