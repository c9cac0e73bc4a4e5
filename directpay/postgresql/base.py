"""Django's PostgreSQL backend, with DEBUG's record of every statement made optional.

With DEBUG on, Django writes each statement's parameters into its SQL for `connection.queries`
and the `django.db.backends` logger. Under server-side binding (settings.py) that means quoting
every parameter on the client, 7-15 % of a busy process's CPU, which production (DEBUG off) never
pays. DB_LOG_QUERIES=false skips it, so bench/throughput.py measures what production spends;
tests that count queries (CaptureQueriesContext) still see every one.
"""

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def queries_logged(self):
        return self.force_debug_cursor or (settings.DEBUG and settings.DB_LOG_QUERIES)
