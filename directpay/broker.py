"""Celery's Redis broker, with one Redis client per channel instead of one per command.

kombu's Redis channel makes a new redis.Redis for every publish, every unacked-message record and
every ack (`Channel.conn_or_acquire` -> `_create_client`), and redis-py builds its table of
response callbacks (some 200 entries) in each client's __init__: 3-6 % of each worker's CPU in
bench/throughput.py. A client holds nothing but the channel's connection pool, which lends a
connection to each command and is thread-safe, so one client serves the channel; a new pool (after
a fork or a reconnect) gets a new client. Settings select it for redis:// and rediss:// brokers.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # kombu keeps that one itself (Channel.client)
            return super()._create_client(asynchronous=True)
        client, pool = self._sync_client, self.pool
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
