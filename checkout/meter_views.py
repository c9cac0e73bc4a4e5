"""The driver's download of the signed meter data, for the S.A.F.E. transparency software."""

from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from . import meter_data, selectors


@require_GET
def meter_data_xml(request, public_id):
    # Reachable only through the status page's unguessable link, as the receipt is.
    return xml_download(selectors.session_for_driver(public_id))


def xml_download(session) -> HttpResponse:
    """The session's signed meter data as S.A.F.E. XML, or 404 when there is none to offer."""
    row = meter_data.for_session(session) if session else None
    if not meter_data.has_download(row):
        raise Http404
    receipt = getattr(session.payment, "receipt", None) if hasattr(session, "payment") else None
    name = receipt.number if receipt else str(session.public_id)[:8]
    response = HttpResponse(meter_data.safe_xml(row), content_type="application/xml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="meter-data-{name}.xml"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
