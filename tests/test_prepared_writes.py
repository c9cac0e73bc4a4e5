"""Rows written at every step of a session (the audit trail, a status change) and once per webhook
(the event as received), by a statement compiled once per process and prepared once per
PostgreSQL connection: the same row as the ORM's, stored once by a unique key, a missing row an
error as in save(), and the statement the same each time, so prepared only once."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from checkout import stripe_events
from checkout.models import ChargingSession, Payment, PaymentEvent, StripeEvent
from checkout.transitions import acting_as, record_event
from directpay.prepared import PreparedInsert, PreparedUpdate
from tests import prepared_statements


def test_an_audit_event_is_the_row_the_orm_writes(connector, pay):
    session = pay(connector)
    before = timezone.now()
    with acting_as("driver"):
        record_event(session, "stop_requested", amount=125, message="driver pressed Stop")
    ours = PaymentEvent.objects.filter(session=session).latest("pk")
    orm = PaymentEvent.objects.create(
        session=session,
        kind="stop_requested",
        actor="driver",
        amount=125,
        message="driver pressed Stop",
    )
    skip = {"id", "created_at"}
    assert {f: v for f, v in vars(ours).items() if f not in skip and not f.startswith("_")} == {
        f: v for f, v in vars(orm).items() if f not in skip and not f.startswith("_")
    }
    assert before <= ours.created_at <= orm.created_at  # auto_now_add, as the ORM sets it
    assert (ours.from_status, ours.stripe_id) == ("", "")  # the fields' defaults


def test_a_webhook_is_stored_once_and_a_repeat_says_so(db):
    payload = {"id": "evt_once", "type": "payment_intent.succeeded", "data": {"object": {}}}
    first = stripe_events.stripe_event_receive(payload)
    with transaction.atomic():  # a repeat breaks nothing around it (no IntegrityError)
        assert stripe_events.stripe_event_receive(payload | {"type": "changed"}) is None
        assert StripeEvent.objects.count() == 1
    stored = StripeEvent.objects.get()
    assert (stored.pk, stored.event_id, stored.type) == (first, "evt_once", payload["type"])
    assert stored.payload == payload and stored.received_at is not None


def test_the_insert_is_compiled_once_and_prepared_once_per_connection(connector, pay):
    if connection.vendor != "postgresql":  # CI's database is PostgreSQL: it runs there
        pytest.skip("prepared statements are PostgreSQL's; SQLite takes the ORM's insert")
    session = pay(connector)
    insert = PreparedInsert(PaymentEvent)
    with CaptureQueriesContext(connection) as queries:
        for n in range(prepared_statements.threshold() + 2):
            assert insert(session=session, kind="test", message=str(n))
    sql = {q["sql"].split(" VALUES ")[0] for q in queries.captured_queries}
    assert len(sql) == 1 and sql.pop().startswith('INSERT INTO "checkout_paymentevent"')
    # One statement, the audit trail's too (the same SQL), planned once on this connection.
    assert len(prepared_statements.held(insert._sql)) == 1
    assert list(
        PaymentEvent.objects.filter(kind="test").values_list("message", flat=True).order_by("pk")
    ) == [str(n) for n in range(prepared_statements.threshold() + 2)]


def test_only_the_unique_constraint_named_is_forgiven(db):
    once = PreparedInsert(StripeEvent, unique=("event_id",))
    plain = PreparedInsert(StripeEvent)
    assert once(event_id="evt_a", type="t", payload={})
    assert once(event_id="evt_a", type="t", payload={}) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        plain(event_id="evt_a", type="t", payload={})
    with pytest.raises(IntegrityError), transaction.atomic():
        once(event_id="evt_b", type=None, payload={})  # NOT NULL is another constraint
    assert list(StripeEvent.objects.values_list("event_id", flat=True)) == ["evt_a"]


def test_an_update_writes_the_named_columns_as_save_does(connector, pay):
    session = pay(connector)
    payment = Payment.objects.get(session=session)
    write = PreparedUpdate(Payment, ["card_brand", "shortfall", "updated_at"])
    before = payment.updated_at
    payment.card_brand, payment.shortfall, payment.decline_message = "visa", 125, "not written"
    write(payment)
    assert payment.updated_at > before  # auto_now, set on the instance as save() sets it
    stored = Payment.objects.get(pk=payment.pk)
    assert (stored.card_brand, stored.shortfall, stored.updated_at) == (
        "visa",
        125,
        payment.updated_at,
    )
    assert stored.decline_message == ""  # not among the columns


def test_an_update_of_a_missing_row_fails_as_save_does(connector, pay):
    session = pay(connector)
    write = PreparedUpdate(ChargingSession, ["kwh", "updated_at"])
    ghost = ChargingSession.objects.get(pk=session.pk)
    ghost.pk = -1
    with pytest.raises(DatabaseError, match="did not affect any rows"), transaction.atomic():
        write(ghost)
