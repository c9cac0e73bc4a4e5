"""What the gateway records about stations and their transactions (plain Django, called through
sync_to_async from the gateway's event loop). Nothing here talks to a socket."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stations import tariffs
from stations.models import ChargingStation, Connector, Evse, OcppEvse, OcppTransaction
from stations.models import OcppTransactionEvent as Event

from ..base import (
    SessionStatus,
    SessionUpdate,
    SettlementRefused,
    TerminalSettlement,
    deliver_settlement,
)

log = logging.getLogger(__name__)

ENERGY = "Energy.Active.Import.Register"
# OCPP 2.1: the idToken of a charge the station's own payment terminal authorised (its PSP reference).
DIRECT_PAYMENT = "DirectPayment"
# OCPP ConnectorStatus -> what the checkout shows (anything but Available refuses Pay).
EVSE_STATUS = {
    "Available": Evse.Status.AVAILABLE,
    "Occupied": Evse.Status.CHARGING,
    "Reserved": Evse.Status.CHARGING,
    "Unavailable": Evse.Status.OUT_OF_ORDER,
    "Faulted": Evse.Status.OUT_OF_ORDER,
}


def station_login(identity: str, password: str) -> bool:
    station = ChargingStation.objects.filter(identity=identity).only("password_hash").first()
    # Unknown identities cost a hash too, so timing does not tell which identities exist.
    if station is None:
        ChargingStation(password_hash="").set_new_password()
        return False
    return station.password_matches(password)


def station_connected(identity: str, *, protocol: str, gateway: str) -> None:
    with transaction.atomic():
        ChargingStation.objects.filter(identity=identity).update(
            connected=True,
            protocol=protocol,
            gateway=gateway,
            last_seen_at=timezone.now(),
            last_message="connected",
        )
        # Back online: its EVSEs are as its connectors last reported (until it reports again).
        for binding in OcppEvse.objects.filter(station__identity=identity).exclude(status=""):
            Evse.objects.filter(pk=binding.evse_id).update(status=evse_status(binding.evse_id))


def station_disconnected(identity: str, *, gateway: str) -> None:
    """The socket closed: nobody can start a charge there now, so the checkout refuses Pay."""
    with transaction.atomic():
        # Only if no other gateway took the station over meanwhile.
        if ChargingStation.objects.filter(identity=identity, gateway=gateway).update(
            connected=False, last_message=f"disconnected at {timezone.now().isoformat()}"
        ):
            Evse.objects.filter(ocpp__station__identity=identity).update(status=Evse.Status.UNKNOWN)


def gateway_started(gateway: str) -> None:
    """A gateway (re)starting at this address holds no sockets: stations it held are offline."""
    for identity in ChargingStation.objects.filter(gateway=gateway, connected=True).values_list(
        "identity", flat=True
    ):
        station_disconnected(identity, gateway=gateway)


def station_seen(identity: str, what: str) -> None:
    ChargingStation.objects.filter(identity=identity).update(
        last_seen_at=timezone.now(), last_message=what[:200]
    )


def station_booted(identity: str, charging_station: dict) -> None:
    ChargingStation.objects.filter(identity=identity).update(
        vendor=charging_station.get("vendor_name", "")[:50],
        model=charging_station.get("model", "")[:50],
        serial_number=charging_station.get("serial_number", "")[:25],
        firmware_version=charging_station.get("firmware_version", "")[:50],
    )


def connector_status(identity: str, *, evse_number: int, connector_id: int, status: str) -> None:
    """StatusNotification: the station's (evseId, connectorId) is our bound EVSE's connector whose
    connector_id is that number. The connector takes the status; the EVSE's follows from all its
    connectors (evse_status)."""
    binding = OcppEvse.objects.filter(station__identity=identity, evse_number=evse_number).first()
    if binding is None:
        log.info("%s: status %s for unbound evse %s", identity, status, evse_number)
        return
    with transaction.atomic():
        if not Connector.objects.filter(
            evse_id=binding.evse_id, connector_id=str(connector_id)
        ).update(status=EVSE_STATUS.get(status, Evse.Status.UNKNOWN)):
            log.warning(
                "%s: status %s for evse %s connector %s, which is none of %s's connectors",
                identity,
                status,
                evse_number,
                connector_id,
                binding.evse_id,
            )
            return
        binding.status = status
        binding.save(update_fields=["status"])
        Evse.objects.filter(pk=binding.evse_id).update(status=evse_status(binding.evse_id))


def evse_status(evse_pk: int) -> str:
    """An EVSE charges one vehicle at a time: in use when any connector is, else available when
    any connector is (the checkout offers those), else out of order when one is, else unknown."""
    statuses = set(Connector.objects.filter(evse_id=evse_pk).values_list("status", flat=True))
    for status in (Evse.Status.CHARGING, Evse.Status.AVAILABLE, Evse.Status.OUT_OF_ORDER):
        if status in statuses:
            return status
    return Evse.Status.UNKNOWN


def token_accepted(identity: str, id_token: str) -> bool:
    """An idToken is ours if we sent it in a RequestStartTransaction for a charge not yet over."""
    return OcppTransaction.objects.filter(
        station__identity=identity,
        id_token=id_token,
        reference__isnull=False,
        state__in=[OcppTransaction.State.REQUESTED, OcppTransaction.State.STARTED],
    ).exists()


@dataclass
class EventOutcome:
    response: dict = field(default_factory=dict)  # extra fields of the TransactionEvent response
    update: SessionUpdate | None = None  # what to hand to checkout (after the response is sent)
    duplicate: bool = False


def transaction_event(identity: str, version: str, event: dict) -> EventOutcome:
    """Record one TransactionEvent (snake_case payload); a seqNo seen before changes nothing."""
    info = event["transaction_info"]
    timestamp = _time(event["timestamp"])
    with transaction.atomic():
        station = ChargingStation.objects.get(identity=identity)
        tx = _transaction_for(station, event)
        try:
            with transaction.atomic():
                Event.objects.create(
                    transaction=tx,
                    seq_no=event["seq_no"],
                    event_type=event["event_type"],
                    offline=bool(event.get("offline")),
                    timestamp=timestamp,
                    payload=event,
                )
        except IntegrityError:
            # A replay (offline=true after a reconnect, or a resend): counted once already.
            return EventOutcome(response=_response(tx, version, event), duplicate=True)
        newest = tx.last_seq_no is None or event["seq_no"] > tx.last_seq_no
        for context, wh in _energy(event):
            if context == "Transaction.Begin" or (
                tx.meter_start_wh is None and event["event_type"] == "Started"
            ):
                tx.meter_start_wh = wh
            elif tx.meter_start_wh is None:
                tx.meter_start_wh = wh  # until the Transaction.Begin reading arrives
            if newest:
                tx.meter_wh = wh
        if newest:
            tx.last_seq_no = event["seq_no"]
            tx.measured_at = timestamp
        token = event.get("id_token") or {}
        if token.get("type") == DIRECT_PAYMENT and not tx.reference and not tx.psp_ref:
            tx.psp_ref = token.get("id_token", "")[:255]
        if event["event_type"] == "Started" or tx.started_at is None:
            tx.started_at = min(tx.started_at or timestamp, timestamp)
        was_ended = tx.state == OcppTransaction.State.ENDED
        if event["event_type"] == "Ended":
            tx.state = OcppTransaction.State.ENDED
            tx.ended_at = timestamp
            tx.measured_at = timestamp
            tx.stopped_reason = info.get("stopped_reason", "") or "Local"
        elif tx.state in (OcppTransaction.State.REQUESTED, OcppTransaction.State.REJECTED):
            tx.state = OcppTransaction.State.STARTED
        tx.save()
        update = None
        if tx.reference and not was_ended:
            update = _session_update(tx, final=event["event_type"] == "Ended")
        return EventOutcome(response=_response(tx, version, event), update=update)


def _transaction_for(station: ChargingStation, event: dict) -> OcppTransaction:
    """Ours by transactionId, else by the remoteStartId or the idToken we sent; else a new row."""
    info = event["transaction_info"]
    tid = info["transaction_id"]
    locked = OcppTransaction.objects.select_for_update()
    tx = locked.filter(station=station, transaction_id=tid).first()
    if tx is not None:
        return tx
    unmatched = locked.filter(station=station, transaction_id="", reference__isnull=False)
    remote = info.get("remote_start_id")
    token = (event.get("id_token") or {}).get("id_token")
    tx = unmatched.filter(pk=remote).first() if remote is not None else None
    if tx is None and token:
        tx = unmatched.filter(id_token=token).first()
    if tx is None:
        # Started at the charger without us (a local card, a free mode): kept for staff, not billed.
        tx = OcppTransaction(station=station, connector=_connector(station, event))
    tx.transaction_id = tid
    tx.save()
    return tx


def _connector(station: ChargingStation, event: dict) -> Connector | None:
    evse = event.get("evse") or {}
    binding = OcppEvse.objects.filter(station=station, evse_number=evse.get("id", -1)).first()
    if binding is None:
        return None
    return Connector.objects.filter(
        evse_id=binding.evse_id, connector_id=str(evse.get("connector_id", 1))
    ).first()


def _energy(event: dict):
    """(context, Wh) for every Energy.Active.Import.Register sample in the event."""
    for meter_value in event.get("meter_value") or []:
        for sample in meter_value.get("sampled_value") or []:
            if sample.get("measurand", ENERGY) != ENERGY or sample.get("phase"):
                continue
            unit = sample.get("unit_of_measure") or {}
            try:
                value = Decimal(str(sample["value"])) * Decimal(10) ** unit.get("multiplier", 0)
            except (InvalidOperation, KeyError):
                continue
            if unit.get("unit", "Wh") == "kWh":
                value *= 1000
            yield sample.get("context", "Sample.Periodic"), value


def kwh(tx: OcppTransaction) -> Decimal:
    if tx.meter_wh is None or tx.meter_start_wh is None:
        return Decimal(0)
    return max(Decimal(0), (tx.meter_wh - tx.meter_start_wh) / 1000).quantize(Decimal("0.0001"))


def price(tx: OcppTransaction) -> tariffs.Quote | None:
    if tx.connector is None or tx.started_at is None:
        return None
    connector = tx.connector
    usage = tariffs.Usage(
        start=tx.started_at,
        end=max(tx.ended_at or tx.measured_at or tx.started_at, tx.started_at),
        kwh=kwh(tx),
        max_power_kw=connector.max_power_kw,
    )
    return tariffs.quote(
        connector.tariff_at(tx.started_at).ocpi, usage, tz=connector.evse.location.time_zone
    )


def _response(tx: OcppTransaction, version: str, event: dict) -> dict:
    response = {}
    token = (event.get("id_token") or {}).get("id_token")
    if token:
        # Ours: the token we sent, or the PSP reference of a payment its terminal took.
        ours = (bool(tx.reference) and token == tx.id_token) or (
            bool(tx.psp_ref) and token == tx.psp_ref
        )
        response["id_token_info"] = {"status": "Accepted" if ours else "Invalid"}
    priced = price(tx) if tx.reference or tx.psp_ref else None
    if priced is not None:
        response["total_cost"] = float(priced.total_incl_vat)
    # OCPP 2.1: the charger enforces the spending cap itself (a 2.0.1 charger is stopped by us).
    if version == "ocpp2.1" and tx.max_cost is not None and tx.state != tx.State.ENDED:
        response["transaction_limit"] = {"max_cost": float(tx.max_cost)}
    return response


def _session_update(tx: OcppTransaction, *, final: bool) -> SessionUpdate:
    common = {
        "reference": tx.reference,
        "kwh": kwh(tx),
        "started_at": tx.started_at,
        "measured_at": tx.measured_at,
        "csms_session_id": f"OCPP-{tx.station.identity}-{tx.transaction_id}"[:36],
    }
    if not final:
        return SessionUpdate(status=SessionStatus.ACTIVE, **common)
    priced = price(tx)
    cdr = {
        "id": f"CDR-OCPP-{tx.pk}",
        "start_date_time": tx.started_at.isoformat(),
        "end_date_time": tx.ended_at.isoformat(),
        "total_energy": str(common["kwh"]),
        "stopped_reason": tx.stopped_reason,
    }
    if priced is not None:
        cdr["total_cost"] = {
            "excl_vat": str(priced.total_excl_vat),
            "incl_vat": str(priced.total_incl_vat),
        }
        cdr["currency"] = priced.currency
    return SessionUpdate(
        status=SessionStatus.COMPLETED, ended_at=tx.ended_at, final=True, cdr=cdr, **common
    )


def _time(value) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a date-time: {value!r}")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def settlement(identity: str, request: dict) -> dict:
    """NotifySettlement (OCPP 2.1, snake_case payload): the terminal's PSP settled a charge.

    A settled payment for an ended charge of this station, paid with that pspRef, goes to checkout
    (a terminal payment and its receipt); the answer carries the receipt's number and signed link
    for the terminal's QR code. A repeat (same pspRef) answers the same. Raises SettlementRefused
    when it cannot be recorded (the gateway answers a CALLERROR; nothing is stored).
    """
    if request["status"] != "Settled":
        # Canceled / Rejected / Failed: no money moved, nothing to record or receipt.
        log.info("%s: settlement %s %s", identity, request["psp_ref"], request["status"])
        return {}
    try:
        amount = Decimal(str(request["settlement_amount"]))
        settled_at = _time(request["settlement_time"])
    except (InvalidOperation, ValueError) as exc:
        raise SettlementRefused(str(exc)) from exc
    if not amount.is_finite():
        raise SettlementRefused("settlementAmount is not a number")
    with transaction.atomic():
        tx = (
            OcppTransaction.objects.select_for_update(of=("self",))
            .select_related("connector__evse__location")
            .filter(station__identity=identity, transaction_id=request.get("transaction_id") or "")
            .first()
        )
        if tx is None or not request.get("transaction_id"):
            raise SettlementRefused("no transaction with that transactionId at this station")
        if tx.psp_ref != request["psp_ref"]:
            raise SettlementRefused("the transaction was not paid with that pspRef")
        if tx.state != OcppTransaction.State.ENDED or tx.connector is None:
            raise SettlementRefused("the transaction has not ended")
        if tx.reference is None:
            tx.reference = f"TP{uuid.uuid4().hex[:22].upper()}"
            tx.save(update_fields=["reference"])
        return deliver_settlement(
            TerminalSettlement(
                psp_reference=request["psp_ref"],
                amount=amount,
                settled_at=settled_at,
                status_info=request.get("status_info") or "",
                connector=tx.connector,
                reference=tx.reference,
                quote=price(tx),
                kwh=kwh(tx),
                started_at=tx.started_at,
                ended_at=tx.ended_at,
                csms_session_id=f"OCPP-{identity}-{tx.transaction_id}",
            )
        )
