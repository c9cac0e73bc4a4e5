"""A correct production environment, made up: what directpay/checks.py demands of DEBUG=false
(real-looking live Stripe keys, real Stripe, SMTP, long keys). Used by the settings tests and by the
benches that run the product as production does; nothing in it is ever connected to by `check`, and
the benches override the hosts with loopback ones."""

import secrets


def production(**overrides) -> dict[str, str]:
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50)[:50],
        "ALLOWED_HOSTS": "pay.example.com",
        "STRIPE_SECRET_KEY": "sk_live_" + secrets.token_hex(24),
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + secrets.token_hex(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        "STRIPE_API_BASE": "",
        "EMAIL_URL": "smtp+tls://receipts:password@smtp.example.com:587",
        "QR_SIGNING_KEYS": secrets.token_urlsafe(32),
        # The Pay limits' counts, shared by every web process (no connection is made by `check`).
        "CACHE_URL": "redis://127.0.0.1:6379/9",
    }
    env.update(overrides)
    return env
