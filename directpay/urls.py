from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from checkout import wallets

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", lambda request: HttpResponse("ok", content_type="text/plain")),
    path(wallets.ASSOCIATION_PATH, wallets.apple_pay_association),
    path("ocpi/emsp/", include("stations.csms.ocpi.urls")),
    path("", include("checkout.urls")),
]
