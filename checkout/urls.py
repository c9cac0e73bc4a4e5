from django.urls import path

from . import document_views, meter_views, views, webhooks

app_name = "checkout"

urlpatterns = [
    path("q/<str:code>", views.scan, name="scan"),
    path("q/<str:code>/pay", views.pay, name="pay"),
    path("q/<str:code>/resume", views.resume, name="resume"),
    path("s/<uuid:public_id>/", views.status, name="status"),
    path("s/<uuid:public_id>/status.json", views.status_json, name="status_json"),
    path("s/<uuid:public_id>/confirm", views.confirm, name="confirm"),
    path("s/<uuid:public_id>/stop", views.stop, name="stop"),
    path("s/<uuid:public_id>/receipt.pdf", views.receipt_pdf, name="receipt"),
    path("s/<uuid:public_id>/credit-note-<int:pk>.pdf", views.credit_note_pdf, name="credit_note"),
    path("s/<uuid:public_id>/invoice.pdf", document_views.invoice_pdf, name="invoice"),
    path("receipt/find", document_views.receipt_find, name="receipt_find"),
    path("r/<str:token>/", document_views.document, name="document"),
    path("r/<str:token>/receipt.pdf", document_views.document_receipt_pdf, name="document_receipt"),
    path(
        "r/<str:token>/credit-note-<int:pk>.pdf",
        document_views.document_credit_note_pdf,
        name="document_credit_note",
    ),
    path("r/<str:token>/invoice", document_views.document_invoice, name="document_invoice"),
    path("r/<str:token>/meter-data.xml", document_views.document_meter_data, name="document_meter"),
    path(
        "r/<str:token>/invoice.pdf",
        document_views.document_invoice_pdf,
        name="document_invoice_pdf",
    ),
    path("s/<uuid:public_id>/meter-data.xml", meter_views.meter_data_xml, name="meter_data"),
    path("webhooks/stripe/", webhooks.stripe_webhook, name="stripe_webhook"),
]
