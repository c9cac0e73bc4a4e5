"""The checkout page's database budget: two queries, no write; scans held in Redis and flushed once;
the shown price cached by its content, so an edited tariff shows at once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from checkout import selectors
from checkout.models import ChargingSession
from checkout.states import SessionStatus as S
from directpay.prepared import PreparedQuery
from stations import qr, scan_buffer, scans
from stations.models import Connector, Evse, ScanDay, ScanMark, Tariff
from tests import prepared_statements, pytest_env
from tests.factories import ConnectorFactory
from tests.test_station_ops import addresses, scanned

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def redis_cache(settings):
    """The production cache: Redis (a db of its own, keys under a prefix of this test's, so that
    tests running at the same time on this Redis never meet; never cleared as a whole)."""
    if not pytest_env.REDIS:
        pytest.skip("needs Redis on 127.0.0.1:6379")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/12",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    assert scan_buffer.enabled()
    yield
    with scan_buffer.lock():  # whatever a failed test left held
        scan_buffer.drain(lambda marks: None)


def checkout_queries(client, code, ip="192.0.2.1"):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("checkout:scan", args=[code]), REMOTE_ADDR=ip)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def test_a_checkout_reads_twice_and_writes_nothing(client, connector, redis_cache):
    if connection.vendor != "postgresql":
        pytest.skip("the budget is PostgreSQL's")
    response, sql = checkout_queries(client, qr.code_for(connector.evse))
    assert len(sql) <= 2, sql
    assert not [s for s in sql if s.lstrip().upper().startswith(WRITES)], sql
    assert not ScanMark.objects.exists()  # the scan is held in Redis
    page = response.content.decode()
    assert connector.evse.evse_id in page and "0.605 EUR" in page  # 0.50 + 21 % VAT


def test_in_use_still_shows_within_the_budget(client, connector, redis_cache, pay):
    code = qr.code_for(connector.evse)
    assert checkout_queries(client, code)[0].context["available"] is True
    session = pay(connector)
    response, sql = checkout_queries(client, code)
    assert response.context["available"] is False and len(sql) <= 2
    ChargingSession.objects.filter(pk=session.pk).update(status=S.FINISHED)
    assert checkout_queries(client, code)[0].context["available"] is True


def test_the_flush_writes_held_scans_once(client, connector, redis_cache):
    evse = connector.evse
    good = qr.code_for(evse)
    first, second = addresses(2)
    for ip in (first, second, first, first):
        assert scanned(client, good, ip=ip) == 200
    assert scanned(client, f"{evse.pk}-1-{'a' * 16}", ip=first) == 404  # forged
    assert scanned(client, "not-a-code", ip=second) == 404
    assert not ScanMark.objects.exists()
    assert scans.flush() == 4  # two clients valid, one invalid, one code naming no EVSE
    assert scans.flush() == 0  # a second run finds nothing held
    assert ScanMark.objects.count() == 4
    assert scans.signals([evse.pk])[evse.pk] == scans.Signals(recent=2, history=0, suspicious=1)
    # The same clients again later today: still counted once each.
    for ip in (first, second):
        scanned(client, good, ip=ip)
    assert scans.flush() == 2 and ScanMark.objects.count() == 4
    # The roll-up flushes what is held first, and counts each client once.
    scanned(client, good, ip=addresses(3)[2])
    assert scans.roll_up(timezone.localdate() + timedelta(days=1)) == 5
    row = ScanDay.objects.get(evse=evse)
    assert (row.valid, row.voided, row.invalid) == (3, 0, 1)
    assert ScanDay.objects.get(evse=None).invalid == 1
    assert scans.roll_up(timezone.localdate() + timedelta(days=1)) == 0
    assert not ScanMark.objects.exists()


def test_a_failed_write_keeps_the_marks_and_a_retry_counts_them_once(
    client, connector, redis_cache
):
    evse = connector.evse
    scanned(client, qr.code_for(evse))
    written = []

    def fails(marks):
        scans._write_marks(marks)  # written, then the worker dies before Redis is told
        written.extend(marks)
        raise RuntimeError("worker lost")

    with scan_buffer.lock(), pytest.raises(RuntimeError):
        scan_buffer.drain(fails)
    assert len(written) == 1 and ScanMark.objects.count() == 1
    assert scans.flush() == 1  # still held: written again, ignored as a duplicate
    assert ScanMark.objects.count() == 1 and scans.flush() == 0
    assert scans.signals([evse.pk])[evse.pk].recent == 1


def test_held_scans_of_a_deleted_charger_are_dropped(client, connector, redis_cache):
    evse = connector.evse
    scanned(client, qr.code_for(evse))
    connector.delete()
    Evse.objects.filter(pk=evse.pk).delete()
    assert scans.flush() == 1 and not ScanMark.objects.exists()


def test_without_redis_the_scan_writes_its_mark(client, connector):
    assert not scan_buffer.enabled()  # the local memory cache of `make run` and the other tests
    scanned(client, qr.code_for(connector.evse))
    assert ScanMark.objects.count() == 1 and scans.flush() == 0


@pytest.mark.parametrize("edit", ["save", "update"])
def test_an_edited_tariff_shows_its_new_price_at_once(client, connector, redis_cache, edit):
    code = qr.code_for(connector.evse)
    first = checkout_queries(client, code)[0]
    assert "0.605 EUR" in first.content.decode()  # 0.50 + 21 % VAT, now cached
    ocpi = connector.tariff.ocpi | {
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": "0.70", "vat": 21.0, "step_size": 1}]}
        ]
    }
    if edit == "save":  # the admin, an import
        connector.tariff.ocpi = ocpi
        connector.tariff.save()
    else:  # an OCPI PUT or anything that bypasses save(): no signal to hook, nothing to bump
        Tariff.objects.filter(pk=connector.tariff.pk).update(ocpi=ocpi)
    second = checkout_queries(client, code)[0]
    page = second.content.decode()
    assert "0.847 EUR" in page and "0.605 EUR" not in page  # 0.70 + 21 % VAT
    assert second.context["price_digest"] != first.context["price_digest"]


# --- the checkout query, compiled once per process and prepared once per connection ---------------


def loaded(connectors):
    """What a page could read of the loaded rows: every field of each object, related ones too."""

    def fields(obj):
        return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}

    return [
        (
            fields(c),
            c.in_use,
            fields(c.evse),
            fields(c.evse.location),
            fields(c.evse.location.operator),
            fields(c.tariff),
            c.tariff.replaced_by and fields(c.tariff.replaced_by),
        )
        for c in connectors
    ]


def test_the_prepared_checkout_query_loads_what_the_orm_loads(connector, pay, settings):
    """The same rows, fields and 'in use' as the ORM's own queryset, in use or not, with a planned
    replacement tariff and a second connector, in one query."""
    evse = connector.evse
    successor = Tariff.objects.create(
        operator=connector.tariff.operator, name="next", ocpi=connector.tariff.ocpi
    )
    Tariff.objects.filter(pk=connector.tariff.pk).update(
        replaced_by=successor, valid_until=timezone.now() + timedelta(days=3)
    )
    ConnectorFactory(evse=evse, connector_id=2)

    def both():
        overdue_from = selectors._overdue_from(timezone.now())
        orm = list(selectors._checkout_connectors(evse.pk, overdue_from))
        with CaptureQueriesContext(connection) as queries:
            prepared = selectors._checkout_query(evse_pk=evse.pk, overdue_from=overdue_from)
        assert loaded(prepared) == loaded(orm)
        return prepared, [q["sql"] for q in queries.captured_queries]

    prepared, _ = both()
    assert [c.in_use for c in prepared] == [False, False]
    assert prepared[0].tariff.replaced_by.pk == successor.pk
    pay(connector)
    prepared, sql = both()
    assert [c.in_use for c in prepared] == [True, True]
    assert len(sql) == 1, sql


@pytest.mark.django_db(transaction=True)
def test_each_connection_prepares_the_query_once(connector):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    for _ in range(2):
        connection.close()  # as CONN_MAX_AGE or a lost connection does
        assert selectors.evse_for_checkout(connector.evse.pk).in_use is False
        checkout_sql = selectors._checkout_query._compiled.sql
        assert prepared_statements.held(checkout_sql) == []  # a new connection holds none
        # Only the arguments (the EVSE, a moment) are bound; the query's constants (the statuses
        # of the active-session index) are in the statement, where a generic plan sees them.
        assert checkout_sql.count("%s") == 2 and "'charging'" in checkout_sql
        for _ in range(prepared_statements.threshold() + 2):
            assert selectors.evse_for_checkout(connector.evse.pk).in_use is False
        assert len(prepared_statements.held(checkout_sql)) == 1


def test_a_stand_in_must_name_one_parameter(db):
    if connection.vendor != "postgresql":
        pytest.skip("elsewhere the queryset runs as it is")
    query = PreparedQuery(
        "bad",
        lambda evse_pk: Connector.objects.filter(evse_id=evse_pk, tariff_id=evse_pk),
        evse_pk=7,
    )
    with pytest.raises(ValueError, match="2 times"):
        query(evse_pk=1)
