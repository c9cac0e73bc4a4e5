"""Scan marks held in Redis until a beat task writes them, so the checkout page writes nothing.

Used when the default cache is Redis (CACHE_URL=redis://...), the cache every web process shares.
A mark is one member of a Redis set per day, EVSE and kind: the member is the client's bucket
(stations/scans.py), so a client counts once per set however often it scans, as the ScanMark
unique constraint makes it count once per row. An index set names the sets holding marks.
`drain` hands their marks to a callback that writes them, then removes what it handed over.

Without Redis (local memory cache: `make run`, tests) there is no shared place to hold marks, and
scans.scan_record writes the ScanMark row directly.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from datetime import date

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

# Marks not drained within this long are lost (beat drains every few minutes).
TTL_SECONDS = 3 * 24 * 3600
LOCK_SECONDS = 600

# Drop a set from the index only if it is empty, atomically: a scan adds its mark and its index
# entry in one MULTI, so it lands either before this (the set is kept) or after (re-indexed).
_UNINDEX_IF_EMPTY = """
if redis.call('SCARD', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


def _cache():
    cache = caches["default"]
    return cache if isinstance(cache, RedisCache) else None


def enabled() -> bool:
    return _cache() is not None


# Django's Redis cache makes a new redis.Redis on every get_client() (7 % of a checkout's CPU).
# One per cache object is enough: it is thread-safe and uses the cache's own connection pool.
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _client(cache):
    client = _clients.get(cache._cache)
    if client is None:
        client = _clients[cache._cache] = cache._cache.get_client(write=True)
    return client


def _set_key(cache, name: str) -> str:
    return cache.make_and_validate_key(f"stations.scans:{name}")


def _index_key(cache) -> str:
    return cache.make_and_validate_key("stations.scans:index")


def _name(day: date, evse_id: int | None, kind: str) -> str:
    return f"{day.isoformat()}:{evse_id or 0}:{kind}"


def _parse(name: str) -> tuple[date, int | None, str]:
    day, evse_id, kind = name.split(":")
    return date.fromisoformat(day), int(evse_id) or None, kind


def add(*, evse_id: int | None, day: date, kind: str, client: int) -> None:
    """Hold one mark: one round trip, no database."""
    cache = _cache()
    name = _name(day, evse_id, kind)
    key, index = _set_key(cache, name), _index_key(cache)
    with _client(cache).pipeline(transaction=True) as pipe:
        pipe.sadd(key, client).expire(key, TTL_SECONDS)
        pipe.sadd(index, name).expire(index, TTL_SECONDS)
        pipe.execute()


@contextmanager
def lock(blocking_timeout: float = 60):
    """One drain (and roll-up) at a time across workers; yields False when another holds it."""
    cache = _cache()
    held = _client(cache).lock(
        cache.make_and_validate_key("stations.scans:lock"),
        timeout=LOCK_SECONDS,
        blocking_timeout=blocking_timeout,
    )
    acquired = held.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            held.release()


def drain(write) -> int:
    """Pass the held marks, as (evse_id, day, kind, client) tuples, to `write`, then remove them;
    return how many were passed. Call under `lock`.

    A mark is removed only after `write` returned: if it fails, they stay for the next drain, and
    `write` must therefore tolerate marks it already wrote (ScanMark's unique constraint does)."""
    cache = _cache()
    client, index = _client(cache), _index_key(cache)
    marks, held = [], []
    for raw in client.smembers(index):
        name = raw.decode()
        key = _set_key(cache, name)
        buckets = client.smembers(key)
        day, evse_id, kind = _parse(name)
        marks.extend((evse_id, day, kind, int(bucket)) for bucket in buckets)
        held.append((name, key, buckets))
    if marks:
        write(marks)
    for name, key, buckets in held:
        if buckets:
            client.srem(key, *buckets)
        client.eval(_UNINDEX_IF_EMPTY, 2, key, index, name)
    return len(marks)
