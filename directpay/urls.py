from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpResponse
from django.urls import include, path
from django.utils import translation
from django.views.i18n import JavaScriptCatalog

_catalog = JavaScriptCatalog.as_view(packages=["directpay"])


def javascript_catalog(request, language):
    """static/js's strings in the page's language (named in the URL: an operator's pages may speak
    another language than the browser asked for)."""
    if language not in dict(settings.LANGUAGES):
        raise Http404
    translation.activate(language)
    return _catalog(request)


from checkout import wallets

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", lambda request: HttpResponse("ok", content_type="text/plain")),
    path(wallets.ASSOCIATION_PATH, wallets.apple_pay_association),
    path("ocpi/emsp/", include("stations.csms.ocpi.urls")),
    # The driver's language switch (set_language) and the strings static/js needs, as a script
    # from our own origin (the Content-Security-Policy allows no inline one).
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/<str:language>/", javascript_catalog, name="javascript-catalog"),
    path("", include("checkout.urls")),
]
