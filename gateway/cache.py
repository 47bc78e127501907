"""The metadata and permission cache (aiocache): in memory, Redis for several gateways, or none.

``GATEWAY_CACHE_URL``:

- ``memory://`` (default): one in-process cache per gateway process. Invalidation
  only reaches the process that made the change, so run a single process with it.
- ``redis://host:port/db``: shared by every gateway process; needed as soon as
  more than one process serves the same database.
- ``none://``: no caching at all; every lookup goes to the database (the
  benchmark's baseline, and a way to rule the cache out when debugging).

What is cached, and how it is invalidated, is gateway/permissions.py's business.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from aiocache import Cache
from aiocache.base import BaseCache
from aiocache.serializers import NullSerializer, PickleSerializer

from gateway.config import Config

DISABLED_SCHEMES = ("none", "off", "disabled")


class NullCache(BaseCache):
    """A cache that holds nothing: every get misses, every write is dropped.

    ``enabled = False`` tells gateway/permissions.py to skip the cache calls
    altogether, so ``none://`` measures the database path and nothing else.
    """

    NAME = "none"
    enabled = False

    def __init__(self, **kwargs):
        super().__init__(serializer=NullSerializer(), timeout=None, **kwargs)

    async def _get(self, key, encoding="utf-8", _conn=None):
        return None

    async def _gets(self, key, encoding="utf-8", _conn=None):
        return None

    async def _multi_get(self, keys, encoding="utf-8", _conn=None):
        return [None] * len(keys)

    async def _set(self, key, value, ttl=None, _cas_token=None, _conn=None):
        return 0 if _cas_token is not None else True

    async def _multi_set(self, pairs, ttl=None, _conn=None):
        return True

    async def _add(self, key, value, ttl=None, _conn=None):
        return True

    async def _exists(self, key, _conn=None):
        return False

    async def _increment(self, key, delta, _conn=None):
        return delta

    async def _expire(self, key, ttl, _conn=None):
        return False

    async def _delete(self, key, _conn=None):
        return 0

    async def _clear(self, namespace=None, _conn=None):
        return True

    async def _raw(self, command, *args, **kwargs):
        return None

    async def _redlock_release(self, key, value):
        return 0

    async def _close(self, *args, **kwargs):
        return None


def cache_enabled(cache) -> bool:
    return cache is not None and getattr(cache, "enabled", True)


def make_cache(config: Config):
    url = urlsplit(config.cache_url)
    scheme = url.scheme.lower()
    if scheme in DISABLED_SCHEMES:
        return NullCache()
    if scheme == "redis":
        return Cache(
            Cache.REDIS,
            endpoint=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int(url.path.strip("/") or 0),
            password=url.password,
            namespace="gateway",
            serializer=PickleSerializer(),
            ttl=config.cache_ttl,
            # A slow Redis must not hang requests: lookups fall back to the database.
            timeout=1,
        )
    if scheme not in ("memory", ""):
        raise ValueError(f"GATEWAY_CACHE_URL={config.cache_url!r}: use memory://, redis://host:port/db or none://")
    # Dictionary operations: no per-call timeout (asyncio.wait_for would cost more than the lookup).
    return Cache(Cache.MEMORY, namespace="gateway", ttl=config.cache_ttl, timeout=None)
