"""The settlement pipeline's order of work (issue 14): what is done first when many sessions end."""

from datetime import timedelta

from stations.csms import simulator
from stations.models import SimulatedSession
from tests.factories import ConnectorFactory


def test_a_tick_sends_a_stopped_charge_s_final_record_before_progress_reports(
    db, pay, stripe, monkeypatch, django_capture_on_commit_callbacks
):
    sessions = [pay(ConnectorFactory()) for _ in range(3)]
    sims = {
        s.csms_reference: SimulatedSession.objects.get(reference=s.csms_reference) for s in sessions
    }
    at = max(sim.accept_at for sim in sims.values()) + timedelta(minutes=10)
    stopped = sessions[-1].csms_reference  # the newest: last in id order
    SimulatedSession.objects.filter(reference=stopped).update(
        stop_requested_at=at - timedelta(minutes=1)
    )
    delivered = []
    deliver = simulator.deliver_update

    def spy(update):
        delivered.append((update.reference, update.final))
        deliver(update)

    monkeypatch.setattr(simulator, "deliver_update", spy)
    with django_capture_on_commit_callbacks(execute=False):
        simulator.tick(now=at)

    assert delivered[0] == (stopped, True)
    assert sorted(delivered[1:]) == sorted((s.csms_reference, False) for s in sessions[:-1])
