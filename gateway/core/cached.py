"""Read-through caching that never brings a stale answer back, for entries invalidated on change.

:meth:`ReadThrough.get` answers from the cache when it can, else from ``load``
(the database), and fills the cache without racing invalidations, with leases
as in memcached: a lookup that misses first ``add``s a unique lease token
under the key (``add`` only succeeds on an empty key), loads, then swaps the
lease for the entry with a compare-and-set that succeeds only if the key still
holds *its* lease. An invalidation (:meth:`ReadThrough.forget`, always *after*
the database commit) that lands between the load and the swap deletes the
lease, so the swap fails and the (possibly stale) load serves that one request
only. Lookups that find someone else's lease load and leave the cache alone.

Entries are plain JSON values carrying ``"v": version``; anything else under
the key (an entry of another version, a planted value) is ignored. ``cache``
None: caching is off, every lookup loads.

When the cache fails (Redis down, or out of this process's reach), lookups
load from the database: always correct, since the cache only ever holds copies
of what the database says. An invalidation that fails is *owed*: the process
keeps the key, reads it from the database (never from the cache) until the
delete lands, and delivers it as soon as the cache answers again, before its
own next lookup of the key and in a background round
(:meth:`ReadThrough.deliver_owed`, every ``OWED_RETRY_INTERVAL`` seconds).
Whatever the cache still held under the key (the entry, or a lease a lookup
elsewhere may still swap) goes with that delete, so nothing the change made
stale outlives it. Another process that reaches the cache while this one
cannot may serve the stale entry until then, or until its TTL
(``GATEWAY_CACHE_TTL``) ends it; a cache that restarted empty (the stack's
Redis keeps nothing on disk) holds nothing stale at all.
"""
from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiocache.base import BaseCache

log = structlog.get_logger("gateway.cache")

LEASE_PREFIX = "lease:"
# A lookup holds its lease at most this long; one stuck longer simply does not fill the cache.
LEASE_TTL = 10
# Seconds between attempts to deliver owed invalidations (the app runs deliver_owed this often).
OWED_RETRY_INTERVAL = 0.5


class ReadThrough:
    """One process's way into the cache: lookups, invalidations, and the invalidations it owes."""

    def __init__(self, cache: BaseCache | None):
        self.cache = cache
        # Keys whose invalidation failed, each with the number of its last failure (see _deliver).
        self.owed: dict[str, int] = {}
        self._failures = itertools.count(1)

    async def get(self, key: str, version: int, load: Callable[[], Awaitable[dict | None]],
                  on_lookup: Callable[[bool], None] | None = None) -> dict | None:
        """The entry under ``key``: cached if it is there, else ``load()``ed (None: nothing to cache).

        ``on_lookup(hit)`` is told whether the cache answered (the metrics' hits and misses).
        """
        cache = self.cache
        if cache is None:
            return await load()
        if key in self.owed and not await self._deliver(key):
            return await load()  # what the cache holds under the key may be stale: not until the delete lands
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

    async def forget(self, key: str) -> None:
        """Drop ``key``; call it after the change is committed. Owed until it lands if the cache fails."""
        if self.cache is not None:
            await self._deliver(key)

    async def deliver_owed(self) -> int:
        """Try the owed invalidations again, until one fails (the cache is still away); how many are still owed."""
        for key in list(self.owed):
            if not await self._deliver(key):
                break
        return len(self.owed)

    async def _deliver(self, key: str) -> bool:
        """Delete ``key``; whether it was deleted. A failure leaves (or makes) it owed.

        A debt is settled only if no invalidation of the key failed while this delete was
        on its way: that one's change may have committed after the delete landed.
        """
        assert self.cache is not None, "only called with a cache"
        owed_since = self.owed.get(key)
        try:
            await self.cache.delete(key)
        except Exception as exc:  # noqa: BLE001
            self.owed[key] = next(self._failures)
            log.error("cache_invalidation_failed", key=key, error=repr(exc), owed=len(self.owed))
            return False
        if owed_since is not None and self.owed.get(key) == owed_since:
            del self.owed[key]
            log.info("cache_invalidation_delivered", key=key, owed=len(self.owed))
        return True
