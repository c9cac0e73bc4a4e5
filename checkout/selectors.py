"""Reads used by views, admin and tasks."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.utils import timezone

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
    return Q(
        status__in=[S.CREATED, S.AUTHORIZING],
        payment__status=P.REQUIRES_ACTION,
        created_at__lte=now - timedelta(minutes=settings.CHECKOUT_3DS_MINUTES),
    )


def _active_sessions(now):
    # A checkout stuck in 3-D Secure past its limit does not count: the next driver's Pay ends it.
    return ChargingSession.objects.filter(status__in=ACTIVE_SESSION_STATUSES).exclude(
        authentication_overdue(now)
    )


def evse_in_use(evse) -> bool:
    return _active_sessions(timezone.now()).filter(evse=evse).exists()


def evses_for_checkout():
    """EVSEs with all the checkout page shows, in two queries: the EVSE with its location, operator
    and `in_use` (an Exists, as evse_in_use), then its connectors with their tariffs (and a planned
    replacement, and the operator a tariff without a currency falls back on)."""
    connectors = Connector.objects.select_related(
        "tariff__operator", "tariff__replaced_by__operator"
    ).order_by("connector_id")
    return (
        Evse.objects.select_related("location__operator")
        .annotate(in_use=Exists(_active_sessions(timezone.now()).filter(evse=OuterRef("pk"))))
        .prefetch_related(Prefetch("connectors", queryset=connectors))
    )
