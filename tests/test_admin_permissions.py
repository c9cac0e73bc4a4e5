"""Every admin action and every custom admin page checks its permission, for every ModelAdmin.

Walks admin.site._registry, so an action or page added later is covered without a new test: a
member of staff who may see everything but holds no other permission is offered no action, has
none carried out when posting it anyway, and is refused every custom page (refund, QR download,
sticker PDF, CSV import...).
"""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from checkout import credit_notes, invoices, pdf_exports, services
from checkout.models import Payment, Payout, PayoutLine, ReconciliationIssue, Refund
from stations import stickers
from stations.models import ChargingStation, Evse, OcpiConnection, OcppEvse, OcppTransaction
from tests.factories import ConnectorFactory
from tests.test_receipts import energy, finished_payment, issue

STANDARD_URLS = ("_changelist", "_add", "_history", "_delete", "_change")


@pytest.fixture
def records(db, settings, tmp_path):
    """One of the records the custom pages are about."""
    settings.MEDIA_ROOT = str(tmp_path)
    connector = ConnectorFactory()
    services.session_create(evse=connector.evse, connector=connector, hold_amount=2000, email="")
    stickers.print_batch_create(
        evses=Evse.objects.filter(pk=connector.evse.pk), layout="a4-2x4", user=None
    )
    OcpiConnection.objects.create(name="A CPO", token_ours="ours-" + "0" * 32)
    # An OCPP station (its "new password" action) with a transaction.
    station = ChargingStation(identity="CS-1", location=connector.evse.location)
    station.set_new_password()
    station.save()
    OcppEvse.objects.create(evse=connector.evse, station=station, evse_number=1)
    OcppTransaction.objects.create(station=station, reference="DPTEST", transaction_id="T1")
    # A charge its payment terminal authorised and settled (a terminal payment, its receipt).
    OcppTransaction.objects.create(
        station=station, reference="TPTEST", transaction_id="T2", psp_ref="PSP-1"
    )
    # A receipt and a credit note, for their PDF pages.
    payment = finished_payment(energy("0.50", vat_rate=21), kwh="10")
    issue(payment)
    refund = Refund.objects.create(
        payment=payment, amount=100, reason="requested_by_customer", requested_by="finance"
    )
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.SUCCEEDED)
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=100)
    credit_notes.credit_note_issue(refund_id=refund.pk)
    # A business invoice that replaced the receipt, for its PDF page.
    invoices.invoice_issue(
        receipt_id=payment.receipt.pk,
        buyer=invoices.Buyer(
            name="Acme B.V.", address="Dam 1\nAmsterdam", country="NL", vat_id="NL004495445B01"
        ),
    )
    # A reconciliation issue (its "mark resolved" action) and a payout with a line.
    now = timezone.now()
    ReconciliationIssue.objects.create(
        payment=payment, kind="fee", ours="0.00", stripe="0.10", found_at=now, last_seen_at=now
    )
    payout = Payout.objects.create(
        stripe_payout_id="po_test", amount=566, currency="EUR", status="paid"
    )
    PayoutLine.objects.create(
        payout=payout,
        stripe_balance_transaction_id="txn_test",
        amount=666,
        net=666,
        payment=payment,
    )
    # A finished ZIP of PDFs, for its download page.
    today = timezone.localdate()
    export = pdf_exports.pdf_export_request(
        operator=payment.session.evse.location.operator, start=today, end=today, requested_by="x"
    )
    pdf_exports.pdf_export_build(export_id=export.pk)


@pytest.fixture
def viewer(db):
    """Staff who may view every model, and nothing else."""
    user = User.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user


def request_as(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def registered():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def test_every_action_declares_a_permission_beyond_viewing(db):
    superuser = User.objects.create_superuser("root")
    for model, model_admin in registered():
        for name, (func, _, _) in model_admin.get_actions(request_as(superuser)).items():
            needs = set(getattr(func, "allowed_permissions", ()))
            assert needs - {"view"}, f"{model._meta.label}: action {name} needs no permission"


def test_staff_lacking_an_actions_permission_are_neither_offered_it_nor_can_post_it(
    client, records, viewer
):
    superuser = User.objects.create_superuser("root")
    client.force_login(viewer)
    walked = 0
    for model, model_admin in registered():
        offered = model_admin.get_actions(request_as(viewer))
        for name in model_admin.get_actions(request_as(superuser)):
            assert name not in offered, f"{model._meta.label}: {name} offered without permission"
            first = model.objects.order_by("pk").first()
            if first is None:
                continue  # Django refuses an action on no rows before asking about permissions
            changelist = reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
            )
            response = client.post(
                changelist,
                {"action": name, "index": 0, "_selected_action": [first.pk]},
                follow=True,
            )
            # Refused: back on the list, with nothing done and at most "No action selected".
            said = {str(m) for m in response.context["messages"]} if response.context else set()
            assert any(t.name.endswith("change_list.html") for t in response.templates) and (
                said <= {"No action selected."}
            ), f"{model._meta.label}: posting {name} was not refused: {said}"
            walked += 1
    assert walked >= 5  # the walk posted actions (print, stop, deal with, export, resolve...)


def custom_urls():
    for model, model_admin in registered():
        for pattern in model_admin.get_urls():
            if pattern.name and not pattern.name.endswith(STANDARD_URLS):
                yield model, pattern


# What to put in a custom URL's parameters: an existing record's pk, a real file kind.
SAMPLES = {"kind": "svg"}


def test_every_custom_admin_page_refuses_staff_without_its_permission(client, records):
    staff = User.objects.create_user("staff", is_staff=True)  # may enter the admin, nothing else
    superuser = User.objects.create_superuser("root")
    pages = []
    for model, pattern in custom_urls():
        params = {}
        for key in pattern.pattern.converters:
            if key == "pk":
                params[key] = model.objects.order_by("pk").first().pk
            else:
                assert key in SAMPLES, f"add a sample for {pattern.name}'s <{key}>"
                params[key] = SAMPLES[key]
        pages.append((pattern.name, reverse(f"admin:{pattern.name}", kwargs=params)))
    # Refund, QR, sticker PDF, import and its template, receipt, credit note and invoice PDFs, the
    # CSV export, the monthly summary and its CSV, a PDF ZIP's download.
    assert len(pages) >= 12, pages
    for name, url in pages:
        client.force_login(superuser)
        allowed = client.get(url)
        assert allowed.status_code not in (403, 404), f"{name}: the sample URL {url} is wrong"
        client.force_login(staff)
        refused = client.get(url)
        assert refused.status_code in (403, 404), f"{name} ({url}) served staff without permission"
