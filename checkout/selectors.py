"""Reads used by views, admin and tasks."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import ChargingSession
from .states import ACTIVE_SESSION_STATUSES, SessionStatus as S


def session_for_driver(public_id) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_related("evse__location__operator", "connector", "payment", "payment__receipt")
        .filter(public_id=public_id)
        .first()
    )


def sessions_past_start_timeout() -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=settings.CSMS_START_TIMEOUT_SECONDS)
    return list(
        ChargingSession.objects.filter(status=S.STARTING, start_requested_at__lte=cutoff).values_list("pk", flat=True)
    )


def evse_in_use(evse) -> bool:
    return ChargingSession.objects.filter(evse=evse, status__in=ACTIVE_SESSION_STATUSES).exists()


def abandoned_checkouts() -> list[int]:
    """Checkouts nobody finished paying for (page closed, 3-D Secure abandoned): they block the EVSE."""
    cutoff = timezone.now() - timedelta(minutes=settings.CHECKOUT_ABANDON_MINUTES)
    return list(
        ChargingSession.objects.filter(status__in=[S.CREATED, S.AUTHORIZING], created_at__lte=cutoff)
        .values_list("pk", flat=True)
    )
