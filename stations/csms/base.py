"""The contract between checkout and a charging-station management system (CSMS).

An adapter starts and stops sessions; what the CSMS reports back (progress, the final record)
arrives as SessionUpdate objects handed to the update handler that checkout registers, so that
stations never imports checkout.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stations.models import Connector


class CsmsError(Exception):
    """A CSMS call failed. permanent=False means a retry may succeed (timeouts, 5xx)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class StartStatus(enum.StrEnum):
    ACCEPTED = "ACCEPTED"  # the charger took the command; a session update follows
    REJECTED = "REJECTED"  # the charger refused; nothing will happen
    PENDING = "PENDING"  # no answer yet; it may come later or never


@dataclass(frozen=True)
class StartResult:
    status: StartStatus
    message: str = ""


@dataclass(frozen=True)
class Limits:
    """What the charger may deliver: the spending cap expressed in its own terms where it can."""

    max_kwh: Decimal | None = None


class SessionStatus(enum.StrEnum):
    # OCPI 2.2.1 SessionStatus
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    INVALID = "INVALID"


@dataclass(frozen=True)
class SessionUpdate:
    reference: str  # our authorization reference, given at start
    status: SessionStatus
    kwh: Decimal = Decimal(0)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    measured_at: datetime | None = None  # when the CSMS read these figures (its clock)
    parking_minutes: Decimal = Decimal(0)
    csms_session_id: str = ""
    final: bool = False  # True for the final record (CDR): nothing follows it
    cdr: dict = field(default_factory=dict)


class CsmsAdapter(Protocol):
    def start_session(self, *, connector: Connector, reference: str, limits: Limits) -> StartResult: ...

    def stop_session(self, *, reference: str) -> None: ...


UpdateHandler = Callable[[SessionUpdate], None]
_update_handler: UpdateHandler | None = None


def register_update_handler(handler: UpdateHandler) -> None:
    global _update_handler
    _update_handler = handler


def deliver_update(update: SessionUpdate) -> None:
    if _update_handler is None:
        raise RuntimeError("no CSMS update handler registered (is the checkout app installed?)")
    _update_handler(update)
