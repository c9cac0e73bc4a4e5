"""The two state machines of a purchase, and the only transitions allowed between their states."""

from django.db import models


class SessionStatus(models.TextChoices):
    CREATED = "created", "Created"
    AUTHORIZING = "authorizing", "Authorising payment"
    AUTHORIZED = "authorized", "Payment held"
    STARTING = "starting", "Starting"
    CHARGING = "charging", "Charging"
    STOPPING = "stopping", "Stopping"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Not started"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    REQUIRES_ACTION = "requires_action", "Requires authentication"
    AUTHORIZED = "authorized", "Authorised (held)"
    CAPTURED = "captured", "Captured"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    CANCELED = "canceled", "Canceled (hold released)"
    FAILED = "failed", "Failed"


S, P = SessionStatus, PaymentStatus

SESSION_TRANSITIONS: dict[str, set[str]] = {
    S.CREATED: {S.AUTHORIZING, S.FAILED},
    S.AUTHORIZING: {S.AUTHORIZED, S.FAILED},
    S.AUTHORIZED: {S.STARTING, S.FAILED},
    S.STARTING: {S.CHARGING, S.FAILED},
    S.CHARGING: {S.STOPPING, S.FINISHED},
    S.STOPPING: {S.FINISHED},
    S.FINISHED: set(),
    S.FAILED: set(),
}

PAYMENT_TRANSITIONS: dict[str, set[str]] = {
    P.PENDING: {P.REQUIRES_ACTION, P.AUTHORIZED, P.CANCELED, P.FAILED},
    P.REQUIRES_ACTION: {P.AUTHORIZED, P.CANCELED, P.FAILED},
    P.AUTHORIZED: {P.CAPTURED, P.CANCELED},
    P.CAPTURED: {P.PARTIALLY_REFUNDED, P.REFUNDED},
    P.PARTIALLY_REFUNDED: {P.PARTIALLY_REFUNDED, P.REFUNDED},
    P.REFUNDED: set(),
    P.CANCELED: set(),
    P.FAILED: set(),
}

# A session in one of these holds its EVSE: nobody else may pay for it.
ACTIVE_SESSION_STATUSES = [
    S.CREATED,
    S.AUTHORIZING,
    S.AUTHORIZED,
    S.STARTING,
    S.CHARGING,
    S.STOPPING,
]


class IllegalTransition(Exception):
    pass


def check_transition(table: dict[str, set[str]], current: str, target: str) -> None:
    if target not in table[current]:
        raise IllegalTransition(f"{current} -> {target} is not allowed")
