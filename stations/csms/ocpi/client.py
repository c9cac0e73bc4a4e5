"""Our calls to a CPO's OCPI platform: token, request and correlation ids, envelope checks.

Every URL here came from the CPO, so every call goes through directpay.outbound (public addresses,
HTTPS, no redirects, size cap, total deadline). Error texts never carry the CPO's answer: they may
reach the CPO again (status_message) or staff, and the URL might not be the CPO's at all. The
detail is logged.
"""

from __future__ import annotations

import logging
import uuid

import requests
from django.conf import settings

from directpay import outbound

from ..base import CsmsError
from . import envelope

log = logging.getLogger(__name__)


def call(
    connection,
    method: str,
    url: str,
    *,
    token: str | None = None,
    json=None,
    params=None,
    correlation_id: str | None = None,
) -> requests.Response:
    """One OCPI request. Transport failures and 5xx are transient CsmsErrors; 4xx are permanent."""
    request_id = str(uuid.uuid4())
    headers = {
        "Authorization": envelope.token_header(
            token or connection.token_theirs, raw=connection.raw_token
        ),
        "X-Request-ID": request_id,
        "X-Correlation-ID": correlation_id or request_id,
        "OCPI-from-country-code": settings.OCPI_COUNTRY_CODE,
        "OCPI-from-party-id": settings.OCPI_PARTY_ID,
    }
    if connection.country_code and connection.party_id:
        headers["OCPI-to-country-code"] = connection.country_code
        headers["OCPI-to-party-id"] = connection.party_id
    try:
        answer = outbound.request(
            method,
            url,
            headers=headers,
            json=json,
            params=params,
            timeout=settings.OCPI_TIMEOUT_SECONDS,
        )
    except outbound.OutboundError as exc:
        raise CsmsError(f"{method} {url}: {exc}") from exc
    log.info(
        "ocpi %s %s -> %s (X-Request-ID %s, X-Correlation-ID %s)",
        method,
        url,
        answer.status_code,
        request_id,
        headers["X-Correlation-ID"],
    )
    if answer.status_code >= 500 or answer.status_code == 429:
        raise CsmsError(f"{method} {url}: HTTP {answer.status_code}")
    if answer.status_code >= 400:
        log.warning(
            "ocpi %s %s answered HTTP %s: %.300r", method, url, answer.status_code, answer.text
        )
        raise CsmsError(f"{method} {url}: HTTP {answer.status_code}", permanent=True)
    return answer


def data(answer: requests.Response):
    """The `data` of an OCPI envelope whose status_code is 1xxx; anything else is a permanent error."""
    try:
        body = answer.json()
    except ValueError as exc:
        log.warning("ocpi %s answered no JSON: %.300r", answer.url, answer.text)
        raise CsmsError(f"not JSON from {answer.url}", permanent=True) from exc
    code = body.get("status_code") if isinstance(body, dict) else None
    if not isinstance(code, int) or not 1000 <= code < 2000:
        log.warning("ocpi %s answered an error: %.300r", answer.url, answer.text)
        raise CsmsError(
            f"{answer.url} answered status_code {code if isinstance(code, int) else '?'}",
            permanent=True,
        )
    return body.get("data")
