"""The OCPI endpoints a CPO calls: versions, version details and credentials (eMSP side).

Every request is authenticated by the token we issued (base64 or raw), and answered in the OCPI
envelope; X-Request-ID and X-Correlation-ID are logged and echoed; routing headers are accepted.
"""

from __future__ import annotations

import json
import logging
from functools import wraps

from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from stations.models import OcpiConnection

from ..base import CsmsError
from . import credentials, envelope

log = logging.getLogger(__name__)

# Modules we offer a CPO, with our role in each.
ENDPOINTS = [("credentials", "SENDER", "ocpi:credentials")]


def ocpi_view(methods: tuple[str, ...], *, states=(OcpiConnection.State.CONNECTED,)):
    def wrap(view):
        @csrf_exempt
        @wraps(view)
        def handle(request, *args, **kwargs):
            ids = {h: request.headers.get(h, "") for h in ("X-Request-ID", "X-Correlation-ID")}
            log.info("ocpi %s %s X-Request-ID=%s X-Correlation-ID=%s from=%s*%s", request.method, request.path,
                     ids["X-Request-ID"], ids["X-Correlation-ID"], request.headers.get("OCPI-from-country-code", ""),
                     request.headers.get("OCPI-from-party-id", ""))
            connection = None
            for token in envelope.tokens_in(request.headers.get("Authorization", "")):
                connection = OcpiConnection.objects.filter(token_ours=token, state__in=states).first()
                if connection:
                    break
            if connection is None:
                answer = envelope.error(envelope.CLIENT_ERROR, "Unknown or missing token.", http_status=401)
            elif request.method not in methods:
                answer = envelope.error(envelope.CLIENT_ERROR, f"{request.method} is not supported here.",
                                        http_status=405)
            else:
                answer = view(request, connection, *args, **kwargs)
            for header, value in ids.items():
                if value:
                    answer[header] = value
            return answer

        return handle

    return wrap


ANY_STATE = (OcpiConnection.State.INVITED, OcpiConnection.State.CONNECTED)
# While we register with a CPO it reads our versions with the token we just sent it.
READ_STATES = (*ANY_STATE, OcpiConnection.State.PENDING)


@ocpi_view(("GET",), states=READ_STATES)
def versions(request, connection):
    return envelope.response([{"version": credentials.VERSION,
                               "url": request.build_absolute_uri(reverse("ocpi:details"))}])


@ocpi_view(("GET",), states=READ_STATES)
def details(request, connection):
    return envelope.response({
        "version": credentials.VERSION,
        "endpoints": [{"identifier": identifier, "role": role, "url": request.build_absolute_uri(reverse(name))}
                      for identifier, role, name in ENDPOINTS],
    })


@ocpi_view(("GET", "POST", "PUT", "DELETE"), states=ANY_STATE)
def credentials_endpoint(request, connection):
    registered = connection.state == OcpiConnection.State.CONNECTED
    if request.method == "GET":
        if not registered:
            return envelope.error(envelope.CLIENT_ERROR, "Not registered yet.", http_status=405)
        return envelope.response(credentials.our_credentials(connection))
    if request.method == "DELETE":
        if not registered:
            return envelope.error(envelope.CLIENT_ERROR, "Not registered.", http_status=405)
        credentials.connection_suspend(connection=connection)
        return envelope.response()
    if request.method == "POST" and registered:
        return envelope.error(envelope.CLIENT_ERROR, "Already registered: use PUT to update.", http_status=405)
    if request.method == "PUT" and not registered:
        return envelope.error(envelope.CLIENT_ERROR, "Not registered: use POST.", http_status=405)
    try:
        creds = credentials.parse_credentials(json.loads(request.body or b"null"))
    except (ValueError, credentials.CredentialsInvalid) as exc:
        return envelope.error(envelope.INVALID_PARAMETERS, f"Invalid credentials: {exc}")
    try:
        connection = credentials.connection_accept(connection=connection, creds=creds)
    except CsmsError as exc:
        log.warning("ocpi registration of %s failed: %s", connection.name, exc)
        OcpiConnection.objects.filter(pk=connection.pk).update(last_error=str(exc)[:300])
        code = envelope.UNSUPPORTED_VERSION if "not 2.2.1" in str(exc) else envelope.CLIENT_API_UNUSABLE
        return envelope.error(code, f"Could not use your OCPI platform: {exc}")
    return envelope.response(credentials.our_credentials(connection))
