"""The OCPI credentials handshake, both ways, and the state of each connection.

We register with a CPO (we were given its versions URL and a Token A), or a CPO registers with us
(we gave it our versions URL and a Token A from `connection_invite`). Either way we end with the
CPO's 2.2.1 endpoints, a token to call it with, and a fresh token it calls us with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from stations.models import OcpiConnection

from ..base import CsmsError
from . import client

VERSION = "2.2.1"


@dataclass(frozen=True)
class Credentials:
    token: str
    url: str
    roles: list[dict]


class CredentialsInvalid(ValueError):
    """A credentials object we cannot use; the message says which field."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def versions_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}{reverse('ocpi:versions')}"


def our_credentials(connection: OcpiConnection) -> dict:
    return {
        "token": connection.token_ours,
        "url": versions_url(),
        "roles": [
            {
                "role": "EMSP",
                "party_id": settings.OCPI_PARTY_ID,
                "country_code": settings.OCPI_COUNTRY_CODE,
                "business_details": {"name": settings.OCPI_BUSINESS_NAME},
            }
        ],
    }


def parse_credentials(data) -> Credentials:
    if not isinstance(data, dict):
        raise CredentialsInvalid("the credentials must be an object")
    token, url, roles = data.get("token"), data.get("url"), data.get("roles")
    if not isinstance(token, str) or not 0 < len(token) <= 64:
        raise CredentialsInvalid("token: a string of 1 to 64 characters is required")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise CredentialsInvalid("url: the versions URL is required")
    if not isinstance(roles, list) or not roles:
        raise CredentialsInvalid("roles: at least one role is required")
    for role in roles:
        if not isinstance(role, dict) or not all(
            isinstance(role.get(k), str) for k in ("role", "party_id", "country_code")
        ):
            raise CredentialsInvalid("roles: each role needs role, party_id and country_code")
        if len(role["country_code"]) != 2 or not 0 < len(role["party_id"]) <= 3:
            raise CredentialsInvalid("roles: country_code has 2 characters, party_id up to 3")
    return Credentials(token=token, url=url, roles=roles)


def _cpo_role(creds: Credentials) -> dict:
    return next((r for r in creds.roles if r["role"] == "CPO"), creds.roles[0])


def fetch_endpoints(connection: OcpiConnection, url: str, token: str) -> tuple[str, list[dict]]:
    """Their versions list, then the 2.2.1 details: the modules and where they live."""
    versions = client.data(client.call(connection, "GET", url, token=token))
    if not isinstance(versions, list):
        raise CsmsError("the CPO's versions are not a list", permanent=True)
    match = next((v for v in versions if isinstance(v, dict) and v.get("version") == VERSION), None)
    if match is None:
        # Short version labels only: this text reaches staff, never more of the CPO's answer.
        offered = ", ".join(str(v.get("version"))[:10] for v in versions[:5] if isinstance(v, dict))
        raise CsmsError(
            f"the CPO offers OCPI {offered or 'nothing'}, not {VERSION}", permanent=True
        )
    if not isinstance(match.get("url"), str):
        raise CsmsError("the CPO's 2.2.1 entry has no URL", permanent=True)
    details = client.data(client.call(connection, "GET", match["url"], token=token))
    endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(endpoints, list) or not all(
        isinstance(e, dict) and isinstance(e.get("url"), str) for e in endpoints
    ):
        raise CsmsError("the CPO's version details list no usable endpoints", permanent=True)
    return VERSION, endpoints


def token_a_expiry():
    return timezone.now() + timedelta(days=settings.OCPI_TOKEN_A_DAYS)


def connection_invite(*, name: str) -> OcpiConnection:
    """A Token A for a CPO that will register with us: give it `token_ours` and versions_url().
    It expires after OCPI_TOKEN_A_DAYS (whoever holds it can make us call a URL of its choice)."""
    return OcpiConnection.objects.create(
        name=name,
        state=OcpiConnection.State.INVITED,
        token_ours=new_token(),
        token_a_expires_at=token_a_expiry(),
    )


def token_a_revoke(*, connection_ids) -> int:
    """Token A of these invited connections stops working now. Returns how many were revoked."""
    return OcpiConnection.objects.filter(
        pk__in=connection_ids, state=OcpiConnection.State.INVITED
    ).update(token_a_expires_at=timezone.now())


def connection_register(*, connection_id: int) -> OcpiConnection:
    """We register with the CPO: their Token A is in token_theirs, their versions URL in versions_url."""
    connection = OcpiConnection.objects.get(pk=connection_id)
    try:
        version, endpoints = fetch_endpoints(
            connection, connection.versions_url, connection.token_theirs
        )
        url = next((e["url"] for e in endpoints if e.get("identifier") == "credentials"), None)
        if not url:
            raise CsmsError("the CPO has no credentials endpoint", permanent=True)
        # Saved before the POST: the CPO calls our versions endpoint with it while answering.
        connection.token_ours = new_token()
        connection.save(update_fields=["token_ours", "updated_at"])
        theirs = parse_credentials(
            client.data(client.call(connection, "POST", url, json=our_credentials(connection)))
        )
    except (CsmsError, CredentialsInvalid) as exc:
        OcpiConnection.objects.filter(pk=connection_id).update(last_error=str(exc)[:300])
        raise
    role = _cpo_role(theirs)
    with transaction.atomic():
        connection = OcpiConnection.objects.select_for_update().get(pk=connection_id)
        connection.version, connection.endpoints = version, endpoints
        connection.token_theirs = theirs.token
        connection.versions_url = theirs.url
        connection.country_code, connection.party_id = role["country_code"], role["party_id"]
        connection.business_name = (role.get("business_details") or {}).get("name", "")[:100]
        connection.state, connection.last_error = OcpiConnection.State.CONNECTED, ""
        connection.save()
    return connection


def connection_accept(*, connection: OcpiConnection, creds: Credentials) -> OcpiConnection:
    """A CPO registers with us (POST) or updates its registration (PUT): fetch its endpoints with
    the token it gave us, then issue it a fresh token (its Token A stops working)."""
    version, endpoints = fetch_endpoints(connection, creds.url, creds.token)
    role = _cpo_role(creds)
    with transaction.atomic():
        connection = OcpiConnection.objects.select_for_update().get(pk=connection.pk)
        connection.versions_url, connection.version, connection.endpoints = (
            creds.url,
            version,
            endpoints,
        )
        connection.token_theirs, connection.token_ours = creds.token, new_token()
        connection.country_code, connection.party_id = role["country_code"], role["party_id"]
        connection.business_name = (role.get("business_details") or {}).get("name", "")[:100]
        connection.state, connection.last_error = OcpiConnection.State.CONNECTED, ""
        connection.token_a_expires_at = None
        connection.save()
    return connection


def connection_suspend(*, connection: OcpiConnection) -> None:
    """The CPO deleted its credentials: it can no longer call us until it registers again."""
    OcpiConnection.objects.filter(pk=connection.pk).update(state=OcpiConnection.State.SUSPENDED)
