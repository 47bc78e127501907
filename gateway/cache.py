"""The metadata and permission cache (aiocache): in memory, Redis for several gateways, or none.

``GATEWAY_CACHE_URL``:

- ``memory://`` (default): one in-process cache per gateway process. Invalidation
  only reaches the process that made the change, so run a single process with it.
- ``redis://host:port/db``: shared by every gateway process; needed as soon as
  more than one process serves the same database.
- ``none://``: no caching at all (no cache object); every lookup goes to the
  database (the benchmark's baseline, and a way to rule the cache out when debugging).

What is cached (plain JSON values), and how it is invalidated, is gateway/core/permissions.py's business.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from aiocache import Cache
from aiocache.base import BaseCache
from aiocache.serializers import JsonSerializer

from gateway.config import Config

DISABLED_SCHEMES = ("none", "off", "disabled")


def make_cache(config: Config) -> BaseCache | None:
    """The configured cache, or None when caching is off."""
    url = urlsplit(config.cache_url)
    scheme = url.scheme.lower()
    if scheme in DISABLED_SCHEMES:
        return None
    if scheme == "redis":
        return Cache(
            Cache.REDIS,
            endpoint=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int(url.path.strip("/") or 0),
            password=url.password,
            namespace="gateway",
            # JSON, never pickle: whoever can write to Redis must not be able to run code here.
            serializer=JsonSerializer(),
            ttl=config.cache_ttl,
            # A slow Redis must not hang requests: lookups fall back to the database.
            timeout=1,
        )
    if scheme not in ("memory", ""):
        raise ValueError(f"GATEWAY_CACHE_URL={config.cache_url!r}: use memory://, redis://host:port/db or none://")
    # Dictionary operations: no per-call timeout (asyncio.wait_for would cost more than the lookup).
    return Cache(Cache.MEMORY, namespace="gateway", ttl=config.cache_ttl, timeout=None)
