"""The OCPI envelope around every response, its status codes, and the Authorization token.

Status codes (OCPI 2.2.1, transport and format): 1000 success; 2000 client error, 2001 invalid or
missing parameters, 2002 not enough information, 2003 unknown location, 2004 unknown token;
3000 server error, 3001 unable to use the client's API, 3002 unsupported version,
3003 no matching endpoints.
"""

from __future__ import annotations

import base64
import binascii

from django.http import JsonResponse
from django.utils import timezone

SUCCESS = 1000
CLIENT_ERROR = 2000
INVALID_PARAMETERS = 2001
NOT_ENOUGH_INFORMATION = 2002
UNKNOWN_LOCATION = 2003
UNKNOWN_TOKEN = 2004
SERVER_ERROR = 3000
CLIENT_API_UNUSABLE = 3001
UNSUPPORTED_VERSION = 3002
NO_MATCHING_ENDPOINTS = 3003


def timestamp() -> str:
    return timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def response(
    data=None,
    *,
    status_code: int = SUCCESS,
    message: str = "Success",
    http_status: int = 200,
    headers: dict | None = None,
) -> JsonResponse:
    body = {"status_code": status_code, "status_message": message, "timestamp": timestamp()}
    if data is not None:
        body = {"data": data, **body}
    return JsonResponse(body, status=http_status, headers=headers)


def error(status_code: int, message: str, *, http_status: int = 400) -> JsonResponse:
    return response(status_code=status_code, message=message, http_status=http_status)


def token_header(token: str, *, raw: bool = False) -> str:
    """The Authorization header we send: base64 as OCPI 2.2.1 asks, or raw for older peers."""
    return f"Token {token if raw else base64.b64encode(token.encode()).decode()}"


def tokens_in(header: str) -> list[str]:
    """What an Authorization header may carry: the token base64-encoded (2.2.1) or raw (older peers)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "token" or not value.strip():
        return []
    value = value.strip()
    candidates = [value]
    try:
        decoded = base64.b64decode(value, validate=True).decode()
        if decoded:
            candidates.insert(0, decoded)
    except (binascii.Error, UnicodeDecodeError):
        pass
    return candidates
