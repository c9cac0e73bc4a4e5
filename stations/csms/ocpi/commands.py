"""START_SESSION and STOP_SESSION sent to a CPO, and the CommandResults it posts back.

The CPO answers a command twice: at once with a CommandResponse (did it take the command, and how
long the charger may need), and later with a CommandResult at our response_url (did the charger
do it). The second answer may never come: checkout waits the CPO's timeout plus a margin, then
releases the hold; an ACCEPTED arriving after that makes checkout stop the charge.
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext_noop as N_  # stored in English, shown translated

from stations.models import Connector, OcpiConnection, OcpiSession

from ..base import CsmsError, Limits, StartResult, StartStatus, deliver_start_result
from . import client, messages
from .tokens import ad_hoc_token

log = logging.getLogger(__name__)

# What the driver reads when the charger says no (CommandResponse or CommandResult).
DRIVER_TEXT = {
    "EVSE_OCCUPIED": N_("The charger is occupied by another vehicle."),
    "EVSE_INOPERATIVE": N_("The charger is out of order."),
    "TIMEOUT": N_("The charger did not respond."),
    "NOT_SUPPORTED": N_("This charger cannot be started from here."),
}
REFUSED = N_("The charger refused to start.")


def response_url(command: str, command_id: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{reverse('ocpi:command_result', args=[command, command_id])}"


def _send(
    connection: OcpiConnection, command: str, body: dict, reference: str
) -> messages.CommandAnswer:
    url = connection.endpoint("commands", "RECEIVER")
    if not url:
        raise CsmsError(f"{connection.name} lists no commands endpoint", permanent=True)
    answer = client.call(
        connection, "POST", f"{url.rstrip('/')}/{command}", json=body, correlation_id=reference
    )
    try:
        return messages.parse_command_response(client.data(answer))
    except messages.Invalid as exc:
        raise CsmsError(
            f"{connection.name} answered {command} with a bad CommandResponse: {exc}",
            permanent=True,
        ) from exc


class OcpiAdapter:
    """The CSMS adapter for chargers on an OCPI connection (the EVSE's location says which)."""

    def start_session(self, *, connector: Connector, reference: str, limits: Limits) -> StartResult:
        # OCPI 2.2.1's StartSession has no field for a limit: the spending cap is kept by STOP_SESSION.
        location = connector.evse.location
        connection = location.ocpi_connection
        if connection is None or connection.state != OcpiConnection.State.CONNECTED:
            raise CsmsError(f"{connector.evse} is not on a connected OCPI platform", permanent=True)
        # A retry of the same start reuses the record: one command id, one token per purchase.
        record, _ = OcpiSession.objects.get_or_create(
            reference=reference,
            defaults={
                "connection": connection,
                "command_id": secrets.token_urlsafe(24),
                "token_uid": f"{settings.OCPI_PARTY_ID}{secrets.token_hex(8).upper()}",
            },
        )
        body = {
            "response_url": response_url("START_SESSION", record.command_id),
            "token": ad_hoc_token(record, valid=True),
            "location_id": location.ocpi_id,
            "evse_uid": connector.evse.uid,
            "connector_id": connector.connector_id,
            "authorization_reference": reference,
        }
        answer = _send(connection, "START_SESSION", body, reference)
        OcpiSession.objects.filter(pk=record.pk).update(
            start_response=answer.result, start_timeout=answer.timeout
        )
        if answer.result != "ACCEPTED":
            return StartResult(StartStatus.REJECTED, DRIVER_TEXT.get(answer.result, REFUSED))
        return StartResult(
            StartStatus.PENDING, wait_seconds=answer.timeout + settings.OCPI_COMMAND_MARGIN_SECONDS
        )

    def stop_session(self, *, reference: str) -> None:
        record = (
            OcpiSession.objects.select_related("connection").filter(reference=reference).first()
        )
        if record is None:
            raise CsmsError(f"no OCPI session {reference}", permanent=True)
        if not record.session_id:
            # The CPO has not told us its session id yet. Checkout asks again when the Session arrives.
            log.info("STOP_SESSION for %s waits: the CPO has sent no Session yet", reference)
            return
        body = {
            "response_url": response_url("STOP_SESSION", record.command_id),
            "session_id": record.session_id,
        }
        answer = _send(record.connection, "STOP_SESSION", body, reference)
        if answer.result != "ACCEPTED":
            raise CsmsError(
                f"the CPO answered STOP_SESSION with {answer.result} {answer.message}".strip(),
                permanent=True,
            )


def command_result(
    *, connection: OcpiConnection, command: str, command_id: str, data
) -> OcpiSession | None:
    """A CommandResult at our response_url. None if the id is not one we gave this CPO."""
    result = messages.parse_command_result(data)
    with transaction.atomic():
        record = (
            OcpiSession.objects.select_for_update()
            .filter(connection=connection, command_id=command_id)
            .first()
        )
        if record is None:
            return None
        if command == "STOP_SESSION":
            record.stop_result = result.result
            record.save(update_fields=["stop_result", "updated_at"])
            if result.result != "ACCEPTED":
                log.warning(
                    "the CPO could not stop %s: %s %s",
                    record.reference,
                    result.result,
                    result.message,
                )
            return record
        if record.start_result:
            return record  # a repeat: the first result counted
        record.start_result = result.result
        record.save(update_fields=["start_result", "updated_at"])
        accepted = result.result == "ACCEPTED"
        deliver_start_result(
            record.reference,
            StartResult(
                StartStatus.ACCEPTED if accepted else StartStatus.REJECTED,
                "" if accepted else DRIVER_TEXT.get(result.result, REFUSED),
            ),
        )
    return record
