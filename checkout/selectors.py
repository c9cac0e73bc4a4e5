"""Reads used by views, admin and tasks."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import ChargingSession
from .states import SessionStatus as S


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
