"""An optional human check on Pay (Cloudflare Turnstile), off unless both PAY_CHALLENGE_* keys are set.

A hook more than a feature: the page shows the widget when PAY_CHALLENGE_SITE_KEY is set, and
`passed` asks Cloudflare about the token the widget put in the form. Tests replace `verify` with a
local fake; nothing here is called while the setting is empty (the default).
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings

log = logging.getLogger(__name__)

SITEVERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
FIELD = "cf-turnstile-response"  # the form field Turnstile's widget fills in


def enabled() -> bool:
    # Both keys or none: a secret without the widget on the page would refuse every driver.
    return bool(settings.PAY_CHALLENGE_SECRET_KEY and settings.PAY_CHALLENGE_SITE_KEY)


def verify(token: str, remote_ip: str) -> bool:
    """Ask Cloudflare whether `token` is a solved challenge. Replaced by a fake in tests."""
    try:
        answer = requests.post(
            SITEVERIFY_URL,
            data={
                "secret": settings.PAY_CHALLENGE_SECRET_KEY,
                "response": token,
                "remoteip": remote_ip,
            },
            timeout=5,
        ).json()
    except (requests.RequestException, ValueError):
        # Cloudflare unreachable: let the driver pay; the rate limits still apply.
        log.exception("challenge verification failed; letting the payment through")
        return True
    return bool(answer.get("success"))


def passed(request) -> bool:
    if not enabled():
        return True
    token = request.POST.get(FIELD, "")
    return bool(token) and verify(token[:2048], request.META.get("REMOTE_ADDR", ""))
