"""The embedded default CSMS: a simulated charger network.

Each EVSE behaves as staff set it in the admin (accept, reject, occupied, never answer, start
slowly). Accepted charges deliver energy at the connector's power times SIMULATOR_SPEEDUP (a demo
need not wait an hour for a result), until the car's battery is full or the driver stops; the
final record is priced by the CSMS side with the same tariff engine, as a CPO's CDR would be.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_noop as N_  # stored in English, shown translated

from directpay.prepared import STAND_IN_ID, PreparedInsert, PreparedQuery, PreparedUpdate
from stations import ocmf, tariffs
from stations.models import Connector, Evse, SimulatedSession

from .base import (
    CsmsError,
    Limits,
    SessionStatus,
    SessionUpdate,
    SignedData,
    SignedValue,
    StartResult,
    StartStatus,
    deliver_update,
)

log = logging.getLogger(__name__)

# A step reads its charge under the row's lock, so a Stop pressed while the tick runs is seen at
# once, not a tick later, and writes back only the columns a step changes (not stop_requested_at).
_LOCKED = PreparedQuery(
    "simulated charge",
    lambda pk: (
        SimulatedSession.objects.select_for_update(of=("self",))
        .select_related("connector")
        .filter(pk=pk)
    ),
    pk=STAND_IN_ID,
)
_STEP = PreparedUpdate(SimulatedSession, ["started_at", "kwh", "finished_at"])
_CREATE = PreparedInsert(SimulatedSession, unique=("reference",))


class SimulatorAdapter:
    def start_session(self, *, connector: Connector, reference: str, limits: Limits) -> StartResult:
        behaviour = connector.evse.sim_behaviour
        if behaviour == Evse.SimBehaviour.REJECT:
            return StartResult(StartStatus.REJECTED, N_("The charger refused to start."))
        if behaviour == Evse.SimBehaviour.OCCUPIED:
            return StartResult(
                StartStatus.REJECTED, N_("The charger is occupied by another vehicle.")
            )
        if behaviour == Evse.SimBehaviour.TIMEOUT:
            return StartResult(StartStatus.PENDING)
        delay = settings.SIMULATOR_SLOW_START_SECONDS if behaviour == Evse.SimBehaviour.SLOW else 0
        # Once per reference: a repeated start (a retried task) finds its charge there already.
        _CREATE(
            reference=reference,
            connector=connector,
            power_kw=connector.max_power_kw,
            accept_at=timezone.now() + timedelta(seconds=delay),
        )
        return StartResult(StartStatus.PENDING if delay else StartStatus.ACCEPTED)

    def stop_session(self, *, reference: str) -> None:
        updated = SimulatedSession.objects.filter(
            reference=reference, finished_at__isnull=True, stop_requested_at__isnull=True
        ).update(stop_requested_at=timezone.now())
        if not updated and not SimulatedSession.objects.filter(reference=reference).exists():
            raise CsmsError(f"no simulated session {reference}", permanent=True)


# Steps between looks for charges stopped while the tick runs (a tick of many charges is long).
STOPPED_LOOK_EVERY = 20


def tick(now=None) -> int:
    """Advance every live simulated charge one step and report it. Returns how many were reported."""
    now = now or timezone.now()
    reported = 0
    live = SimulatedSession.objects.filter(finished_at__isnull=True, accept_at__lte=now)
    waiting = list(live.order_by("pk").values_list("pk", flat=True))
    stepped = set()
    while waiting:
        # Stopped charges first, also those stopped since the tick began: their final records
        # (which the money waits for) are not queued behind a round of progress reports, as a
        # CSMS sends a CDR on its own.
        stopped = live.filter(stop_requested_at__isnull=False).order_by("stop_requested_at", "pk")
        first = [pk for pk in stopped.values_list("pk", flat=True) if pk not in stepped]
        if first:
            moved = set(first)
            waiting = first + [pk for pk in waiting if pk not in moved]
        batch, waiting = waiting[:STOPPED_LOOK_EVERY], waiting[STOPPED_LOOK_EVERY:]
        for pk in batch:
            stepped.add(pk)
            reported += _step(pk, now)
    return reported


def _step(pk: int, now) -> int:
    try:
        # The step and its report in one transaction: one commit per report, and a report whose
        # handling failed is made again next tick instead of being lost (a final record too).
        with transaction.atomic():
            update = _advance(pk, now)
            if update is not None:
                deliver_update(update)
                return 1
    except Exception:
        log.exception("simulator: reporting simulated session %s failed; next tick retries", pk)
    return 0


def _advance(pk: int, now) -> SessionUpdate | None:
    """One step of a simulated charge (in the caller's transaction, which holds its row)."""
    sim = _LOCKED.first(pk=pk)
    if sim is None or sim.finished_at:
        return None
    if sim.started_at is None:
        sim.started_at = sim.accept_at
    # Timestamps stay real (receipts never show a future end); only the energy comes faster.
    end = max(sim.stop_requested_at or now, sim.started_at)
    hours = Decimal((end - sim.started_at).total_seconds()) / Decimal(3600)
    rate = sim.power_kw * Decimal(str(settings.SIMULATOR_SPEEDUP))
    sim.kwh = min(rate * hours, sim.battery_kwh).quantize(Decimal("0.0001"))
    charging_hours = sim.kwh / rate
    parking_minutes = max(Decimal(0), (hours - charging_hours) * 60).quantize(Decimal("0.01"))
    final = sim.stop_requested_at is not None
    if final:
        sim.finished_at = now
    _STEP(sim)
    common = {
        "reference": sim.reference,
        "kwh": sim.kwh,
        "started_at": sim.started_at,
        "parking_minutes": parking_minutes,
        "csms_session_id": f"SIM-{sim.pk}",
    }
    if not final:
        return SessionUpdate(status=SessionStatus.ACTIVE, measured_at=end, **common)
    tariff = sim.connector.tariff_at(sim.started_at)
    usage = tariffs.Usage(
        start=sim.started_at,
        end=end,
        kwh=sim.kwh,
        parking_minutes=parking_minutes,
        max_power_kw=sim.power_kw,
    )
    priced = tariffs.quote(tariff.ocpi, usage, tz=sim.connector.evse.location.time_zone)
    cdr = {
        "id": f"CDR-SIM-{sim.pk}",
        "start_date_time": sim.started_at.isoformat(),
        "end_date_time": end.isoformat(),
        "total_energy": str(sim.kwh),
        "total_cost": {
            "excl_vat": str(priced.total_excl_vat),
            "incl_vat": str(priced.total_incl_vat),
        },
        "currency": priced.currency,
    }
    signed = signed_meter_data(sim, end)
    cdr["signed_data"] = signed.as_ocpi()  # where an OCPI CDR carries it
    return SessionUpdate(
        status=SessionStatus.COMPLETED,
        ended_at=end,
        measured_at=end,
        final=True,
        cdr=cdr,
        signed_data=signed,
        **common,
    )


def signed_meter_data(sim: SimulatedSession, end) -> SignedData:
    """The simulated meter's signed begin and end readings of a charge, in OCMF.

    Each EVSE has one meter whose register counts up over all its charges, as a real one does.
    """
    evse = sim.connector.evse
    serial = f"DPYSIM{evse.pk:08d}"
    key = ocmf.simulator_key(serial)
    before = SimulatedSession.objects.filter(
        connector__evse=evse, finished_at__isnull=False, pk__lt=sim.pk
    ).aggregate(total=Sum("kwh"))["total"] or Decimal(0)
    current = "DC" if sim.connector.power_type == "DC" else "AC"
    common = {
        "gateway": "QR Direct Pay simulator",
        "meter_serial": serial,
        "charge_point": evse.evse_id,
        "current_type": current,
    }
    begin = ocmf.reading_payload(
        page=1, moment=sim.started_at, reason="B", register_kwh=before, **common
    )
    ending = ocmf.reading_payload(
        page=2, moment=end, reason="E", register_kwh=before + sim.kwh, **common
    )
    return SignedData(
        encoding_method="OCMF",
        public_key=ocmf.public_key_hex(key),
        values=(
            SignedValue(nature="Start", signed_data=ocmf.sign(begin, key)),
            SignedValue(nature="End", signed_data=ocmf.sign(ending, key)),
        ),
    )
