"""Reads used by views, admin and tasks."""

from .models import ChargingSession
from .states import ACTIVE_SESSION_STATUSES


def session_for_driver(public_id) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_related(
            "evse__location__operator", "connector", "payment", "payment__receipt"
        )
        .filter(public_id=public_id)
        .first()
    )


def evse_in_use(evse) -> bool:
    return ChargingSession.objects.filter(evse=evse, status__in=ACTIVE_SESSION_STATUSES).exists()
