"""directpay/postgresql: Django's PostgreSQL backend, its kept connections checked without a query."""

import time

import psycopg
import pytest
from django.db import connections

from tests.pytest_env import require_postgresql

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def kept(db):
    """A connection of our own (the test's is inside a transaction), as a web or worker keeps it."""
    require_postgresql()
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 42")
    yield wrapper
    wrapper.close()


def last_statement(pid: int) -> str:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        return admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[
            0
        ]


def test_a_quiet_kept_connection_is_usable_without_a_round_trip(kept):
    pid = kept.connection.info.backend_pid
    assert kept.is_usable()
    assert last_statement(pid) == "SELECT 42"  # no SELECT 1 was sent


def test_a_connection_the_server_ended_is_not_usable_and_is_replaced(kept):
    pid = kept.connection.info.backend_pid
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    deadline = time.monotonic() + 5
    while kept.is_usable() and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's goodbye is on its way
    assert not kept.is_usable()
    kept.health_check_done = False
    kept.close_if_health_check_failed()  # as Django does before a request uses it
    assert kept.connection is None
    with kept.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert kept.connection.info.backend_pid != pid


def test_anything_else_the_server_sent_is_asked_about_with_a_query(kept):
    """A notification makes the socket readable too: then Django's SELECT 1 decides."""
    pid = kept.connection.info.backend_pid
    with kept.cursor() as cursor:
        cursor.execute("LISTEN directpay_test")
    same_database = f"{ADMIN_DSN} dbname={kept.settings_dict['NAME']}"  # notifications stay in one
    with psycopg.connect(same_database, autocommit=True) as admin:
        admin.execute("NOTIFY directpay_test")
    time.sleep(0.2)
    assert kept.is_usable()
    assert last_statement(pid) == "SELECT 1"
