"""The ZIP of a period's PDFs: requested in the admin, built by the receipts task, downloaded there.

1,000 receipts of one operator in March (Helsinki time) plus one just before and one just after
the month, and a credit note: the ZIP holds exactly the month's documents, byte for byte.
"""

import io
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta

import pytest
from django.urls import reverse

from checkout import pdf_exports, tasks
from checkout.models import ChargingSession, CreditNote, Payment, PdfExport, Receipt, Refund
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from tests.factories import ConnectorFactory
from tests.test_receipts import staff

COUNT = 1000
# Helsinki is UTC+2 in winter, UTC+3 from 29 March 2026.
MARCH_FIRST = datetime(2026, 2, 28, 22, 0, tzinfo=UTC)
APRIL_FIRST = datetime(2026, 3, 31, 21, 0, tzinfo=UTC)


def receipts_at(connector, moments) -> list[Receipt]:
    """Captured payments with a rendered receipt each, issued at `moments` (bulk: fast)."""
    sessions = ChargingSession.objects.bulk_create(
        ChargingSession(
            evse=connector.evse,
            connector=connector,
            tariff_snapshot={},
            time_zone="Europe/Helsinki",
            csms_reference=f"Z{uuid.uuid4().hex[:20]}",
            status=S.FINISHED,
        )
        for _ in moments
    )
    payments = Payment.objects.bulk_create(
        Payment(session=s, currency="EUR", status=P.CAPTURED, amount_held=5000, amount_captured=999)
        for s in sessions
    )
    operator = connector.evse.location.operator
    return Receipt.objects.bulk_create(
        Receipt(
            payment=p,
            operator=operator,
            year=moment.year,
            sequence=i + 1,
            number=f"{operator.receipt_prefix}-{moment.year}-{i + 1:06d}",
            issued_at=moment,
            total_incl_vat=999,
            pdf=b"%PDF-1.4 receipt " + str(i).encode() * 50,
            rendered_at=moment,
        )
        for i, (p, moment) in enumerate(zip(payments, moments, strict=True))
    )


@pytest.fixture
def march(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    connector = ConnectorFactory(
        evse__location__time_zone="Europe/Helsinki",
        evse__location__operator__time_zone="Europe/Helsinki",
    )
    step = (APRIL_FIRST - MARCH_FIRST) / COUNT
    inside = [MARCH_FIRST + i * step for i in range(COUNT)]  # the first at 00:00 on 1 March
    outside = [MARCH_FIRST - timedelta(seconds=1), APRIL_FIRST]
    made = receipts_at(connector, inside + outside)
    refund = Refund.objects.create(
        payment=made[7].payment,
        amount=100,
        reason="duplicate",
        requested_by="x",
        status="succeeded",
    )
    note = CreditNote.objects.create(
        refund=refund,
        receipt=made[7],
        operator=made[7].operator,
        year=2026,
        sequence=1,
        number="CN-1",
        issued_at=APRIL_FIRST - timedelta(seconds=1),
        total_incl_vat=100,
        total_excl_vat=83,
        vat_amount=17,
        pdf=b"%PDF-1.4 credit note",
        rendered_at=APRIL_FIRST,
    )
    return connector.evse.location.operator, made, note


def test_the_zip_holds_the_months_pdfs_and_its_progress_reaches_the_total(march):
    operator, made, note = march
    export = PdfExport.objects.create(
        operator=operator,
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 31),
        requested_by="finance",
    )
    tasks.receipt_pdf_export.apply(args=[export.pk]).get()
    export.refresh_from_db()
    assert export.status == PdfExport.Status.DONE
    assert export.done == export.total == COUNT + 1
    with export.file.open("rb") as f, zipfile.ZipFile(io.BytesIO(f.read())) as archive:
        names = archive.namelist()
        assert len(names) == COUNT + 1
        assert f"receipts/{made[0].number}.pdf" in names  # 00:00 on 1 March in Helsinki
        assert f"receipts/{made[COUNT].number}.pdf" not in names  # a second before
        assert f"receipts/{made[COUNT + 1].number}.pdf" not in names  # 00:00 on 1 April
        assert archive.read(f"receipts/{made[500].number}.pdf") == bytes(made[500].pdf)
        assert archive.read(f"credit-notes/{note.number}.pdf") == bytes(note.pdf)


def test_finance_requests_a_zip_in_the_admin_and_downloads_it(
    march, client, django_capture_on_commit_callbacks
):
    operator, made, _ = march
    finance = staff(client, "view_receipt", "view_creditnote", "add_pdfexport", "view_pdfexport")
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly in tests
        response = finance.post(
            reverse("admin:checkout_pdfexport_add"),
            {"operator": operator.pk, "period_start": "2026-03-31", "period_end": "2026-03-31"},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    export = PdfExport.objects.get()
    assert export.requested_by.startswith("staff") and export.status == PdfExport.Status.DONE
    listing = finance.get(reverse("admin:checkout_pdfexport_changelist")).content.decode()
    assert f"{export.done}/{export.total}" in listing
    url = reverse("admin:checkout_pdfexport_download", args=[export.pk])
    assert url in listing
    body = b"".join(finance.get(url).streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        # 31 March in Helsinki: the receipts from 21:00 UTC on the 30th to 21:00 on the 31st.
        expected = [
            r for r in made if datetime(2026, 3, 30, 21, tzinfo=UTC) <= r.issued_at < APRIL_FIRST
        ]
        assert len(archive.namelist()) == len(expected) + 1 > 1


def test_a_period_that_ends_before_it_starts_is_refused(march):
    operator, _, _ = march
    with pytest.raises(pdf_exports.PdfExportError):
        pdf_exports.pdf_export_request(
            operator=operator, start=date(2026, 3, 2), end=date(2026, 3, 1), requested_by="x"
        )


def test_downloading_a_zip_needs_both_view_permissions(march, client):
    operator, _, _ = march
    export = PdfExport.objects.create(
        operator=operator, period_start=date(2026, 3, 1), period_end=date(2026, 3, 1)
    )
    pdf_exports.pdf_export_build(export_id=export.pk)
    url = reverse("admin:checkout_pdfexport_download", args=[export.pk])
    assert staff(client, "view_receipt", "view_pdfexport").get(url).status_code == 403
    assert staff(client, "view_receipt", "view_creditnote").get(url).status_code == 200
