"""Production settings: safe by default, and no silent development fallbacks."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.production_env import production
from tests.pytest_env import require_postgresql

ROOT = Path(__file__).resolve().parent.parent
# What a deployment sets (README.md, Deployment); the tests start from none of it.
CONFIGURED = (
    "SECRET_KEY",
    "QR_SIGNING_KEYS",
    "DEBUG",
    "EMAIL_URL",
    "ALLOWED_HOSTS",
    "DB_CONN_MAX_AGE",
)


def run(args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in CONFIGURED and not k.startswith(("STRIPE_", "SECURE_"))
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the tests read the exit code
    )


def manage(*args, **env):
    return run(["manage.py", *args], **env)


def reported(result) -> str:
    return result.stdout + result.stderr


def test_production_passes_the_deploy_check():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production())
    # Preloading is the operator's decision (it is hard to undo); everything else must be clean.
    problems = [
        line
        for line in reported(result).splitlines()
        if ("(security." in line or "(directpay." in line or "(pay_limits." in line)
        and "W021" not in line
    ]
    assert problems == [], reported(result)


def test_production_refuses_to_start_without_its_secrets():
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


DEV_KEY = "dev-only-insecure-secret-key"
REAL_JS = "https://js.stripe.com/v3/"

# Each careless production setting -> the one error `check --deploy` must report for it.
MISTAKES = [
    ({"SECRET_KEY": DEV_KEY}, "directpay.E001"),
    ({"SECRET_KEY": "too-short-secret"}, "directpay.E001"),
    ({"STRIPE_SECRET_KEY": ""}, "directpay.E002"),
    ({"STRIPE_SECRET_KEY": "sk_test_localstripe"}, "directpay.E002"),
    ({"STRIPE_SECRET_KEY": "not-a-stripe-key"}, "directpay.E002"),
    ({"STRIPE_PUBLISHABLE_KEY": ""}, "directpay.E003"),
    ({"STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe"}, "directpay.E003"),
    ({"STRIPE_WEBHOOK_SECRET": ""}, "directpay.E004"),
    ({"STRIPE_WEBHOOK_SECRET": "whsec_localstripe"}, "directpay.E004"),
    ({"STRIPE_API_BASE": "http://127.0.0.1:8420", "STRIPE_JS_URL": REAL_JS}, "directpay.E005"),
    (
        {"STRIPE_API_BASE": "http://stripe-mock.example.com", "STRIPE_JS_URL": REAL_JS},
        "directpay.E005",
    ),
    ({"STRIPE_API_BASE": "https://10.0.0.5", "STRIPE_JS_URL": REAL_JS}, "directpay.E005"),
    ({"STRIPE_JS_URL": "http://127.0.0.1:8420/js.stripe.com/v3/"}, "directpay.E006"),
    ({"EMAIL_URL": "consolemail://"}, "directpay.E007"),
    ({"EMAIL_URL": "filemail:////tmp/mail"}, "directpay.E007"),
    ({"QR_SIGNING_KEYS": "k"}, "directpay.E008"),
    ({"QR_SIGNING_KEYS": secrets.token_urlsafe(32) + ",short-old-key"}, "directpay.E008"),
    ({"CACHE_URL": "locmemcache://"}, "pay_limits.E001"),
    ({"CACHE_URL": ""}, "pay_limits.E001"),
]


@pytest.mark.parametrize(("mistake", "error_id"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_each_production_mistake_is_its_own_deploy_check_error(mistake, error_id):
    result = manage("check", "--deploy", **production(**mistake))
    assert result.returncode != 0
    ids = {
        word.strip("():")
        for word in reported(result).split()
        if word.startswith(("(directpay.", "(pay_limits."))
    }
    assert ids == {error_id}, reported(result)


def test_unset_email_and_stripe_are_errors_not_development_defaults():
    env = production()
    for name in (
        "EMAIL_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
    ):
        del env[name]
    result = manage("check", "--deploy", **env)
    for error_id in ("E002", "E003", "E004", "E007"):
        assert f"directpay.{error_id}" in reported(result), reported(result)


def test_a_staging_stand_in_over_https_is_allowed():
    result = manage(
        "check",
        "--deploy",
        **production(
            STRIPE_API_BASE="https://stripe-staging.example.com",
            STRIPE_JS_URL="https://stripe-staging.example.com/js.stripe.com/v3/",
        ),
    )
    assert "(directpay." not in reported(result), reported(result)


def test_gunicorn_and_celery_refuse_to_start_with_stand_ins():
    """They run no system checks: importing the WSGI app or starting a worker must fail instead."""
    bad = production(STRIPE_WEBHOOK_SECRET="whsec_localstripe")
    wsgi = run(["-c", "import directpay.wsgi"], **bad)
    assert wsgi.returncode != 0 and "directpay.E004" in wsgi.stderr, wsgi.stderr
    good = run(["-c", "import directpay.wsgi"], **production())
    assert good.returncode == 0, good.stderr
    worker = run(
        [
            "-c",
            "from directpay.celery import app; from celery.signals import worker_init; "
            + "worker_init.send(sender=None)",
        ],
        **bad,
    )
    assert worker.returncode != 0 and "directpay.E004" in worker.stderr, worker.stderr


def test_a_web_process_loads_its_views_and_broker_transport_at_boot():
    """Not on a driver's first Pay: gunicorn imports directpay.wsgi in each worker it starts."""
    loaded = run(
        [
            "-c",
            "import sys, directpay.wsgi; "
            + "print(' '.join(m for m in ('checkout.views', 'kombu.transport.redis', "
            + "'directpay.broker') if m in sys.modules))",
        ],
        **production(CELERY_BROKER_URL="redis://127.0.0.1:6379/15"),
    )
    assert loaded.returncode == 0, loaded.stderr
    # directpay.broker: a Redis broker gets our transport (one Redis client per channel).
    assert loaded.stdout.split() == ["checkout.views", "kombu.transport.redis", "directpay.broker"]


def test_development_needs_no_configuration():
    result = manage("check")
    assert result.returncode == 0, reported(result)


def test_production_defaults_keep_browsers_on_https_for_a_year():
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_AGE)"
    )
    result = run(["-c", code], DJANGO_SETTINGS_MODULE="directpay.settings", **production())
    hsts, subdomains, session_age = result.stdout.split()[-3:]
    assert (int(hsts), subdomains) == (31536000, "True"), result.stdout + result.stderr
    assert int(session_age) <= 8 * 3600


def test_postgresql_connections_are_kept_and_speak_utc_from_the_start():
    """No new connection per request, and no set_config('TimeZone') on each one (the defaults,
    outside the test run, which closes its connections after each test)."""
    require_postgresql()
    code = (
        "from django.db import connection as c; c.ensure_connection(); "
        "print(c.settings_dict['CONN_MAX_AGE'], c.settings_dict['CONN_HEALTH_CHECKS'], "
        "c.connection.info.parameter_status('TimeZone'), c.ensure_timezone())"
    )
    result = manage("shell", "-c", code, DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres")
    # Kept 300 s and checked before reuse; the server says UTC, so Django has nothing to set.
    assert "300 True UTC False" in result.stdout.splitlines(), reported(result)


@pytest.mark.parametrize(("setting", "logged"), [(None, 1), ("false", 0)])
def test_debug_records_statements_unless_told_not_to(setting, logged):
    """DEBUG keeps every statement (connection.queries) unless DB_LOG_QUERIES=false, which the
    throughput bench sets; a test counting queries still sees them either way."""
    require_postgresql()
    code = (
        "from django.db import connection as c; "
        "from django.test.utils import CaptureQueriesContext; "
        "c.cursor().execute('SELECT %s', [1]); recorded = len(c.queries); "
        "counted = CaptureQueriesContext(c); counted.__enter__(); "
        "c.cursor().execute('SELECT %s', [2]); counted.__exit__(None, None, None); "
        "print('recorded', recorded, 'counted', len(counted), c.vendor)"
    )
    env = {"DEBUG": "true", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
    if setting is not None:
        env["DB_LOG_QUERIES"] = setting
    result = manage("shell", "-c", code, **env)
    assert f"recorded {logged} counted 1 postgresql" in result.stdout.splitlines(), reported(result)
