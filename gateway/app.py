"""The gateway's app factory: state in AppKeys, resources in cleanup_ctx."""
from __future__ import annotations

from typing import AsyncIterator

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.cache import make_cache
from gateway.config import Config
from gateway.db import Database
from gateway.middlewares import auth_middleware, error_middleware, request_id_middleware
from gateway.reconciler import reconciler_ctx
from gateway.routes import events, files, health, openapi, sharing, uploads, users, webapp
from storage import StoreError
from storage.s3 import S3ObjectStore

log = structlog.get_logger("gateway.app")


def make_store(config: Config) -> S3ObjectStore:
    return S3ObjectStore(
        config.s3_endpoint,
        config.s3_access_key,
        config.s3_secret_key,
        config.s3_bucket,
        region=config.s3_region,
        public_endpoint=config.presign_endpoint,
    )


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.DB] = await Database(app[appkeys.CONFIG].database_path).open()
    yield
    await app[appkeys.DB].close()


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = make_store(app[appkeys.CONFIG])
    app[appkeys.STORE] = store
    try:
        await store.ensure_bucket()
    except StoreError as exc:
        # Start anyway: /readyz names the store until it answers.
        log.warning("store_not_ready_at_start", error=str(exc))
    yield


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.CACHE] = make_cache(app[appkeys.CONFIG])
    yield
    if app[appkeys.CACHE] is not None:
        await app[appkeys.CACHE].close()


def create_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware, auth_middleware],
        # Inline uploads stream; JSON bodies are small. Multipart is read part by part.
        client_max_size=1024 * 1024,
    )
    app[appkeys.CONFIG] = config
    app.cleanup_ctx.extend([database_ctx, store_ctx, cache_ctx, reconciler_ctx])
    # sharing before files: /files/shared must not be taken for a file id.
    for module in (health, openapi, users, uploads, sharing, files, events, webapp):
        app.router.add_routes(module.routes)
    return app
