from django.urls import path

from . import meter_views, views, webhooks

app_name = "checkout"

urlpatterns = [
    path("q/<str:code>", views.scan, name="scan"),
    path("q/<str:code>/pay", views.pay, name="pay"),
    path("s/<uuid:public_id>/", views.status, name="status"),
    path("s/<uuid:public_id>/status.json", views.status_json, name="status_json"),
    path("s/<uuid:public_id>/confirm", views.confirm, name="confirm"),
    path("s/<uuid:public_id>/stop", views.stop, name="stop"),
    path("s/<uuid:public_id>/receipt.pdf", views.receipt_pdf, name="receipt"),
    path("s/<uuid:public_id>/credit-note-<int:pk>.pdf", views.credit_note_pdf, name="credit_note"),
    path("s/<uuid:public_id>/meter-data.xml", meter_views.meter_data_xml, name="meter_data"),
    path("webhooks/stripe/", webhooks.stripe_webhook, name="stripe_webhook"),
]
