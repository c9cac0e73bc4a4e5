"""The CsmsAdapter for chargers connected to our OCPP gateway (we are their CSMS)."""

from __future__ import annotations

import secrets
import time

from django.conf import settings

from stations.models import Connector, OcppEvse, OcppTransaction

from ..base import CsmsError, Limits, StartResult, StartStatus
from . import control

STOP_REFUSED_WAITS = 20  # quarter seconds


class OcppAdapter:
    def start_session(self, *, connector: Connector, reference: str, limits: Limits) -> StartResult:
        binding = OcppEvse.objects.select_related("station").filter(evse=connector.evse_id).first()
        if binding is None:
            raise CsmsError(f"{connector.evse} is bound to no OCPP station", permanent=True)
        station = binding.station
        tx, created = OcppTransaction.objects.get_or_create(
            reference=reference,
            defaults={
                "station": station,
                "connector": connector,
                # An ad hoc idToken per purchase: it authorises this charge and nothing else.
                "id_token": f"DP{secrets.token_hex(12).upper()}",
                "max_cost": limits.max_cost,
            },
        )
        if not created and tx.state != OcppTransaction.State.REQUESTED:
            # A retried task: the charger answered before.
            if tx.state == OcppTransaction.State.REJECTED:
                return StartResult(StartStatus.REJECTED, "The charger refused to start.")
            return StartResult(StartStatus.ACCEPTED)
        payload = {
            "id_token": {"id_token": tx.id_token, "type": "Central"},
            "remote_start_id": tx.pk,
            "evse_id": binding.evse_number,
        }
        reply = _send(station, "RequestStartTransaction", payload)
        if reply.get("error") == "timeout":
            return StartResult(StartStatus.PENDING)  # it may still start: checkout waits its time
        result = _result(reply)
        if result.get("status") != "Accepted":
            tx.state = OcppTransaction.State.REJECTED
            tx.save(update_fields=["state"])
            return StartResult(StartStatus.REJECTED, "The charger refused to start.")
        if result.get("transaction_id"):
            OcppTransaction.objects.filter(pk=tx.pk, transaction_id="").update(
                transaction_id=result["transaction_id"]
            )
        return StartResult(StartStatus.ACCEPTED)

    def stop_session(self, *, reference: str) -> None:
        tx = OcppTransaction.objects.select_related("station").filter(reference=reference).first()
        if tx is None:
            raise CsmsError(f"no OCPP transaction {reference}", permanent=True)
        if tx.state == OcppTransaction.State.ENDED:
            return
        if not tx.transaction_id:
            raise CsmsError(f"{reference} has not started at the charger yet")  # retried
        reply = _send(tx.station, "RequestStopTransaction", {"transaction_id": tx.transaction_id})
        if reply.get("error") == "timeout":
            raise CsmsError(f"{tx.station} did not answer the stop")
        if _result(reply).get("status") == "Accepted":
            return
        # Refused: a charger that is ending the charge by itself (its cost limit, a pulled cable)
        # says so with its TransactionEvent(Ended) in a moment; otherwise this is retried.
        for _ in range(STOP_REFUSED_WAITS):
            tx.refresh_from_db(fields=["state"])
            if tx.state == OcppTransaction.State.ENDED:
                return
            time.sleep(0.25)
        raise CsmsError(f"{tx.station} refused to stop {tx.transaction_id}")


def _send(station, action: str, payload: dict) -> dict:
    if not station.connected or not station.gateway:
        raise CsmsError(f"charger {station} is not connected", permanent=True)
    try:
        reply = control.send(
            station.gateway,
            station.identity,
            action,
            payload,
            timeout=settings.OCPP_COMMAND_TIMEOUT_SECONDS,
        )
    except control.Unreachable as exc:
        raise CsmsError(str(exc)) from exc
    if reply.get("error") == "not_connected":
        raise CsmsError(f"charger {station} is not connected", permanent=True)
    return reply


def _result(reply: dict) -> dict:
    if "result" not in reply:
        raise CsmsError(f"the gateway answered {reply.get('error')}: {reply.get('detail', '')}")
    return reply["result"] or {}
