"""The building blocks every service uses: who is acting, row locks, checked transitions, the audit trail.

Callers hold the row locks (lock_session / lock_payment inside transaction.atomic) before changing a row.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager

from django.db import models, transaction

from directpay.prepared import (
    STAND_IN_ID,
    STAND_IN_TEXT,
    PreparedInsert,
    PreparedQuery,
    PreparedUpdate,
)

from .models import ChargingSession, Payment, PaymentEvent
from .states import PAYMENT_TRANSITIONS, SESSION_TRANSITIONS, check_transition

log = logging.getLogger("checkout.services")

# Who is acting, written on every audit event: driver, worker, csms, stripe, sweep, staff:<name>.
_actor = contextvars.ContextVar("actor", default="worker")


@contextmanager
def acting_as(actor: str):
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


# About 14 audit events per session, each its own INSERT: compiled once, prepared per connection.
_insert_event = PreparedInsert(PaymentEvent)


def record_event(session: ChargingSession, kind: str, **fields) -> None:
    _insert_event(session=session, kind=kind, actor=_actor.get(), **fields)


def flag_attention(session: ChargingSession, why: str) -> None:
    """Ask staff to look at this session (shown and filterable in the admin); keep the first reason."""
    log.warning("session %s needs attention: %s", session.pk, why)
    cleared = (
        session.events.filter(kind="attention_cleared")
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    if session.events.filter(kind="attention", message=why[:500], pk__gt=cleared or 0).exists():
        return  # a sweep retrying the same failure every minute says it once (until staff clear it)
    record_event(session, "attention", message=why[:500])
    if not session.attention:
        ChargingSession.objects.filter(pk=session.pk).update(attention=why[:300])
        session.attention = why[:300]


# What a status change writes: every column but those fixed when the session was opened (the
# tariff snapshot, the largest, among them), so callers may change any other field before it.
_SESSION_FIXED = {
    "public_id",
    "evse",
    "connector",
    "tariff_snapshot",
    "time_zone",
    "csms_reference",
    "checkout_attempt",
    "created_at",
}
_SESSION_CHANGING = [
    f.name
    for f in ChargingSession._meta.concrete_fields
    if not f.primary_key and f.name not in _SESSION_FIXED
]
_write_session = PreparedUpdate(ChargingSession, _SESSION_CHANGING)
# A payment's status change writes the whole row, as save() does, by a prepared statement too.
_write_payment = PreparedUpdate(
    Payment,
    [f.name for f in Payment._meta.concrete_fields if not f.primary_key],
)


def set_session_status(session: ChargingSession, target: str, **changes) -> bool:
    if session.status == target:
        return False
    check_transition(SESSION_TRANSITIONS, session.status, target)
    record_event(
        session,
        "session_status",
        from_status=session.status,
        to_status=target,
        message=changes.get("failure_reason", ""),
    )
    session.status = target
    for name, value in changes.items():
        setattr(session, name, value)
    _write_session(session)
    return True


def set_payment_status(
    payment: Payment, target: str, *, message: str = "", amount: int | None = None, **changes
) -> bool:
    if payment.status == target:
        return False
    check_transition(PAYMENT_TRANSITIONS, payment.status, target)
    record_event(
        payment.session,
        "payment_status",
        from_status=payment.status,
        to_status=target,
        amount=amount,
        stripe_id=payment.stripe_payment_intent_id or "",
        message=message[:500],
    )
    payment.status = target
    for name, value in changes.items():
        setattr(payment, name, value)
    _write_payment(payment)
    return True


def _sessions_locked(related: tuple[str, ...]):
    if related:  # only the session's row: the related rows are read, not locked
        return ChargingSession.objects.select_related(*related).select_for_update(of=("self",))
    return ChargingSession.objects.select_for_update()


def _payments_locked():
    return Payment.objects.select_for_update().select_related("session")


# Every money service starts with one of these locks, looked up by one of these columns (with a
# stand-in value for compiling): each shape is compiled once per process and planned once per
# PostgreSQL connection (directpay/prepared.py). Other lookups go through the ORM as usual.
_PREPARED_LOOKUPS = {
    "pk": STAND_IN_ID,
    "session": STAND_IN_ID,  # a payment's session, given as an instance or its id
    "csms_reference": STAND_IN_TEXT,
}
_LOCKS: dict[tuple, PreparedQuery] = {}


def _prepared_lock(kind: str, related: tuple[str, ...], column: str, build) -> PreparedQuery:
    key = (kind, related, column)
    query = _LOCKS.get(key)
    if query is None:
        query = _LOCKS.setdefault(
            key,
            PreparedQuery(
                f"lock_{kind} by {column} with {related}",
                # As .first() does: the lowest primary key, and only that row locked.
                lambda value: build().filter(**{column: value}).order_by("pk")[:1],
                value=_PREPARED_LOOKUPS[column],
            ),
        )
    return query


def _locked(kind: str, related: tuple[str, ...], build, lookup: dict):
    if len(lookup) != 1 or next(iter(lookup)) not in _PREPARED_LOOKUPS:
        return build().filter(**lookup).first()
    ((column, value),) = lookup.items()
    if isinstance(value, models.Model):
        value = value.pk
    return _prepared_lock(kind, related, column, build).first(value=value)


def lock_session(*related: str, **lookup) -> ChargingSession | None:
    """Lock one session row; `related` rows are read in the same query but not locked."""
    return _locked("session", related, lambda: _sessions_locked(related), lookup)


def lock_payment(**lookup) -> Payment | None:
    """Lock one payment row and its session's, read in the same query."""
    return _locked("payment", (), _payments_locked, lookup)


def queue_on_commit(task, *args, countdown: float | None = None) -> None:
    transaction.on_commit(lambda: task.apply_async(args, countdown=countdown))
