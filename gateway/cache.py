"""The metadata and permission cache (aiocache): in memory, or Redis for several gateways."""
from __future__ import annotations

from urllib.parse import urlsplit

from aiocache import Cache
from aiocache.serializers import PickleSerializer

from gateway.config import Config


def make_cache(config: Config):
    url = urlsplit(config.cache_url)
    if url.scheme == "redis":
        return Cache(
            Cache.REDIS,
            endpoint=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int(url.path.strip("/") or 0),
            namespace="gateway",
            serializer=PickleSerializer(),
            ttl=config.cache_ttl,
        )
    return Cache(Cache.MEMORY, namespace="gateway", ttl=config.cache_ttl)
