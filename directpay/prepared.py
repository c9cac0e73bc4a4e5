"""Queries and writes compiled once per process and, on PostgreSQL, planned once per connection.

On a page served many times a second the ORM's work is mostly not the data: the checkout page's
seven-table query took 1.5 ms to compile in Django and 1.35 ms to plan in PostgreSQL, against
0.26 ms to run. A PreparedQuery compiles its queryset once, with stand-in values for its arguments;
each call runs that SQL with the real values through Django's cursor, so the query is logged and
counted like any other, and makes the rows into model instances as QuerySet's own iteration does
(select_related and annotations included). On other databases (SQLite under `make run`) it is the
queryset, run as usual.

A PreparedInsert does the same for a row written at every step of every session (the audit
trail, a webhook as received), and a PreparedUpdate for the columns a status change writes:
Model.save's work is most of such a write's cost.

The planning once per connection is psycopg's: on PostgreSQL the parameters are bound by the
server and a statement a connection has run `prepare_threshold` times is prepared there
(settings.py, DB_PREPARE_THRESHOLD), these and every other statement the ORM sends; the same SQL
on every call is what lets psycopg prepare these after their first few. A prepared statement
lives as long as its connection: behind a PgBouncer in transaction pooling mode, turn it off
(README, deployment).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import DatabaseError, connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

# A stand-in for an id argument: no row has it, and no query's other parameters are likely to.
STAND_IN_ID = -7_340_023
STAND_IN_TEXT = "stand-in-7340023"  # the same, for a text argument
STAND_IN_MOMENT = datetime(1999, 12, 31, 23, 59, 58, 123456, tzinfo=UTC)  # and for a moment


class PreparedQuery:
    """`build(**arguments)` returns the queryset; `stand_ins` gives each argument a value that
    appears exactly once among the compiled query's parameters, so its place there is known.
    `name` says which query an error is about."""

    def __init__(self, name: str, build: Callable[..., QuerySet], **stand_ins):
        self.name, self.build, self.stand_ins = name, build, stand_ins
        self._compiled = None
        self._lock = threading.Lock()

    def __call__(self, **arguments) -> list:
        if self._compiled is None:
            queryset = self.build(**arguments)
            if connections[queryset.db].vendor != "postgresql":
                return list(queryset)
            with self._lock:
                if self._compiled is None:
                    self._compiled = _Compiled(
                        self.name, self.build(**self.stand_ins), self.stand_ins
                    )
        return self._compiled.run(arguments)

    def first(self, **arguments):
        """The first row, or None."""
        rows = self(**arguments)
        return rows[0] if rows else None

    def get(self, **arguments):
        """The first row; the model's DoesNotExist if there is none, as QuerySet.get raises."""
        rows = self(**arguments)
        if not rows:
            model = self.build(**arguments).model
            raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
        return rows[0]


class _Compiled:
    def __init__(self, name: str, queryset: QuerySet, stand_ins: dict):
        self.db = queryset.db
        self.compiler = queryset.query.get_compiler(using=self.db)
        sql, params = self.compiler.as_sql()
        places = {}  # index among the parameters -> the argument there
        for argument, value in stand_ins.items():
            found = [i for i, param in enumerate(params) if param == value]
            if len(found) != 1:
                raise ValueError(
                    f"{name}: stand-in for {argument!r} is among the parameters {len(found)} times"
                )
            places[found[0]] = argument
        self.arguments = [places[index] for index in sorted(places)]  # as their %s come
        self.sql = _with_literals(sql, params, places, connections[self.db])

    def run(self, arguments: dict) -> list:
        connection = connections[self.db]
        if self.compiler.query.select_for_update and connection.get_autocommit():
            # Django's own check, made when it compiles: ours compiled once, perhaps elsewhere.
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [arguments[argument] for argument in self.arguments])
            rows = cursor.fetchall()
        return list(self._instances(rows))

    def _instances(self, rows):
        # As django.db.models.query.ModelIterable makes them, from rows we fetched ourselves.
        compiler, db = self.compiler, self.db
        klass_info = compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in compiler.select[start:end]]
        populators = get_related_populators(klass_info, compiler.select, db)
        for row in compiler.results_iter([rows]):
            obj = klass_info["model"].from_db(db, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            for attribute, position in compiler.annotation_col_map.items():
                setattr(obj, attribute, row[position])
            yield obj


def _with_literals(sql: str, params, arguments: dict, connection) -> str:
    """`sql` with each parameter that is no argument written in as a literal and the arguments'
    left as %s: a statement's generic plan then still sees its constants (the statuses in a
    partial index's condition, say), and the arguments are all that is bound."""
    parts, index = [], 0
    for token in re.split(r"(%%|%s)", sql):
        if token != "%s":
            parts.append(token)  # SQL, or a %% that stays one
            continue
        if index in arguments:
            parts.append("%s")
        else:
            parts.append(connection.ops.compose_sql("%s", [params[index]]).replace("%", "%%"))
        index += 1
    return "".join(parts)


class PreparedInsert:
    """Insert one row of `model`: every concrete column but the key, each value prepared by its
    field as the ORM's insert prepares it (defaults, auto_now_add, JSON); no signals are sent.
    Returns the new row's key.

    `unique`: the fields of a unique constraint. A row that would break it is not inserted
    (ON CONFLICT DO NOTHING) and the call returns None: "stored once", in one statement, with no
    read before the write, no savepoint and no transaction of its own."""

    def __init__(self, model: type[Model], *, unique: tuple[str, ...] = ()):
        self.model, self.unique = model, unique
        self.fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        self._sql = None  # compiled at the first call, for that database's quoting

    def __call__(self, **values) -> int | None:
        return self.save(self.model(**values))

    def save(self, row: Model) -> int | None:
        """Insert this unsaved instance; its key (and auto_now_add fields) set as save() sets them."""
        connection = connections[router.db_for_write(self.model)]
        if connection.vendor != "postgresql":
            return self._saved(row, connection.alias)
        params = [
            field.get_db_prep_save(field.pre_save(row, True), connection) for field in self.fields
        ]
        self._sql = self._sql or self._compile(connection)
        with connection.cursor() as cursor:
            cursor.execute(self._sql, params)
            inserted = cursor.fetchone()
        if inserted:
            row.pk = inserted[0]
            row._state.adding, row._state.db = False, connection.alias
        return row.pk if inserted else None

    def _compile(self, connection) -> str:
        quote, meta = connection.ops.quote_name, self.model._meta
        columns = ", ".join(quote(field.column) for field in self.fields)
        places = ", ".join(["%s"] * len(self.fields))
        conflict = ""
        if self.unique:
            keys = ", ".join(quote(meta.get_field(name).column) for name in self.unique)
            conflict = f" ON CONFLICT ({keys}) DO NOTHING"
        return (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({places}){conflict} "
            f"RETURNING {quote(meta.pk.column)}"
        )

    def _saved(self, row: Model, using: str) -> int | None:
        # SQLite (make run) has one writer at a time: a look first is enough there.
        existing = self.model._default_manager.using(using)
        if (
            self.unique
            and existing.filter(**{name: getattr(row, name) for name in self.unique}).exists()
        ):
            return None
        row.save(force_insert=True, using=using)
        return row.pk


class PreparedUpdate:
    """Write these columns of a loaded row, as `obj.save(update_fields=fields)` does (auto_now
    fields take the time now, on the instance too; no signals are sent), with one statement
    compiled once per process and prepared once per PostgreSQL connection."""

    def __init__(self, model: type[Model], fields: list[str]):
        self.model, self.field_names = model, list(fields)
        self.fields = [model._meta.get_field(name) for name in fields]
        self._sql = None  # compiled at the first call, for that database's quoting

    def __call__(self, obj: Model) -> None:
        connection = connections[router.db_for_write(self.model, instance=obj)]
        if connection.vendor != "postgresql":
            obj.save(update_fields=self.field_names)
            return
        params = [
            field.get_db_prep_save(field.pre_save(obj, False), connection) for field in self.fields
        ]
        params.append(obj.pk)
        self._sql = self._sql or self._compile(connection)
        with connection.cursor() as cursor:
            cursor.execute(self._sql, params)
            if cursor.rowcount != 1:  # as Model.save(update_fields=...) refuses a missing row
                raise DatabaseError("Save with update_fields did not affect any rows.")

    def _compile(self, connection) -> str:
        quote, meta = connection.ops.quote_name, self.model._meta
        columns = ", ".join(f"{quote(field.column)} = %s" for field in self.fields)
        return f"UPDATE {quote(meta.db_table)} SET {columns} WHERE {quote(meta.pk.column)} = %s"
