from datetime import timedelta

import pytest
from django.core.cache import cache

from checkout import services
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.csms import simulator
from stations.models import SimulatedSession
from tests import pytest_env
from tests.extrawest import cpo_peer  # noqa: F401 - the extrawest CPO fixture, for every test module
from tests.factories import ConnectorFactory
from tests.ocpi_peer import CpoPeer
from tests.peers import LocalStripe


@pytest.fixture(autouse=True)
def _empty_cache():
    """The Pay abuse limits count in the cache (local memory here): each test starts uncounted."""
    cache.clear()


@pytest.fixture(scope="session")
def localstripe():
    server = LocalStripe()
    yield server
    server.stop()


@pytest.fixture
def stripe(settings, localstripe):
    """Point the app at the real localstripe server (over HTTP, as in production)."""
    settings.STRIPE_API_BASE = localstripe.base
    return localstripe


@pytest.fixture
def connector(db, stripe):
    return ConnectorFactory()


@pytest.fixture
def requires_postgres():
    if not pytest_env.POSTGRES:
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 (SQLite ignores row locks)")


@pytest.fixture
def pay(stripe, django_capture_on_commit_callbacks):
    """Pay for a connector in process, running what the payment queues (the start) at once."""

    def pay(connector, card="4242424242424242", hold=2000, email=""):
        with django_capture_on_commit_callbacks(execute=True):
            session = services.session_create(
                evse=connector.evse, connector=connector, hold_amount=hold, email=email
            )
            services.payment_authorize(
                session_id=session.pk, payment_method_id=stripe.card_token(card)
            )
        session.refresh_from_db()
        return session

    return pay


@pytest.fixture
def tick(django_capture_on_commit_callbacks):
    """Advance the simulated chargers to `at`, running what their reports queue at once."""

    def tick(at):
        with django_capture_on_commit_callbacks(execute=True):
            simulator.tick(now=at)

    return tick


@pytest.fixture
def finished(connector, pay, tick, django_capture_on_commit_callbacks):
    """A session charged for half an hour (11 kWh = 6.66 EUR), stopped and captured."""
    session = pay(connector)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    t0 = sim.accept_at
    tick(t0)
    tick(t0 + timedelta(minutes=30))
    with django_capture_on_commit_callbacks(execute=True):
        services.session_request_stop(session_id=session.pk)
    SimulatedSession.objects.filter(pk=sim.pk).update(stop_requested_at=t0 + timedelta(minutes=30))
    tick(t0 + timedelta(minutes=30, seconds=5))
    session.refresh_from_db()
    assert session.status == S.FINISHED
    assert session.payment.status == P.CAPTURED and session.payment.amount_captured == 666
    return session


@pytest.fixture
def peer():
    """A CPO's OCPI platform written from the specification (tests/ocpi_peer.py), serving HTTP."""
    peer = CpoPeer()
    yield peer
    peer.stop()


@pytest.fixture
def ours(live_server, settings):
    """Our app served over HTTP (for a peer that calls us back), with URLs we hand out pointing at it."""
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url
