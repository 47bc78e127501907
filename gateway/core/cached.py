"""Read-through caching that never brings a stale answer back, for entries invalidated on change.

:func:`read_through` answers from the cache when it can, else from ``load``
(the database), and fills the cache without racing invalidations, with leases
as in memcached: a lookup that misses first ``add``s a unique lease token
under the key (``add`` only succeeds on an empty key), loads, then swaps the
lease for the entry with a compare-and-set that succeeds only if the key still
holds *its* lease. An invalidation (:func:`forget`, always *after* the
database commit) that lands between the load and the swap deletes the lease,
so the swap fails and the (possibly stale) load serves that one request only.
Lookups that find someone else's lease load and leave the cache alone.

Entries are plain JSON values carrying ``"v": version``; anything else under
the key (an entry of another version, a planted value) is ignored. When the
cache fails (Redis down), lookups load from the database; a failed
invalidation is logged, and the entry's TTL bounds how long it can outlive the
change. ``cache`` None: caching is off, every lookup loads.
"""
from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiocache.base import BaseCache

log = structlog.get_logger("gateway.cache")

LEASE_PREFIX = "lease:"
# A lookup holds its lease at most this long; one stuck longer simply does not fill the cache.
LEASE_TTL = 10


async def read_through(cache: BaseCache | None, key: str, version: int,
                       load: Callable[[], Awaitable[dict | None]],
                       on_lookup: Callable[[bool], None] | None = None) -> dict | None:
    """The entry under ``key``: cached if it is there, else ``load()``ed (None: nothing to cache).

    ``on_lookup(hit)`` is told whether the cache answered (the metrics' hits and misses).
    """
    if cache is None:
        return await load()
    try:
        cached = await cache.get(key)
    except Exception as exc:  # noqa: BLE001 - the database is always there to answer
        log.warning("cache_get_failed", key=key, error=repr(exc))
        return await load()
    hit = isinstance(cached, dict) and cached.get("v") == version
    if on_lookup is not None:
        on_lookup(hit)
    if hit:
        return cached
    lease = None
    if cached is None:
        lease = LEASE_PREFIX + secrets.token_hex(12)
        try:
            await cache.add(key, lease, ttl=LEASE_TTL)
        except ValueError:
            lease = None  # another lookup holds a lease (or just filled it): do not race it
        except Exception as exc:  # noqa: BLE001
            log.warning("cache_add_failed", key=key, error=repr(exc))
            lease = None
    entry = await load()
    if lease is not None and entry is not None:
        try:
            # Only if the key still holds our lease: an invalidation since the add deleted it.
            await cache.set(key, entry, _cas_token=cache.serializer.dumps(lease))
        except Exception as exc:  # noqa: BLE001
            log.warning("cache_set_failed", key=key, error=repr(exc))
    # A lease left on a missing entry expires after LEASE_TTL; it only makes lookups skip the cache.
    return entry


async def forget(cache: BaseCache | None, key: str) -> None:
    """Drop ``key``; call it after the change is committed."""
    if cache is None:
        return
    try:
        await cache.delete(key)
    except Exception as exc:  # noqa: BLE001
        # Nothing else can be done here; the TTL bounds how long the entry can live.
        log.error("cache_invalidation_failed", key=key, error=repr(exc))
