from django.urls import path

from . import views

app_name = "ocpi"

urlpatterns = [
    path("versions", views.versions, name="versions"),
    path("2.2.1", views.details, name="details"),
    path("2.2.1/credentials", views.credentials_endpoint, name="credentials"),
]
