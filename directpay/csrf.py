"""A refused CSRF check, told the way the rest of the driver's pages speak.

Django's own page is English and HTML, so a script that posted (Pay, Stop) could not tell a stale
token from a passing failure and kept retrying. Scripts asking for JSON get `{"csrf": true}` and a
message that says nothing was done; a plain form gets a page in the driver's language.
"""

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.csrf import csrf_failure as django_csrf_failure


def csrf_failure(request, reason=""):
    if request.path.startswith("/admin/"):
        return django_csrf_failure(request, reason=reason)
    message = _(
        "This page was open too long to send that, so nothing was done: nothing has been charged "
        "and a charge in progress goes on. Reload the page and try again."
    )
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": False, "csrf": True, "message": message}, status=403)
    # Back to the page the form was on (ours only), where a reload gives a fresh token.
    back = request.headers.get("Referer", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = ""
    return render(request, "403_csrf.html", {"message": message, "back": back}, status=403)
