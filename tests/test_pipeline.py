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


def test_a_final_record_whose_handling_fails_is_sent_again_next_tick(
    db, pay, stripe, monkeypatch, django_capture_on_commit_callbacks
):
    from checkout import services
    from checkout.states import SessionStatus as S

    sessions = [pay(ConnectorFactory()) for _ in range(2)]
    at = max(
        SimulatedSession.objects.filter(
            reference__in=[s.csms_reference for s in sessions]
        ).values_list("accept_at", flat=True)
    ) + timedelta(minutes=10)
    with django_capture_on_commit_callbacks(execute=True):
        simulator.tick(now=at - timedelta(minutes=5))  # both charging
        for session in sessions:
            services.session_request_stop(session_id=session.pk)
    deliver, failing = simulator.deliver_update, sessions[0].csms_reference

    def broken_once(update):
        if update.reference == failing and update.final:
            monkeypatch.setattr(simulator, "deliver_update", deliver)
            raise RuntimeError("the handler failed")
        deliver(update)

    monkeypatch.setattr(simulator, "deliver_update", broken_once)
    with django_capture_on_commit_callbacks(execute=False):
        assert simulator.tick(now=at) == 1  # the other session's record still went through
    sessions[0].refresh_from_db()
    sessions[1].refresh_from_db()
    assert sessions[1].status == S.FINISHED
    assert sessions[0].status == S.STOPPING  # not lost: the simulated charge is still open
    assert SimulatedSession.objects.get(reference=failing).finished_at is None

    with django_capture_on_commit_callbacks(execute=False):
        assert simulator.tick(now=at) == 1
    sessions[0].refresh_from_db()
    assert sessions[0].status == S.FINISHED
