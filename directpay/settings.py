"""Settings: one file, every value from the environment (django-environ).

Every setting has a safe development default so a fresh clone runs with no services:
SQLite, an embedded Celery broker (kombu's filesystem transport), localstripe, the simulated CSMS.
Production sets the variables README.md lists.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

from directpay import content_policy

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="dev-only-insecure-secret-key" if DEBUG else environ.Env.NOTSET
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# A stale token told in the driver's language, and as JSON to the scripts that retry (Stop).
CSRF_FAILURE_VIEW = "directpay.csrf.csrf_failure"
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "directpay.apps.DirectpayConfig",
    "stations",
    "checkout",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "directpay.headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The HTML (and JSON, PDFs) compressed too: after WhiteNoise, which answers static files itself
    # with its own precompressed copies; before everything that could still change a response body.
    # BREACH: Django (4.2+) pads each gzip answer with up to 100 random bytes, and the CSRF token
    # in our forms is masked afresh on every response.
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "directpay.urls"
WSGI_APPLICATION = "directpay.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, worker and beat share the file: wait for the writer instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
else:
    # Django's backend, with DB_LOG_QUERIES (DEBUG's record of every statement, optional) and a
    # health check of kept connections that reads their socket (directpay/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "directpay.postgresql"
    # A new PostgreSQL connection costs ~8 ms of server CPU: keep it between requests and tasks
    # (checked before reuse) instead of one per request.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # The session speaks UTC from its start, so Django sends no set_config('TimeZone') per
    # connection (servers often report "Etc/UTC", which Django does not take for UTC).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c TimeZone=UTC")
    # Parameters bound by the server, not quoted into the SQL by psycopg (3-4 % of each process's
    # CPU), and a statement a connection has run this many times prepared on it, so PostgreSQL
    # plans it once per connection (psycopg keeps a connection's last 100). Empty: never prepare,
    # as behind a PgBouncer in transaction pooling mode.
    _prepare_threshold = env.str("DB_PREPARE_THRESHOLD", default="5")
    DATABASES["default"]["OPTIONS"].update(
        {
            "server_side_binding": True,
            "prepare_threshold": int(_prepare_threshold) if _prepare_threshold else None,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DB_LOG_QUERIES = env.bool("DB_LOG_QUERIES", default=True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("nl", "Nederlands"), ("de", "Deutsch"), ("fr", "Français")]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Amsterdam")
USE_I18N = True
# Catalogues (locale/<lang>/LC_MESSAGES/*.po); `make messages` compiles them, README "Languages".
LOCALE_PATHS = [BASE_DIR / "locale"]
# The driver's pick from the language switch (checkout/languages.py); no tracking, a preference.
LANGUAGE_COOKIE_SECURE = not DEBUG
LANGUAGE_COOKIE_SAMESITE = "Lax"
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Files the app writes (finance's PDF ZIPs): never served as static files, only through the
# admin's permission-checked download. Web and workers must share it (one host, or a shared volume).
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if not DEBUG else None
# Drivers pay here: HTTPS only in production (set SECURE_SSL_REDIRECT=false if a proxy redirects).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# One year, subdomains included: a driver's phone never tries plain HTTP again once it has paid here.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

# Staff sessions (drivers have none: their checkout is in the URL). Short, so a forgotten admin
# tab on a shared computer does not stay signed in for the default two weeks.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

# Admin login throttling (django-axes): after AXES_FAILURE_LIMIT failures for one username from
# one address, that pair waits AXES_COOLOFF_MINUTES. Per pair, so a guesser cannot lock a real
# member of staff out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address as every other limit (REMOTE_ADDR, or TRUSTED_PROXY_COUNT into X-Forwarded-For).
AXES_CLIENT_IP_CALLABLE = "directpay.clients.client_ip"

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="receipts@directpay.invalid")

# Celery. The default broker needs no server: a real worker and beat exchange messages
# through files under var/broker. Production uses Redis.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Its exchange tables, which kombu would otherwise write to ./control in the working tree.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task taken by a worker that then died (acks_late) is handed out again after this long.
    # It must exceed the longest countdown we schedule (retry backoff): a task
    # still waiting for its ETA past it is delivered twice (harmless: tasks are idempotent).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    }
    CELERY_BROKER_TRANSPORT = "directpay.broker:Transport"  # kombu's, one client per channel
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes the database connection around every task unless this is set; directpay/celery.py
# closes it before a task only when it is broken or older than DB_CONN_MAX_AGE, as requests do.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# Stripe. Defaults point at a localstripe started by `make run` (any key works there).
# With DEBUG=false there are no stand-ins: unset means empty, which directpay/checks.py refuses
# (and an empty STRIPE_API_BASE means the real Stripe).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_localstripe" if DEBUG else "")
STRIPE_PUBLISHABLE_KEY = env.str(
    "STRIPE_PUBLISHABLE_KEY", default="pk_test_localstripe" if DEBUG else ""
)
STRIPE_WEBHOOK_SECRET = env.str(
    "STRIPE_WEBHOOK_SECRET", default="whsec_localstripe" if DEBUG else ""
)
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="http://127.0.0.1:8420" if DEBUG else "")
# The browser talks to Stripe.js in production, to localstripe's shim when STRIPE_API_BASE is set.
STRIPE_JS_URL = env.str(
    "STRIPE_JS_URL",
    default=f"{STRIPE_API_BASE}/js.stripe.com/v3/"
    if STRIPE_API_BASE
    else "https://js.stripe.com/v3/",
)
STRIPE_TIMEOUT_SECONDS = env.int("STRIPE_TIMEOUT_SECONDS", default=20)
# Apple Pay: the domain association file saved from the Stripe dashboard (README "Going live").
APPLE_PAY_DOMAIN_FILE = env.str("APPLE_PAY_DOMAIN_FILE", default="")

# An optional human check on Pay (Cloudflare Turnstile); off unless both keys are set.
PAY_CHALLENGE_SITE_KEY = env.str("PAY_CHALLENGE_SITE_KEY", default="")
PAY_CHALLENGE_SECRET_KEY = env.str("PAY_CHALLENGE_SECRET_KEY", default="")

# Content-Security-Policy (django-csp): our own origin, plus Stripe's (or the localstripe serving
# the shim) for scripts, frames and connections. No inline scripts or styles anywhere, so no nonces.
# Turnstile's origin only while the challenge is on.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": content_policy.directives(
        STRIPE_JS_URL,
        STRIPE_API_BASE,
        extra_script=["https://challenges.cloudflare.com"]
        if PAY_CHALLENGE_SITE_KEY and PAY_CHALLENGE_SECRET_KEY
        else [],
    )
}
# Permissions-Policy: Payment Request (Apple Pay, Google Pay) for us and Stripe's frames only.
PERMISSIONS_POLICY = content_policy.permissions_policy(STRIPE_JS_URL)

# Charging-station management system.
CSMS_BACKEND = env.str("CSMS_BACKEND", default="simulator")
# Who we are on the OCPI network (eMSP role), and how long we wait for a CPO's platform.
OCPI_COUNTRY_CODE = env.str("OCPI_COUNTRY_CODE", default="NL")
OCPI_PARTY_ID = env.str("OCPI_PARTY_ID", default="QDP")
OCPI_BUSINESS_NAME = env.str("OCPI_BUSINESS_NAME", default="QR Direct Pay")
OCPI_TIMEOUT_SECONDS = env.float("OCPI_TIMEOUT_SECONDS", default=30)
# Added to the CPO's own command timeout before a start that never got its CommandResult fails.
OCPI_COMMAND_MARGIN_SECONDS = env.int("OCPI_COMMAND_MARGIN_SECONDS", default=30)
OCPI_PAGE_LIMIT = env.int("OCPI_PAGE_LIMIT", default=100)
OCPI_SYNC_MINUTES = env.int("OCPI_SYNC_MINUTES", default=15)
# URLs a remote party gives us (OCPI versions, endpoints, pages) go through directpay/outbound.py.
# Plain HTTP only to these hosts (which also skip the public-address check): local peers in
# development; none in production, where every peer is HTTPS on a public address.
OUTBOUND_HTTP_ALLOWED_HOSTS = env.list(
    "OUTBOUND_HTTP_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else []
)
# A larger answer is refused (bytes).
OUTBOUND_MAX_BYTES = env.int("OUTBOUND_MAX_BYTES", default=5 * 1024 * 1024)
# A Token A we issue for a CPO to register with stops working after this many days.
OCPI_TOKEN_A_DAYS = env.int("OCPI_TOKEN_A_DAYS", default=7)
CSMS_START_TIMEOUT_SECONDS = env.int("CSMS_START_TIMEOUT_SECONDS", default=60)
# A checkout not paid for by then (page closed, 3-D Secure abandoned) is failed and its hold released,
# so the EVSE is free for the next driver.
CHECKOUT_ABANDON_MINUTES = env.int("CHECKOUT_ABANDON_MINUTES", default=15)
# Repairs (checkout/sweeps.py): how long the normal path gets before a sweep steps in.
SWEEP_GRACE_SECONDS = env.int("SWEEP_GRACE_SECONDS", default=120)
# A CSMS final record whose total differs from our price by more than this is flagged for staff.
CSMS_COST_TOLERANCE_CENTS = env.int("CSMS_COST_TOLERANCE_CENTS", default=10)
CSMS_STOP_TIMEOUT_SECONDS = env.int("CSMS_STOP_TIMEOUT_SECONDS", default=300)
CSMS_STOP_GIVE_UP_SECONDS = env.int("CSMS_STOP_GIVE_UP_SECONDS", default=4 * 3600)
AUTH_EXPIRY_MARGIN_SECONDS = env.int("AUTH_EXPIRY_MARGIN_SECONDS", default=12 * 3600)
# The simulator delivers energy this many times faster than the connector's power (demo: an hour's
# energy a minute); its timestamps stay real.
SIMULATOR_SPEEDUP = env.float("SIMULATOR_SPEEDUP", default=60.0)
SIMULATOR_TICK_SECONDS = env.float("SIMULATOR_TICK_SECONDS", default=2.0)
SIMULATOR_SLOW_START_SECONDS = env.float("SIMULATOR_SLOW_START_SECONDS", default=8.0)
# OCPP direct (stations/csms/ocpp/): how long a worker waits for a charger to answer a command.
OCPP_COMMAND_TIMEOUT_SECONDS = env.float("OCPP_COMMAND_TIMEOUT_SECONDS", default=30.0)
# What chargers are told to connect to (shown when a station is registered): the gateway behind TLS.
OCPP_PUBLIC_URL = env.str("OCPP_PUBLIC_URL", default="ws://127.0.0.1:9000/ocpp/")
# A charger's payment terminal settles by itself (NotifySettlement): a settled amount further than
# this from our price of the charge is flagged for staff.
TERMINAL_SETTLEMENT_TOLERANCE_CENTS = env.int("TERMINAL_SETTLEMENT_TOLERANCE_CENTS", default=1)

# Checkout integrity (issue 10). A checkout still waiting for 3-D Secure this long after Pay is
# failed and its intent canceled, so an unanswered challenge cannot hold an EVSE for long.
CHECKOUT_3DS_MINUTES = env.int("CHECKOUT_3DS_MINUTES", default=3)
# The payer's browser gets a signed cookie on Pay (scoped to that session's URLs): only it may
# press Stop on the status page. Kept past the longest hold (Stripe: 7 days).
CHECKOUT_PAYER_COOKIE_DAYS = env.int("CHECKOUT_PAYER_COOKIE_DAYS", default=8)
# Weak signal (issue 12): the checkout page explains and offers Retry when Stripe.js has not loaded
# after this long; the status page says its figures are stale when it has not heard from us for this long.
CHECKOUT_STRIPE_JS_TIMEOUT_SECONDS = env.float("CHECKOUT_STRIPE_JS_TIMEOUT_SECONDS", default=10)
CHECKOUT_STATUS_STALE_SECONDS = env.float("CHECKOUT_STATUS_STALE_SECONDS", default=10)

# QR stickers are signed with their own keys (newest first), never SECRET_KEY, so rotating
# SECRET_KEY does not void printed stickers.
QR_SIGNING_KEYS = env.list(
    "QR_SIGNING_KEYS", default=["dev-only-qr-key"] if DEBUG else environ.Env.NOTSET
)

# Who is asking (directpay/clients.py): how many reverse proxies in front of us append the address
# they received from to X-Forwarded-For. 0: the header is ignored (anyone can write it).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# QR scans count distinct clients per EVSE and day (stations/scans.py). Anyone can send a forged
# code, so a voided/forged-code tamper signal needs this many clients in a week, not one request.
SCAN_TAMPER_MIN_CLIENTS = env.int("SCAN_TAMPER_MIN_CLIENTS", default=3)

# Abuse limits on Pay (checkout/pay_limits.py), counted in the default cache: it must be shared by
# every web process, so production sets CACHE_URL=redis://... The default (local memory) serves
# `make run`, whose single runserver process is the only one that counts; no table or server needed.
CACHES = {"default": env.cache_url_config(env.str("CACHE_URL", default="") or "locmemcache://")}
# Off only for load tests and benches that pay many times from one address.
RATELIMIT_ENABLE = env.bool("PAY_LIMITS_ENABLED", default=True)
# django-ratelimit rates: "<count>/<period>" with s, m, h or d, e.g. "5/10m"; empty turns one off.
PAY_RATE_PER_IP = env.str("PAY_RATE_PER_IP", default="5/10m")
PAY_RATE_PER_EVSE = env.str("PAY_RATE_PER_EVSE", default="10/10m")
PAY_RATE_PER_CARD = env.str("PAY_RATE_PER_CARD", default="5/h")
# A tab that lost Pay's answer asks which charge its press opened (checkout.views.resume): a
# guess needs the tab's random id, and this limit makes guessing hopeless.
PAY_RESUME_RATE_PER_IP = env.str("PAY_RESUME_RATE_PER_IP", default="30/10m")
# Declined payments an EVSE may see before Pay pauses there (and staff are asked to look).
PAY_DECLINES_PER_EVSE = env.str("PAY_DECLINES_PER_EVSE", default="5/h")
# Declines across all EVSEs that make a spike worth a staff look (a flag, not a limit).
PAY_DECLINES_SPIKE_TOTAL = env.str("PAY_DECLINES_SPIKE_TOTAL", default="50/h")
# The client's address as every limit takes it (TRUSTED_PROXY_COUNT above).
RATELIMIT_IP_META_KEY = "directpay.clients.client_ip"
# A cache outage must not stop every driver paying: counting fails open (and is logged).
RATELIMIT_FAIL_OPEN = True

# Receipts (checkout/receipts.py, checkout/vat.py): the VAT rate, in percent, for tariff prices
# that state no VAT when their operator has no `vat_rate` set (such receipts are flagged for staff).
DEFAULT_VAT_PERCENT = env.str("DEFAULT_VAT_PERCENT", default="21")

# Finding a receipt again (checkout/lookup.py): lookups per client address and per EVSE ID typed,
# django-ratelimit rates in the default cache as for Pay ("" turns one off). Receipt links in
# e-mails and on pages are signed and stop working after RECEIPT_LINK_MAX_AGE_DAYS.
RECEIPT_LOOKUP_RATE_PER_IP = env.str("RECEIPT_LOOKUP_RATE_PER_IP", default="10/h")
RECEIPT_LOOKUP_RATE_PER_EVSE = env.str("RECEIPT_LOOKUP_RATE_PER_EVSE", default="30/h")
RECEIPT_LINK_MAX_AGE_DAYS = env.int("RECEIPT_LINK_MAX_AGE_DAYS", default=730)
# Business invoices (checkout/invoices.py): requests per client address; VAT ids are format-checked
# offline. Asking the EU's VIES service too is off by default; when on, it goes through
# directpay/outbound.py (VIES's REST endpoint, HTTPS on a public address).
INVOICE_RATE_PER_IP = env.str("INVOICE_RATE_PER_IP", default="10/h")
INVOICE_VIES_CHECK = env.bool("INVOICE_VIES_CHECK", default=False)
INVOICE_VIES_URL = env.str(
    "INVOICE_VIES_URL",
    default="https://ec.europa.eu/taxation_customs/vies/rest-api/check-vat-number",
)
INVOICE_VIES_TIMEOUT_SECONDS = env.int("INVOICE_VIES_TIMEOUT_SECONDS", default=10)
# Reconciliation with Stripe (checkout/reconciliation.py): once a day at this hour (UTC), the
# payments captured, refunded or canceled in the last RECONCILIATION_DAYS days are compared with
# Stripe (overlapping days: a missed run is covered by the next).
RECONCILIATION_HOUR = env.int("RECONCILIATION_HOUR", default=4)
RECONCILIATION_DAYS = env.int("RECONCILIATION_DAYS", default=2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

CELERY_BEAT_SCHEDULE = {}
if CSMS_BACKEND == "simulator":
    CELERY_BEAT_SCHEDULE["simulator-tick"] = {
        "task": "stations.tasks.simulator_tick",
        "schedule": SIMULATOR_TICK_SECONDS,
        "options": {"expires": SIMULATOR_TICK_SECONDS * 2},
    }
CELERY_BEAT_SCHEDULE["ocpi-sync-stations"] = {
    "task": "stations.tasks.ocpi_sync_all",
    "schedule": OCPI_SYNC_MINUTES * 60.0,
    "options": {"expires": OCPI_SYNC_MINUTES * 60.0},
}
CELERY_BEAT_SCHEDULE["sessions-sweep-abandoned-checkouts"] = {
    "task": "checkout.tasks.sweep_abandoned_checkouts",
    "schedule": 60.0,
    "options": {"expires": 120},
}
CELERY_BEAT_SCHEDULE["money-sweep-strays"] = {
    "task": "checkout.tasks.sweep_strays",
    "schedule": 60.0,
    "options": {"expires": 120},
}
# A charger that never starts: its hold goes back at most this long after its deadline (one
# indexed read of the sessions still starting; cheaper than a countdown task per session).
START_TIMEOUT_SWEEP_SECONDS = env.float("START_TIMEOUT_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["sessions-sweep-start-timeouts"] = {
    "task": "checkout.tasks.sweep_start_timeouts",
    "schedule": START_TIMEOUT_SWEEP_SECONDS,
    "options": {"expires": START_TIMEOUT_SWEEP_SECONDS * 2},
}
CELERY_BEAT_SCHEDULE["money-reconcile-stripe"] = {
    "task": "checkout.tasks.reconcile_stripe",
    "schedule": crontab(hour=RECONCILIATION_HOUR, minute=15),
    "options": {"expires": 6 * 3600},
}
# Where the cache is Redis, the checkout page holds scan marks there; they become rows here (the
# admin's scan counts lag by at most this much). Without Redis, nothing is held and this does nothing.
CELERY_BEAT_SCHEDULE["stations-scans-flush"] = {
    "task": "stations.tasks.scans_flush",
    "schedule": 300.0,
    "options": {"expires": 300},
}
# The day's scan marks (hashes of client addresses) become counts and are deleted soon after the
# day ends; hourly, so a beat restarted at any time still does it within the hour.
CELERY_BEAT_SCHEDULE["stations-scans-roll-up"] = {
    "task": "stations.tasks.scans_roll_up",
    "schedule": 3600.0,
    "options": {"expires": 3600},
}

# One worker process per queue (Procfile), so no queue's backlog or slow peer delays another's:
# money (capture, cancel, refunds, sweeps), events (stored Stripe webhooks: Stripe may send a
# burst of them, and a capture must not wait behind it), csms (start and stop commands to
# chargers), receipts (PDF and e-mail), simulator (the embedded charger network, not production).
CELERY_TASK_DEFAULT_QUEUE = "money"
CELERY_TASK_ROUTES = {
    "checkout.tasks.stripe_event_process": {"queue": "events"},
    "checkout.tasks.receipt_*": {"queue": "receipts"},
    "checkout.tasks.session_start": {"queue": "csms"},
    "checkout.tasks.csms_stop": {"queue": "csms"},
    "stations.tasks.ocpi_*": {"queue": "csms"},
    "stations.tasks.simulator_*": {"queue": "simulator"},
}
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER
