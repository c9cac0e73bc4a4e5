"""The OCPI endpoints a CPO calls (eMSP side): versions, version details, credentials, command
results, and the Sessions, CDRs, Locations and Tariffs receivers.

Every request is authenticated by the token we issued (base64 or raw), and answered in the OCPI
envelope; X-Request-ID and X-Correlation-ID are logged and echoed; routing headers are accepted.
"""

from __future__ import annotations

import json
import logging
from functools import wraps

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt

from stations.models import OcpiCdr, OcpiConnection

from ..base import CsmsError
from . import commands, credentials, envelope, locations, messages, sessions, tokens

log = logging.getLogger(__name__)

# Modules we offer a CPO, with our role in each; the CPO appends the path parameters to the URL.
ENDPOINTS = [
    ("credentials", "SENDER", "credentials"),
    ("commands", "SENDER", "commands"),
    ("sessions", "RECEIVER", "sessions"),
    ("cdrs", "RECEIVER", "cdrs"),
    ("locations", "RECEIVER", "locations"),
    ("tariffs", "RECEIVER", "tariffs"),
    ("tokens", "SENDER", "tokens"),
]


def ocpi_view(methods: tuple[str, ...], *, states=(OcpiConnection.State.CONNECTED,)):
    def wrap(view):
        @csrf_exempt
        @wraps(view)
        def handle(request, *args, **kwargs):
            ids = {h: request.headers.get(h, "") for h in ("X-Request-ID", "X-Correlation-ID")}
            log.info(
                "ocpi %s %s X-Request-ID=%s X-Correlation-ID=%s from=%s*%s",
                request.method,
                request.path,
                ids["X-Request-ID"],
                ids["X-Correlation-ID"],
                request.headers.get("OCPI-from-country-code", ""),
                request.headers.get("OCPI-from-party-id", ""),
            )
            connection = None
            for token in envelope.tokens_in(request.headers.get("Authorization", "")):
                connection = OcpiConnection.objects.filter(
                    token_ours=token, state__in=states
                ).first()
                if connection:
                    break
            if connection is not None and connection.token_a_expired(timezone.now()):
                log.warning("ocpi: expired or revoked Token A of %s presented", connection.name)
                connection = None
            if connection is None:
                answer = envelope.error(
                    envelope.CLIENT_ERROR, "Unknown or missing token.", http_status=401
                )
            elif request.method not in methods:
                answer = envelope.error(
                    envelope.CLIENT_ERROR,
                    f"{request.method} is not supported here.",
                    http_status=405,
                )
            elif not _party_ok(kwargs):
                answer = envelope.error(
                    envelope.INVALID_PARAMETERS, "country_code has 2 characters, party_id 1 to 3."
                )
            else:
                try:
                    answer = view(request, connection, *args, **kwargs)
                except messages.Invalid as exc:
                    answer = envelope.error(envelope.INVALID_PARAMETERS, f"Invalid: {exc}")
                except Exception:
                    log.exception("ocpi %s %s failed", request.method, request.path)
                    answer = envelope.error(
                        envelope.SERVER_ERROR,
                        "Could not store this now: please retry.",
                        http_status=500,
                    )
            for header, value in ids.items():
                if value:
                    answer[header] = value
            return answer

        return handle

    return wrap


def _party_ok(kwargs) -> bool:
    """The country_code and party_id in a receiver's URL, where there are any."""
    if "country_code" not in kwargs:
        return True
    return len(kwargs["country_code"]) == 2 and 0 < len(kwargs["party_id"]) <= 3


ANY_STATE = (OcpiConnection.State.INVITED, OcpiConnection.State.CONNECTED)
# While we register with a CPO it reads our versions with the token we just sent it.
READ_STATES = (*ANY_STATE, OcpiConnection.State.PENDING)


@ocpi_view(("GET",), states=READ_STATES)
def versions(request, connection):
    return envelope.response(
        [
            {
                "version": credentials.VERSION,
                "url": request.build_absolute_uri(reverse("ocpi:details")),
            }
        ]
    )


@ocpi_view(("GET",), states=READ_STATES)
def details(request, connection):
    return envelope.response(
        {
            "version": credentials.VERSION,
            "endpoints": [
                {
                    "identifier": identifier,
                    "role": role,
                    "url": request.build_absolute_uri(f"{reverse('ocpi:details')}/{suffix}"),
                }
                for identifier, role, suffix in ENDPOINTS
            ],
        }
    )


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
        return envelope.error(
            envelope.CLIENT_ERROR, "Already registered: use PUT to update.", http_status=405
        )
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
        # A fixed text: the caller chose the URL, so nothing about what it answered (or whether
        # anything answered) goes back to it.
        if "not 2.2.1" in str(exc):
            return envelope.error(
                envelope.UNSUPPORTED_VERSION, "Your versions do not include OCPI 2.2.1."
            )
        return envelope.error(envelope.CLIENT_API_UNUSABLE, "Could not use your OCPI platform.")
    return envelope.response(credentials.our_credentials(connection))


def _body(request):
    try:
        return json.loads(request.body or b"null")
    except ValueError as exc:
        raise messages.Invalid("the body is not JSON") from exc


@ocpi_view(("POST",))
def command_result(request, connection, command, command_id):
    if command not in ("START_SESSION", "STOP_SESSION"):
        return envelope.error(
            envelope.INVALID_PARAMETERS, f"We send no {command} commands.", http_status=404
        )
    record = commands.command_result(
        connection=connection, command=command, command_id=command_id, data=_body(request)
    )
    if record is None:
        return envelope.error(envelope.INVALID_PARAMETERS, "Unknown command.", http_status=404)
    return envelope.response()


@ocpi_view(("GET", "PUT", "PATCH"))
def session(request, connection, country_code, party_id, session_id):
    ids = {
        "connection": connection,
        "country_code": country_code,
        "party_id": party_id,
        "session_id": session_id,
    }
    if request.method == "GET":
        record = sessions.stored(connection, country_code, party_id, session_id).first()
        if record is None:
            return envelope.error(envelope.INVALID_PARAMETERS, "Unknown session.", http_status=404)
        return envelope.response(record.data)
    if request.method == "PUT":
        sessions.session_put(**ids, data=_body(request))
        return envelope.response()
    try:
        sessions.session_patch(**ids, patch=_body(request))
    except sessions.UnknownSession:
        return envelope.error(
            envelope.INVALID_PARAMETERS, "Unknown session: PUT it first.", http_status=404
        )
    return envelope.response()


@ocpi_view(("POST",))
def cdrs(request, connection):
    row, _ = sessions.cdr_post(connection=connection, data=_body(request))
    return envelope.response(
        headers={"Location": request.build_absolute_uri(reverse("ocpi:cdr", args=[row.pk]))}
    )


@ocpi_view(("GET",))
def cdr(request, connection, pk):
    row = OcpiCdr.objects.filter(connection=connection, pk=pk).first()
    if row is None:
        return envelope.error(envelope.INVALID_PARAMETERS, "Unknown CDR.", http_status=404)
    return envelope.response(row.data)


@ocpi_view(("GET", "PUT", "PATCH"))
def location(
    request, connection, country_code, party_id, location_id, evse_uid=None, connector_id=None
):
    if request.method == "GET":
        return _location_get(connection, location_id, evse_uid, connector_id)
    try:
        report = locations.location_push(
            connection=connection,
            location_id=location_id,
            evse_uid=evse_uid,
            connector_id=connector_id,
            data=_body(request),
            patch=request.method == "PATCH",
        )
    except locations.UnknownLocation as exc:
        return envelope.error(envelope.UNKNOWN_LOCATION, f"Unknown {exc}.", http_status=404)
    if report.skipped:
        log.warning("ocpi: location %s from %s: %s", location_id, connection.name, report)
    return envelope.response()


def _location_get(connection, location_id, evse_uid, connector_id):
    found = (
        connection.locations.filter(ocpi_id__iexact=location_id)
        .values_list("ocpi", flat=True)
        .first()
    )
    for key, ident, wanted in (("evses", "uid", evse_uid), ("connectors", "id", connector_id)):
        if wanted is None or not found:
            break
        found = locations.find_child(found.get(key), ident, wanted)
    if not found:
        return envelope.error(envelope.UNKNOWN_LOCATION, "Unknown location.", http_status=404)
    return envelope.response(found)


@ocpi_view(("GET", "PUT", "DELETE"))
def tariff(request, connection, country_code, party_id, tariff_id):
    if request.method == "PUT":
        locations.tariff_push(connection=connection, tariff_id=tariff_id, data=_body(request))
        return envelope.response()
    if request.method == "DELETE":
        found = locations.tariff_delete(connection=connection, tariff_id=tariff_id)
    else:
        found = (
            connection.tariffs.filter(ocpi_id__iexact=tariff_id)
            .values_list("ocpi", flat=True)
            .first()
        )
    if not found:
        return envelope.error(envelope.INVALID_PARAMETERS, "Unknown tariff.", http_status=404)
    return envelope.response(found if request.method == "GET" else None)


def _paginated(request, queryset, serialize):
    """One page of a list, as OCPI paginates: offset/limit, date_from/date_to, Link, X-Total-Count, X-Limit."""
    try:
        offset = int(request.GET.get("offset", 0))
        limit = min(
            int(request.GET.get("limit", settings.OCPI_PAGE_LIMIT)), settings.OCPI_PAGE_LIMIT
        )
        bounds = {
            key: messages.moment(request.GET, key, required=False)
            for key in ("date_from", "date_to")
        }
    except ValueError:
        return envelope.error(
            envelope.INVALID_PARAMETERS, "offset and limit are numbers, dates RFC 3339."
        )
    if offset < 0 or limit < 1:
        return envelope.error(
            envelope.INVALID_PARAMETERS, "offset must be 0 or more, limit 1 or more."
        )
    if bounds["date_from"]:
        queryset = queryset.filter(updated_at__gte=bounds["date_from"])
    if bounds["date_to"]:
        queryset = queryset.filter(updated_at__lt=bounds["date_to"])
    total = queryset.count()
    headers = {"X-Total-Count": str(total), "X-Limit": str(settings.OCPI_PAGE_LIMIT)}
    if offset + limit < total:
        query = urlencode({**request.GET.dict(), "offset": offset + limit, "limit": limit})
        headers["Link"] = f'<{request.build_absolute_uri(request.path)}?{query}>; rel="next"'
    return envelope.response(
        [serialize(item) for item in queryset[offset : offset + limit]], headers=headers
    )


@ocpi_view(("GET",))
def token_list(request, connection):
    return _paginated(request, tokens.ours(connection), tokens.as_token)


@ocpi_view(("POST",))
def token_authorize(request, connection, uid):
    info = tokens.authorize(
        connection=connection, uid=uid, token_type=request.GET.get("type", "RFID")
    )
    if info is None:
        return envelope.error(envelope.UNKNOWN_TOKEN, "Unknown token.", http_status=404)
    return envelope.response(info)
