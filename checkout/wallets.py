"""Apple Pay's proof that this domain is ours: the association file Stripe hands every merchant.

Apple fetches it from /.well-known/apple-developer-merchantid-domain-association when the domain is
registered (`manage.py stripe_register_domain`). Nothing may be downloaded at run time, so the
operator saves the file from the Stripe dashboard and names it in APPLE_PAY_DOMAIN_FILE.
"""

from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe

ASSOCIATION_PATH = ".well-known/apple-developer-merchantid-domain-association"


@require_safe
def apple_pay_association(request):
    name = settings.APPLE_PAY_DOMAIN_FILE
    if not name:
        raise Http404("No Apple Pay domain association file is configured.")
    try:
        body = Path(name).read_bytes()
    except OSError as exc:
        raise Http404("The Apple Pay domain association file cannot be read.") from exc
    return HttpResponse(body, content_type="text/plain")
