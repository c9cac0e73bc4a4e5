"""What PostgreSQL holds prepared on the test's database connection (psycopg prepares a statement
once a connection has run it settings' `prepare_threshold` times)."""

from django.conf import settings
from django.db import connection


def threshold() -> int:
    return settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]


def held(sql: str) -> list[str]:
    """The statements prepared on this connection whose text begins as `sql` does up to its
    first parameter (psycopg sends $1, $2... where Django's SQL has %s)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    return [s for s in statements if s.startswith(sql.split("%s")[0])]
