"""Django's PostgreSQL backend, with DEBUG's record of every statement made optional and a kept
connection's health check made without a round trip.

With DEBUG on, Django writes each statement's parameters into its SQL for `connection.queries`
and the `django.db.backends` logger. Under server-side binding (settings.py) that means quoting
every parameter on the client, 7-15 % of a busy process's CPU, which production (DEBUG off) never
pays. DB_LOG_QUERIES=false skips it, so bench/throughput.py measures what production spends;
tests that count queries (CaptureQueriesContext) still see every one.
"""

import select

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def queries_logged(self):
        return self.force_debug_cursor or (settings.DEBUG and settings.DB_LOG_QUERIES)

    def is_usable(self):
        """CONN_HEALTH_CHECKS asks this before each request or task uses a kept connection;
        Django's answer is a SELECT 1, a round trip and a statement each time.
        An idle connection has nothing to read unless the server has spoken: when it ends one
        (a restart, pg_terminate_backend, idle_session_timeout) it sends its reason and closes,
        and the socket turns readable. So a quiet socket is usable; anything else is asked."""
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        try:
            readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable or super().is_usable()
