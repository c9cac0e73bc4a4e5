"""Production fails closed: with DEBUG=false, every development stand-in is a system check error.

The development defaults (localstripe's keys and URL, the console e-mail backend, short dev keys)
make a fresh clone run; in production each would be a hole (a public webhook secret trusts forged
disputes, console e-mail prints receipts with addresses to the log). `manage.py check` (so runserver
and migrate, the release step) reports them; gunicorn and Celery run no checks, so wsgi.py, asgi.py
and celery.py call `fail_closed()`, which raises instead of serving.
"""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

DEV_SECRET_KEY = "dev-only-insecure-secret-key"
STAND_INS = {"sk_test_localstripe", "pk_test_localstripe", "whsec_localstripe"}
MIN_SECRET_KEY_CHARS = 50  # Django's own deploy check (security.W009) asks for as many
MIN_QR_KEY_BYTES = 32  # HMAC-SHA256: a key shorter than its output weakens the signature
DEV_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
}


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _stripe_key(value: str, prefixes: tuple, name: str, error_id: str) -> list:
    if value and value not in STAND_INS and value.startswith(prefixes):
        return []
    if not value:
        problem = "is not set"
    elif value in STAND_INS:
        problem = "is localstripe's stand-in"
    else:
        problem = "does not look like a Stripe key"
    return [
        checks.Error(
            f"{name} {problem}.",
            hint=f"Set {name} to the key from the Stripe dashboard (starting {' or '.join(prefixes)}).",
            id=error_id,
        )
    ]


def _stripe_url(name: str, value: str, error_id: str, empty_ok: bool) -> list:
    if not value and empty_ok:
        return []
    if value and urlsplit(value).scheme == "https" and not _is_local(value):
        return []
    return [
        checks.Error(
            f"{name}={value!r} is not Stripe: it points at a stand-in (localstripe) or is not HTTPS.",
            hint=f"Leave {name} unset for the real Stripe. A staging stand-in must be served over HTTPS "
            "at a public name.",
            id=error_id,
        )
    ]


@checks.register(checks.Tags.security)
def production_settings(app_configs=None, **kwargs) -> list:
    if settings.DEBUG:
        return []
    errors = []
    if settings.SECRET_KEY == DEV_SECRET_KEY or len(settings.SECRET_KEY) < MIN_SECRET_KEY_CHARS:
        errors.append(
            checks.Error(
                f"SECRET_KEY is the development key or shorter than {MIN_SECRET_KEY_CHARS} characters.",
                hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="directpay.E001",
            )
        )
    errors += _stripe_key(
        settings.STRIPE_SECRET_KEY, ("sk_", "rk_"), "STRIPE_SECRET_KEY", "directpay.E002"
    )
    errors += _stripe_key(
        settings.STRIPE_PUBLISHABLE_KEY, ("pk_",), "STRIPE_PUBLISHABLE_KEY", "directpay.E003"
    )
    errors += _stripe_key(
        settings.STRIPE_WEBHOOK_SECRET, ("whsec_",), "STRIPE_WEBHOOK_SECRET", "directpay.E004"
    )
    errors += _stripe_url("STRIPE_API_BASE", settings.STRIPE_API_BASE, "directpay.E005", True)
    errors += _stripe_url("STRIPE_JS_URL", settings.STRIPE_JS_URL, "directpay.E006", False)
    if settings.EMAIL_BACKEND in DEV_EMAIL_BACKENDS:
        errors.append(
            checks.Error(
                f"E-mail goes to {settings.EMAIL_BACKEND.split('.')[-2]}, not to drivers: "
                "receipts (with their addresses) would end up in logs or files.",
                hint="Set EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587",
                id="directpay.E007",
            )
        )
    keys = settings.QR_SIGNING_KEYS
    if not keys or any(len(key.encode()) < MIN_QR_KEY_BYTES for key in keys):
        errors.append(
            checks.Error(
                f"QR_SIGNING_KEYS needs at least one key, each at least {MIN_QR_KEY_BYTES} bytes: "
                "a short key lets anyone forge stickers.",
                hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                id="directpay.E008",
            )
        )
    return errors


def fail_closed() -> None:
    """For processes that run no system checks (gunicorn, Celery): refuse to start on an error."""
    errors = production_settings()
    if errors:
        raise ImproperlyConfigured(
            "Refusing to start with DEBUG=false:\n"
            + "\n".join(f"{error.id}: {error.msg} {error.hint}" for error in errors)
        )
