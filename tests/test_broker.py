"""The Redis broker's transport (directpay/broker.py): kombu's, with one Redis client per channel."""

import uuid

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from directpay import broker
from tests import pytest_env

BROKER = "redis://127.0.0.1:6379/11"


def through(transport, monkeypatch) -> tuple[list[int], int, int]:
    """Publish five messages, consume and ack them: what arrived, how many Redis clients were made,
    and how many messages Redis still holds as unacknowledged for this queue."""
    made = []
    init = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        made.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    name = f"test-broker-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    got = []

    def on_message(body, message):
        got.append(body["n"])
        message.ack()

    with Connection(BROKER, transport=transport) as connection:
        producer = connection.Producer()
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        with connection.Consumer(queue, callbacks=[on_message]):
            while len(got) < 5:
                connection.drain_events(timeout=10)
        channel = connection.default_channel
        held = sum(1 for tag in channel.client.hkeys(channel.unacked_key) if name in str(tag))
        queue(channel).delete()
    monkeypatch.undo()
    return got, len(made), held


@pytest.fixture
def needs_redis():
    if not pytest_env.REDIS:  # CI has Redis: it runs there
        pytest.skip("needs Redis on 127.0.0.1:6379")


def test_messages_are_published_delivered_and_acked_with_one_client_per_channel(
    needs_redis, monkeypatch
):
    got, made, held = through(broker.Transport, monkeypatch)
    assert got == [0, 1, 2, 3, 4] and held == 0
    stock = through(kombu_redis.Transport, monkeypatch)
    assert stock[0] == got and stock[2] == 0
    # kombu's own makes a client for each publish, delivery record and ack (at least 15 here).
    assert made <= 3 and stock[1] >= 15, (made, stock[1])
