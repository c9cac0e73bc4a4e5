import pytest

from tests import pytest_env
from tests.factories import ConnectorFactory
from tests.peers import LocalStripe


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
