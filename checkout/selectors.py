"""Reads used by views, admin and tasks."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from directpay.prepared import STAND_IN_ID, STAND_IN_MOMENT, PreparedQuery
from stations.models import Connector, Evse

from .models import ChargingSession
from .states import ACTIVE_SESSION_STATUSES
from .states import PaymentStatus as P
from .states import SessionStatus as S


def session_for_driver(public_id) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_related(
            "evse__location__operator", "connector", "payment", "payment__receipt"
        )
        .filter(public_id=public_id)
        .first()
    )


def authentication_overdue(now) -> Q:
    """Checkouts still waiting for 3-D Secure CHECKOUT_3DS_MINUTES after Pay: the next Pay fails them."""
    return _waiting_for_authentication_since(_overdue_from(now))


def _overdue_from(now):
    return now - timedelta(minutes=settings.CHECKOUT_3DS_MINUTES)


def _waiting_for_authentication_since(moment) -> Q:
    return Q(
        status__in=[S.CREATED, S.AUTHORIZING],
        payment__status=P.REQUIRES_ACTION,
        created_at__lte=moment,
    )


def _active_sessions(overdue_from):
    # A checkout stuck in 3-D Secure past its limit does not count: the next driver's Pay ends it.
    return ChargingSession.objects.filter(status__in=ACTIVE_SESSION_STATUSES).exclude(
        _waiting_for_authentication_since(overdue_from)
    )


def evse_in_use(evse) -> bool:
    return _active_sessions(_overdue_from(timezone.now())).filter(evse=evse).exists()


def _checkout_connectors(evse_pk, overdue_from):
    return (
        Connector.objects.select_related("evse__location__operator", "tariff__replaced_by")
        .annotate(in_use=Exists(_active_sessions(overdue_from).filter(evse=OuterRef("evse_id"))))
        .filter(evse_id=evse_pk)
        .order_by("connector_id")
    )


# Compiled once per process and planned once per connection: the page every scan opens.
_checkout_query = PreparedQuery(
    "checkout_connectors",
    _checkout_connectors,
    evse_pk=STAND_IN_ID,
    overdue_from=STAND_IN_MOMENT,
)


def evse_for_checkout(pk: int) -> Evse | None:
    """The EVSE with all its checkout page shows, in one query: its connectors (each sold at its
    own price) with their tariffs and planned replacements, the EVSE, location and operator, and
    whether it is in use (as evse_in_use).

    The EVSE comes with `checkout_connectors` (in connector_id order) and `in_use` set. An EVSE
    without connectors takes more queries and has `checkout_connectors` empty."""
    connectors = _checkout_query(evse_pk=pk, overdue_from=_overdue_from(timezone.now()))
    if not connectors:
        evse = Evse.objects.select_related("location__operator").filter(pk=pk).first()
        if evse is not None:
            evse.checkout_connectors, evse.in_use = [], evse_in_use(evse)
        return evse
    evse = connectors[0].evse
    evse.checkout_connectors, evse.in_use = connectors, connectors[0].in_use
    # One EVSE and operator for all: a tariff without a currency falls back on its operator's.
    operator = evse.location.operator
    for connector in connectors:
        connector.evse = evse
        for tariff in (connector.tariff, connector.tariff.replaced_by):
            if tariff is not None and tariff.operator_id == operator.pk:
                tariff.operator = operator
    return evse


# Pay's own reads, compiled and planned once as the page's are.
_connector_for_pay = PreparedQuery(
    "pay_connector",
    lambda connector_pk: Connector.objects.select_related("tariff__operator").filter(
        pk=connector_pk
    ),
    connector_pk=STAND_IN_ID,
)
_overdue_on_evse = PreparedQuery(
    "pay_overdue_checkouts",
    lambda evse_pk, overdue_from: (
        ChargingSession.objects.filter(
            _waiting_for_authentication_since(overdue_from), evse_id=evse_pk
        )
        .only("pk")
        .order_by("pk")
    ),
    evse_pk=STAND_IN_ID,
    overdue_from=STAND_IN_MOMENT,
)


def connector_for_pay(pk: int) -> Connector:
    """The connector as it is now, with its tariff and the tariff's operator (Pay's price)."""
    return _connector_for_pay.get(connector_pk=pk)


def overdue_checkouts(evse, now) -> list[int]:
    """The checkouts on this EVSE left waiting for 3-D Secure past their limit, as
    authentication_overdue(now) finds them."""
    return [
        session.pk for session in _overdue_on_evse(evse_pk=evse.pk, overdue_from=_overdue_from(now))
    ]


def session_for_attempt(evse, attempt: str) -> ChargingSession | None:
    """The session one press of Pay opened on this EVSE (its id is the paying tab's secret)."""
    return ChargingSession.objects.filter(evse=evse, checkout_attempt=attempt).first()
