from django.urls import path

from . import views

app_name = "ocpi"

urlpatterns = [
    path("versions", views.versions, name="versions"),
    path("2.2.1", views.details, name="details"),
    path("2.2.1/credentials", views.credentials_endpoint, name="credentials"),
    path(
        "2.2.1/commands/<str:command>/<str:command_id>", views.command_result, name="command_result"
    ),
    path(
        "2.2.1/sessions/<str:country_code>/<str:party_id>/<str:session_id>",
        views.session,
        name="session",
    ),
    path("2.2.1/cdrs", views.cdrs, name="cdrs"),
    path("2.2.1/cdrs/<int:pk>", views.cdr, name="cdr"),
    path(
        "2.2.1/locations/<str:country_code>/<str:party_id>/<str:location_id>",
        views.location,
        name="location",
    ),
    path(
        "2.2.1/locations/<str:country_code>/<str:party_id>/<str:location_id>/<str:evse_uid>",
        views.location,
    ),
    path(
        "2.2.1/locations/<str:country_code>/<str:party_id>/<str:location_id>/<str:evse_uid>/<str:connector_id>",
        views.location,
    ),
    path("2.2.1/tokens", views.token_list, name="tokens"),
    path("2.2.1/tokens/<str:uid>/authorize", views.token_authorize, name="token_authorize"),
    path(
        "2.2.1/tariffs/<str:country_code>/<str:party_id>/<str:tariff_id>",
        views.tariff,
        name="tariff",
    ),
]
