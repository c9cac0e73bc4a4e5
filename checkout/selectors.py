"""Reads used by views, admin and tasks."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

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


def evse_in_use(evse) -> bool:
    # A checkout stuck in 3-D Secure past its limit does not count: the next driver's Pay ends it.
    return (
        ChargingSession.objects.filter(evse=evse, status__in=ACTIVE_SESSION_STATUSES)
        .exclude(authentication_overdue(timezone.now()))
        .exists()
    )
