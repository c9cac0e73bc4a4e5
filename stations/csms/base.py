"""The contract between checkout and a charging-station management system (CSMS).

An adapter starts and stops sessions; what the CSMS reports back (a start result that comes later,
progress, the final record) is handed to the handlers that checkout registers, so that stations
never imports checkout.
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
    from stations.tariffs import Quote


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
    wait_seconds: int | None = None  # PENDING: how long the CSMS said it may take to answer


@dataclass(frozen=True)
class Limits:
    """What the charger may deliver: the spending cap expressed in its own terms where it can."""

    max_kwh: Decimal | None = None
    # The running cost (incl. VAT, in the tariff's currency) at which charging must stop.
    max_cost: Decimal | None = None


class SessionStatus(enum.StrEnum):
    # OCPI 2.2.1 SessionStatus
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    INVALID = "INVALID"


@dataclass(frozen=True)
class SignedValue:
    """One signed meter reading (OCPI 2.2.1 SignedValue): nature is Start, End or Intermediate."""

    nature: str
    signed_data: str
    plain_data: str = ""


@dataclass(frozen=True)
class SignedData:
    """The meter's own signed record of a session (OCPI 2.2.1 SignedData), e.g. OCMF, for the
    driver's transparency software (German calibration law). `problem` says why a CSMS's
    signed_data could not be read; the session is billed either way."""

    encoding_method: str = ""
    public_key: str = ""
    values: tuple[SignedValue, ...] = ()
    url: str = ""
    problem: str = ""

    def as_ocpi(self) -> dict:
        return {
            "encoding_method": self.encoding_method,
            "encoding_method_version": None,
            "public_key": self.public_key or None,
            "signed_values": [
                {"nature": v.nature, "plain_data": v.plain_data, "signed_data": v.signed_data}
                for v in self.values
            ],
            "url": self.url or None,
        }


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
    credit: bool = False  # a credit record: the CSMS takes back an earlier final record
    signed_data: SignedData | None = None  # the final record's signed meter data, if any


class SettlementRefused(ValueError):
    """A terminal settlement that cannot be recorded (nothing was); the message says why."""


@dataclass(frozen=True)
class TerminalSettlement:
    """A charger's own payment terminal settled an ended charge (OCPP 2.1 NotifySettlement)."""

    psp_reference: str
    amount: Decimal  # major units, as the terminal reports it
    settled_at: datetime
    connector: Connector
    reference: str  # names the charge: the session's csms_reference
    quote: Quote  # our price of the charge
    kwh: Decimal
    started_at: datetime
    ended_at: datetime
    csms_session_id: str = ""
    status_info: str = ""


class CsmsAdapter(Protocol):
    def start_session(
        self, *, connector: Connector, reference: str, limits: Limits
    ) -> StartResult: ...

    def stop_session(self, *, reference: str) -> None: ...


UpdateHandler = Callable[[SessionUpdate], None]
StartResultHandler = Callable[[str, StartResult], None]
_handlers: dict[str, Callable] = {}


def register_update_handler(handler: UpdateHandler) -> None:
    _handlers["update"] = handler


def register_start_result_handler(handler: StartResultHandler) -> None:
    """Called with (reference, result) when a start the adapter left PENDING is answered."""
    _handlers["start_result"] = handler


def register_live_check(handler: Callable[[str], bool]) -> None:
    """Called with a reference: may the purchase still charge (paid for, not failed or finished)?"""
    _handlers["live"] = handler


def register_settlement_handler(handler: Callable[[TerminalSettlement], dict]) -> None:
    """Called with a TerminalSettlement; returns {"receipt_id", "receipt_url"} for the station, or
    raises SettlementRefused."""
    _handlers["settlement"] = handler


def deliver_settlement(settlement: TerminalSettlement) -> dict:
    return _handler("settlement")(settlement)


def _handler(kind: str) -> Callable:
    if kind not in _handlers:
        raise RuntimeError(f"no CSMS {kind} handler registered (is the checkout app installed?)")
    return _handlers[kind]


def deliver_update(update: SessionUpdate) -> None:
    _handler("update")(update)


def deliver_start_result(reference: str, result: StartResult) -> None:
    _handler("start_result")(reference, result)


def purchase_is_live(reference: str) -> bool:
    return _handler("live")(reference)
