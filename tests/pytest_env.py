"""Loaded with `-p tests.pytest_env` before Django starts: pick the real services tests run against.

PostgreSQL and Redis on 127.0.0.1 are used when they answer; in CI (CI=true) they must answer.
"""

import os
import socket

from directpay import catalogues

CI = os.environ.get("CI") == "true"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


POSTGRES = _listening(5432)
REDIS = _listening(6379)
if CI and not (POSTGRES and REDIS):
    raise RuntimeError(
        "CI runs the tests against PostgreSQL and Redis on 127.0.0.1, and one is not up"
    )

os.environ.setdefault(
    "DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/directpay" if POSTGRES else "sqlite:///var/test.sqlite3",
)
# In-process tests run Celery tasks eagerly; the tests that matter run a real worker on Redis.
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
os.environ["SIMULATOR_SPEEDUP"] = "1"
# In-process tests reach the database from threads nobody closes (the OCPP gateway's, concurrent
# Pays): no kept connections here, or the test database cannot be dropped. Stacks set their own.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")

# The pages are tested in every language: compile the catalogues as `make test` does, so a bare
# `pytest` in a fresh clone tests the current .po files too.
catalogues.compile_all()


def require_postgresql() -> None:
    """Skip a test that needs PostgreSQL when the tests run on another database; never in CI."""
    import pytest
    from django.db import connection

    if connection.vendor != "postgresql":
        assert not CI, "CI runs the tests on PostgreSQL"
        pytest.skip("PostgreSQL only")
