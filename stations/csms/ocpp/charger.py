"""A simulated OCPP 2.0.1 / 2.1 charging station, on the `ocpp` package's ChargePoint classes.

Used by `manage.py ocpp_charger` (the demo) and by the tests as the charger peer. It boots,
reports its connectors' status, answers RequestStart/StopTransaction, meters energy at its
power times `speedup`, and on 2.1 stops itself once the running cost the CSMS reports reaches the
transaction limit (max_cost). Fault modes: `reject` (refuses every start), `silent` (never answers
a start), `disconnect` (drops the socket during a charge, keeps its TransactionEvents and replays
them with offline=true after reconnecting, resending the last one it had sent, as a charger
unsure whether it arrived does). On 2.1 a card tap on its payment terminal (`tap`) starts a
charge the terminal authorised (idToken type DirectPayment) and ends with NotifySettlement.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger(__name__)

MODES = ("accept", "reject", "silent", "disconnect")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Charge:
    transaction_id: str
    evse_id: int
    id_token: dict
    remote_start_id: int
    register_wh: Decimal
    seq_no: int = 0
    stop_reason: str = ""  # set when it must end: Remote (our stop) or the cost limit
    trigger: str = ""
    max_cost: float | None = None
    last_cost: float | None = None  # the CSMS's running cost, as its last answer said
    events: list = field(default_factory=list)


class StationHandlers:
    """The charger's side: what the CSMS may ask of it."""

    def __init__(self, identity, connection, sim: SimulatedStation):
        super().__init__(identity, connection, response_timeout=15)
        self.sim = sim

    async def route_message(self, raw_msg):
        if self.sim.mode == "silent":
            with contextlib.suppress(Exception):
                message = json.loads(raw_msg)
                if message[0] == 2 and message[2] == "RequestStartTransaction":
                    self.sim.ignored_starts += 1
                    return  # never answered: the CSMS must give up on its own
        await super().route_message(raw_msg)

    @on("RequestStartTransaction")
    async def on_request_start(self, id_token, remote_start_id, evse_id=None, **_):
        evse_id = evse_id or next(iter(self.sim.evses))
        busy = any(c.evse_id == evse_id for c in self.sim.charges.values())
        if self.sim.mode == "reject" or busy or evse_id not in self.sim.evses:
            return self.results.RequestStartTransaction(status="Rejected")
        tid = uuid.uuid4().hex[:20]
        charge = Charge(tid, evse_id, id_token, remote_start_id, self.sim.registers[evse_id])
        self.sim.charges[tid] = charge
        self.sim.tasks.append(asyncio.create_task(self.sim.charge(charge)))
        return self.results.RequestStartTransaction(status="Accepted", transaction_id=tid)

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id, **_):
        charge = self.sim.charges.get(transaction_id)
        if charge is None or charge.stop_reason:
            return self.results.RequestStopTransaction(status="Rejected")
        charge.stop_reason, charge.trigger = "Remote", "RemoteStop"
        self.sim.stops_received += 1
        return self.results.RequestStopTransaction(status="Accepted")


class Station201(StationHandlers, ChargePoint201):
    results, calls = result201, call201


class Station21(StationHandlers, ChargePoint21):
    results, calls = result21, call21


class SimulatedStation:
    def __init__(
        self,
        *,
        url: str,
        identity: str,
        password: str,
        version: str = "ocpp2.0.1",
        evses: dict[int, float] | None = None,  # evseId -> power in kW
        mode: str = "accept",
        speedup: float = 60,
        meter_interval: float = 2,
        disconnect_after: int = 2,
        offline_seconds: float = 1,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.url, self.identity, self.password = url.rstrip("/"), identity, password
        self.version, self.mode = version, mode
        self.evses = evses or {1: 22.0}
        self.registers = {n: Decimal(1_000_000) for n in self.evses}  # Wh on the meter
        self.speedup, self.meter_interval = speedup, meter_interval
        self.disconnect_after, self.offline_seconds = disconnect_after, offline_seconds
        self.charges: dict[str, Charge] = {}
        self.tasks: list[asyncio.Task] = []
        self.cp = None
        self.online = asyncio.Event()
        self.offline_queue: list = []
        self.ended: list[Charge] = []
        self.ignored_starts = self.stops_received = self.replayed = 0
        self.settlements: list = []  # NotifySettlement answers (receipts) of taps
        self._dropped = False

    # --- connection ---------------------------------------------------------------------------

    async def open(self):
        credentials = base64.b64encode(f"{self.identity}:{self.password}".encode()).decode()
        return await connect(
            f"{self.url}/{self.identity}",
            subprotocols=[self.version],
            additional_headers={"Authorization": f"Basic {credentials}"},
            open_timeout=10,
        )

    async def run(self, *, reconnect: bool = True) -> None:
        """Connect, boot, report status; serve the CSMS until cancelled (reconnecting if asked)."""
        first = True
        while True:
            try:
                connection = await self.open()
            except (OSError, InvalidStatus, TimeoutError) as exc:
                if not reconnect:
                    raise
                log.warning("%s: cannot connect (%s); retrying", self.identity, exc)
                await asyncio.sleep(2)
                continue
            cls = Station21 if self.version == "ocpp2.1" else Station201
            self.cp = cls(self.identity, connection, self)
            serving = asyncio.create_task(self.cp.start())
            try:
                if first:
                    await self._boot()
                    first = False
                self.online.set()
                await self._replay()
                await serving
            except ConnectionClosed:
                pass
            finally:
                self.online.clear()
                serving.cancel()
            if not reconnect:
                return
            await asyncio.sleep(self.offline_seconds if self._dropped else 2)
            self._dropped = False

    async def _boot(self) -> None:
        await self.cp.call(
            self.cp.calls.BootNotification(
                charging_station={
                    "vendor_name": "DirectPay",
                    "model": f"Sim {self.version}",
                    "serial_number": self.identity[:25],
                    "firmware_version": "sim-1.0",
                },
                reason="PowerUp",
            )
        )
        for evse_id in self.evses:
            await self.status(evse_id, "Available")

    async def status(self, evse_id: int, status: str, connector_id: int = 1) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError, AttributeError):
            await self.cp.call(
                self.cp.calls.StatusNotification(
                    timestamp=_now(),
                    connector_status=status,
                    evse_id=evse_id,
                    connector_id=connector_id,
                )
            )

    async def drop(self) -> None:
        """Lose the connection (fault mode disconnect): what is sent meanwhile waits offline."""
        self._dropped = True
        self.online.clear()
        await self.cp._connection.close()

    # --- a charge -----------------------------------------------------------------------------

    async def charge(self, charge: Charge, *, trigger: str = "RemoteStart") -> None:
        await self.status(charge.evse_id, "Occupied")
        await self._event(charge, "Started", trigger, "Transaction.Begin")
        updates = 0
        while not charge.stop_reason:
            await asyncio.sleep(self.meter_interval)
            if charge.stop_reason:
                break
            kw = Decimal(str(self.evses[charge.evse_id]))
            wh = kw * 1000 * Decimal(str(self.speedup)) * Decimal(str(self.meter_interval)) / 3600
            self.registers[charge.evse_id] += wh.quantize(Decimal("0.001"))
            response = await self._event(charge, "Updated", "MeterValuePeriodic", "Sample.Periodic")
            updates += 1
            self._check_limit(charge, response)
            if self.mode == "disconnect" and updates == self.disconnect_after:
                await self.drop()
        await self._event(
            charge, "Ended", charge.trigger, "Transaction.End", stopped_reason=charge.stop_reason
        )
        self.charges.pop(charge.transaction_id, None)
        self.ended.append(charge)
        await self.status(charge.evse_id, "Available")

    def _check_limit(self, charge: Charge, response) -> None:
        # OCPP 2.1: the CSMS's transaction limit and running cost (central cost calculation).
        limit = getattr(response, "transaction_limit", None) or {}
        if limit.get("max_cost") is not None:
            charge.max_cost = limit["max_cost"]
        cost = getattr(response, "total_cost", None)
        if (
            self.version == "ocpp2.1"
            and charge.max_cost is not None
            and cost is not None
            and cost >= charge.max_cost
            and not charge.stop_reason
        ):
            charge.stop_reason, charge.trigger = "LocalOutOfCredit", "CostLimitReached"

    async def tap(
        self, *, evse_id: int | None = None, seconds: float = 2, amount: float | None = None
    ) -> dict:
        """A driver taps a card on this station's payment terminal (OCPP 2.1 only).

        The terminal authorises; the charge runs `seconds` (metered as any other), ends, and the
        terminal settles what the CSMS's last running cost said (or `amount`, to simulate a
        terminal that settles something else) and sends NotifySettlement. Returns its answer
        ({"receipt_id", "receipt_url"}), the pspRef and the transactionId.
        """
        if self.version != "ocpp2.1":
            raise ValueError("payment terminals report over OCPP 2.1 only")
        await self.online.wait()
        evse_id = evse_id or next(iter(self.evses))
        psp_ref = f"PSP-{uuid.uuid4().hex[:16].upper()}"
        charge = Charge(
            uuid.uuid4().hex[:20],
            evse_id,
            {"id_token": psp_ref, "type": "DirectPayment"},
            0,
            self.registers[evse_id],
        )
        self.charges[charge.transaction_id] = charge
        running = asyncio.create_task(self.charge(charge, trigger="Authorized"))
        await asyncio.sleep(seconds)
        if not charge.stop_reason:
            charge.stop_reason, charge.trigger = "Local", "StopAuthorized"
        await running
        settled = amount if amount is not None else (charge.last_cost or 0)
        response = await self.cp.call(
            self.cp.calls.NotifySettlement(
                psp_ref=psp_ref,
                status="Settled",
                settlement_amount=round(float(settled), 2),
                settlement_time=_now(),
                transaction_id=charge.transaction_id,
            ),
            suppress=False,
        )
        self.settlements.append(response)
        return {
            "receipt_id": response.receipt_id,
            "receipt_url": response.receipt_url,
            "psp_ref": psp_ref,
            "transaction_id": charge.transaction_id,
            "amount": settled,
        }

    async def _event(self, charge: Charge, kind, trigger, context, stopped_reason=None):
        info = {"transaction_id": charge.transaction_id}
        if kind == "Started" and charge.id_token.get("type") != "DirectPayment":
            info["remote_start_id"] = charge.remote_start_id
        info["charging_state"] = "EVConnected" if kind == "Ended" else "Charging"
        if stopped_reason:
            info["stopped_reason"] = stopped_reason
        register = self.registers[charge.evse_id]
        payload = {
            "event_type": kind,
            "timestamp": _now(),
            "trigger_reason": trigger,
            "seq_no": charge.seq_no,
            "transaction_info": info,
            "evse": {"id": charge.evse_id, "connector_id": 1},
            "meter_value": [
                {
                    "timestamp": _now(),
                    "sampled_value": [
                        {
                            "value": float(register),
                            "context": context,
                            "measurand": "Energy.Active.Import.Register",
                            "unit_of_measure": {"unit": "Wh"},
                        }
                    ],
                }
            ],
        }
        if kind == "Started":
            payload["id_token"] = charge.id_token
        charge.seq_no += 1
        charge.events.append(payload)
        response = await self._send_event(payload)
        if getattr(response, "total_cost", None) is not None:
            charge.last_cost = response.total_cost
        return response

    async def _send_event(self, payload: dict):
        if not self.online.is_set():
            self.offline_queue.append(payload)
            return None
        try:
            return await self.cp.call(self.cp.calls.TransactionEvent(**payload))
        except (ConnectionClosed, TimeoutError):
            self.offline_queue.append(payload)
            return None

    async def _replay(self) -> None:
        """After a reconnect: the events kept offline, with offline=true, plus the one sent just
        before the drop (the charger cannot know it arrived), so the CSMS sees it twice."""
        if not self.offline_queue:
            return
        queue, self.offline_queue = self.offline_queue, []
        sent = [e for c in list(self.charges.values()) + self.ended for e in c.events]
        before = [e for e in sent if e not in queue and e["seq_no"] < queue[0]["seq_no"]]
        for payload in ([before[-1]] if before else []) + queue:
            payload = {**payload, "offline": True}
            self.replayed += 1
            response = await self.cp.call(self.cp.calls.TransactionEvent(**payload))
            charge = self.charges.get(payload["transaction_info"]["transaction_id"])
            if charge is not None:
                self._check_limit(charge, response)
