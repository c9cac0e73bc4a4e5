"""The simulated CSMS (the embedded default): the order in which a tick reports."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from stations.csms import simulator
from stations.csms.base import Limits, StartStatus
from stations.models import SimulatedSession
from tests.factories import ConnectorFactory


def test_a_charge_stopped_while_a_tick_runs_gets_its_final_record_in_that_tick(db, monkeypatch):
    """A tick over many charges takes a while: a Stop pressed meanwhile is not left waiting behind
    every other charge's progress report, nor for the next tick."""
    connector = ConnectorFactory()
    start = timezone.now() - timedelta(minutes=5)
    sims = [
        SimulatedSession.objects.create(
            reference=f"charge-{n}", connector=connector, power_kw=Decimal(22), accept_at=start
        )
        for n in range(3 * simulator.STOPPED_LOOK_EVERY)
    ]
    last = sims[-1]
    reports = []

    def deliver(update):
        reports.append((update.reference, update.final))
        if len(reports) == 2:  # the driver presses Stop on the last charge while the tick runs
            simulator.SimulatorAdapter().stop_session(reference=last.reference)

    monkeypatch.setattr(simulator, "deliver_update", deliver)
    assert simulator.tick() == len(sims)
    finals = [n for n, (_reference, final) in enumerate(reports) if final]
    # Right after the batch that was under way, not after the other 39 progress reports.
    assert finals == [simulator.STOPPED_LOOK_EVERY]
    assert reports[finals[0]][0] == last.reference
    last.refresh_from_db()
    assert last.finished_at and last.kwh > 0
    # Every other charge got its progress report, once.
    assert sorted(reference for reference, _final in reports) == sorted(s.reference for s in sims)


def test_a_repeated_start_finds_its_charge_there_already(db):
    """A start command sent again (a retried task) makes no second charge, nor moves the first."""
    connector = ConnectorFactory()
    adapter = simulator.SimulatorAdapter()
    limits = Limits(max_cost=Decimal("20.00"))
    first = adapter.start_session(connector=connector, reference="charge-1", limits=limits)
    accepted = SimulatedSession.objects.get(reference="charge-1").accept_at
    again = adapter.start_session(connector=connector, reference="charge-1", limits=limits)
    assert first.status == again.status == StartStatus.ACCEPTED
    assert SimulatedSession.objects.filter(reference="charge-1").count() == 1
    assert SimulatedSession.objects.get(reference="charge-1").accept_at == accepted
