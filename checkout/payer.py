"""Which browser paid for a session: a signed cookie set on the Pay (and 3-D Secure confirm) answer.

The status URL is no secret (it ends up in access logs, browser history, a shared screenshot), so
what changes a session from the driver's side (Stop, the 3-D Secure confirm) also needs this
cookie. It is HttpOnly, SameSite=Lax, Secure in production, signed with SECRET_KEY under its own
salt, named after the session and limited to that session's URLs, so it is sent nowhere else.
"""

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "checkout.payer"


def _name(session) -> str:
    return f"payer_{session.public_id.hex}"


def grant(response, session):
    """Mark the browser that receives `response` as the payer of `session`."""
    response.set_signed_cookie(
        _name(session),
        session.public_id.hex,
        salt=SALT,
        max_age=settings.CHECKOUT_PAYER_COOKIE_DAYS * 24 * 3600,
        path=reverse("checkout:status", args=[session.public_id]),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


def is_payer(request, session) -> bool:
    try:
        value = request.get_signed_cookie(
            _name(session),
            salt=SALT,
            max_age=settings.CHECKOUT_PAYER_COOKIE_DAYS * 24 * 3600,
        )
    except (KeyError, signing.BadSignature):
        return False
    # The value names the session too: a cookie signed for one session never opens another.
    return value == session.public_id.hex
