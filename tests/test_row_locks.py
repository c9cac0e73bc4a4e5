"""The row locks every money service starts with: by primary key, a payment's session or the CSMS's
reference, compiled once per process and prepared once per PostgreSQL connection; the same rows as
the ORM's, a real lock, and never outside a transaction; and what a status change writes."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from checkout import receipts
from checkout.models import ChargingSession, Payment
from checkout.states import SessionStatus
from checkout.transitions import lock_payment, lock_session, set_session_status


def fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.mark.parametrize("by", ["pk", "csms_reference"])
def test_a_lock_loads_what_the_orm_loads(connector, pay, by):
    session = pay(connector)
    payment = session.payment
    related = ("payment", "evse__location__operator", "connector")
    orm = ChargingSession.objects.select_related(*related).get(pk=session.pk)
    lookup = {by: getattr(session, by)}
    for _ in range(2):  # compiled (perhaps prepared), then run again
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            locked = lock_session(*related, **lookup)
            locked_payments = [
                lock_payment(pk=payment.pk),
                lock_payment(session=session),
                lock_payment(session=session.pk),
            ]
        assert fields(locked) == fields(orm)
        assert fields(locked.payment) == fields(orm.payment)
        assert fields(locked.evse.location.operator) == fields(orm.evse.location.operator)
        assert fields(locked.connector) == fields(orm.connector)
        for locked_payment in locked_payments:
            assert fields(locked_payment) == fields(Payment.objects.get(pk=payment.pk))
            assert fields(locked_payment.session) == fields(orm)
        sql = [q["sql"] for q in queries.captured_queries]
        assert len(sql) == 4  # the related rows came with the locked one
        assert all(s.startswith("SELECT ") and " FOR UPDATE" in s for s in sql), sql


def test_a_missing_row_is_none(db):
    with transaction.atomic():
        assert lock_session(pk=-1) is None
        assert lock_session("payment", pk=-1) is None
        assert lock_session(csms_reference="nobody's") is None
        assert lock_payment(pk=-1) is None
        assert lock_payment(session=-1) is None
        with pytest.raises(Payment.DoesNotExist):  # as QuerySet.get raises
            receipts._payment_to_issue.get(payment_id=-1)


@pytest.mark.django_db(transaction=True)  # else the test itself runs inside one
def test_a_lock_outside_a_transaction_is_refused(connector, pay):
    """Django refuses select_for_update in autocommit when it compiles; ours compiled once, so the
    prepared lock checks it on every call."""
    session = pay(connector)
    with transaction.atomic():
        lock_payment(pk=session.payment.pk)  # compiled inside a transaction
    for lock in (lambda: lock_payment(pk=session.payment.pk), lambda: lock_session(pk=session.pk)):
        with pytest.raises(TransactionManagementError, match="outside of a transaction"):
            lock()


@pytest.mark.django_db(transaction=True)
def test_the_lock_holds_the_row_until_commit(connector, pay):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite locks the whole database, not a row")
    session = pay(connector)
    settings = connection.get_connection_params()
    other = psycopg.connect(
        host=settings.get("host"),
        port=settings.get("port"),
        user=settings.get("user"),
        dbname=settings["dbname"],
        autocommit=True,
    )
    try:

        def try_lock(table: str, pk: int) -> bool:
            try:
                other.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE NOWAIT", (pk,))
            except psycopg.errors.LockNotAvailable:
                return False
            return True

        for _ in range(2):
            for lock_both in (
                lambda: (lock_payment(pk=session.payment.pk), lock_session("evse", pk=session.pk)),
                lambda: (
                    lock_session("evse", csms_reference=session.csms_reference),
                    lock_payment(session=session),
                ),
            ):
                with transaction.atomic():
                    lock_both()
                    assert not try_lock("checkout_payment", session.payment.pk)
                    assert not try_lock("checkout_chargingsession", session.pk)
                    assert try_lock("stations_evse", session.evse_id)  # read, not locked
                assert try_lock("checkout_payment", session.payment.pk)
                assert try_lock("checkout_chargingsession", session.pk)
            with transaction.atomic():
                lock_payment(pk=session.payment.pk)
                assert not try_lock("checkout_chargingsession", session.pk)  # its session's too
    finally:
        other.close()


def test_a_status_change_writes_what_callers_change_and_not_the_fixed_columns(connector, pay):
    """Callers set fields before a status change and rely on it to write them; the columns fixed
    when the session was opened are not written again (the tariff snapshot is the largest)."""
    session = pay(connector)
    snapshot = session.tariff_snapshot
    with transaction.atomic():
        locked = lock_session(pk=session.pk)
        locked.kwh = Decimal("3.2100")
        locked.failure_reason = "before the change"
        locked.tariff_snapshot = {"changed": "in memory only"}
        assert set_session_status(locked, SessionStatus.FAILED, attention="look")
    stored = ChargingSession.objects.get(pk=session.pk)
    assert (stored.status, stored.kwh, stored.failure_reason, stored.attention) == (
        SessionStatus.FAILED,
        Decimal("3.2100"),
        "before the change",
        "look",
    )
    assert stored.tariff_snapshot == snapshot
