"""The gateway's app factory: the core built from its parts, the routes, the background reconciler and thumbnailer.

``create_app(config)`` builds everything from the settings; tests (and any
embedding) may pass in the parts they want instead: an object store (an
in-memory one, say), an open database, a cache, a clock. What is passed in is
the caller's to close.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiocache.base import BaseCache
from aiohttp import web

from gateway.cache import make_cache
from gateway.config import Config
from gateway.core import build_core
from gateway.core.cached import OWED_RETRY_INTERVAL
from gateway.core.clock import Clock, system_clock
from gateway.core.metrics import Metrics
from gateway.db import Database, database_url, in_background
from gateway.http import appkeys
from gateway.http.middlewares import (
    auth_middleware,
    body_timeout_middleware,
    error_middleware,
    metrics_middleware,
    request_id_middleware,
)
from gateway.http.parsing import MAX_JSON_BODY, MAX_REQUEST_LINE
from gateway.http.routes import (
    changes, events, files, health, link_page, links, metrics, openapi, sharing, tree, uploads, users, webapp, zips,
)
from storage import ObjectStore, StoreError
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


def server_options(config: Config) -> dict[str, Any]:
    """How the gateway's HTTP server treats slow clients (``web.run_app`` / ``web.AppRunner`` options).

    aiohttp's keep-alive timer runs from a connection's start, and again from
    each answer, until a whole request head has arrived: it is the header
    timeout (a slowloris client that trickles its head is closed when it runs
    out) as well as the idle time between requests. Bodies:
    gateway/http/middlewares.py's BodyWatch.
    """
    return {"keepalive_timeout": config.header_timeout}


def create_app(
    config: Config,
    *,
    store: ObjectStore | None = None,
    database: Database | None = None,
    cache: BaseCache | None = None,
    clock: Clock | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, request_id_middleware, body_timeout_middleware, error_middleware,
                     auth_middleware],
        # JSON bodies are small (gateway/http/parsing.py); inline uploads are read part by part
        # from the stream, within limits of their own (gateway/http/routes/uploads.py).
        client_max_size=MAX_JSON_BODY,
        # A request line may carry a whole path in the query (GET /dropbox/v1/metadata?path=, up to
        # 4,096 characters, percent-encoded up to 9 bytes each): aiohttp's default is 8,190 bytes.
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )
    app[appkeys.CONFIG] = config
    app[appkeys.METRICS] = Metrics()

    async def core_ctx(app: web.Application) -> AsyncIterator[None]:
        db = database or await Database.open(database_url(config.database_url, config.database_path),
                                             pool_size=config.database_pool_size)
        the_store = store or make_store(config)
        the_cache = cache if cache is not None else make_cache(config)
        try:
            await the_store.ensure_bucket()
        except StoreError as exc:
            # Start anyway: /readyz names the store until it answers.
            log.warning("store_not_ready_at_start", error=str(exc))
        app[appkeys.CORE] = build_core(config, db, the_store, the_cache, clock or system_clock,
                                     metrics=app[appkeys.METRICS])
        try:
            yield
        finally:
            if cache is None and the_cache is not None:
                await the_cache.close()
            if store is None:
                await the_store.close()
            if database is None:
                await db.close()

    app.cleanup_ctx.extend([core_ctx, reconciler_ctx, owed_invalidations_ctx, changes_ctx, metrics.listener_ctx])
    app.on_shutdown.append(end_change_waits)
    if config.thumbnails:
        app.cleanup_ctx.append(thumbnails_ctx)
    for module in (health, openapi, users, uploads, sharing, files, tree, changes, zips, links, link_page, events, webapp):
        app.router.add_routes(module.routes)
    if config.store_part_events:
        # The embedded store: its webhook path, and the rounds that read the part lists its events ask for.
        app.router.add_routes(events.embedded_store_routes)
        app.cleanup_ctx.append(part_lists_ctx)
    return app


async def reconciler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every ``reconcile_interval`` seconds, a reconciler round (gateway/core/reconciler.py) and housekeeping."""
    core = app[appkeys.CORE]

    async def round_once() -> None:
        await core.reconcile_once()
        await core.housekeeping()

    async with every(app[appkeys.CONFIG].reconcile_interval, "reconcile", round_once):
        yield


async def thumbnails_ctx(app: web.Application) -> AsyncIterator[None]:
    """The thumbnail worker (gateway/core/thumbnails.py): whatever is queued, as soon as this gateway queued
    something, and every ``thumbnail_interval`` seconds for what other gateways queued."""
    thumbnails = app[appkeys.CORE].thumbnails
    interval = app[appkeys.CONFIG].thumbnail_interval
    async with every(interval, "thumbnails", thumbnails.drain, wait=lambda: thumbnails.wait_for_work(interval)):
        yield


async def changes_ctx(app: web.Application) -> AsyncIterator[None]:
    """Wake this process's change waits for changes made through other gateways (gateway/core/changes.py)."""
    async with app[appkeys.CORE].changes.follow():
        yield


async def end_change_waits(app: web.Application) -> None:
    """On shutdown, before the server waits for the requests in flight: the held change waits answer now."""
    if (core := app.get(appkeys.CORE)) is not None:  # not when the app failed to start
        core.changes.waiters.close()


async def owed_invalidations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Deliver the cache invalidations that failed while the cache was away, as soon as it answers again."""
    async with every(OWED_RETRY_INTERVAL, "cache-invalidations", app[appkeys.CORE].deliver_owed_invalidations):
        yield


async def part_lists_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every ``part_events_delay`` seconds (at least every 0.2 s), read the part lists part events asked for."""
    core = app[appkeys.CORE]
    async with every(max(app[appkeys.CONFIG].part_events_delay, 0.2), "part-lists", core.refresh_progress_once):
        yield


def current_task_cancelling() -> bool:
    """Whether a cancel of the running task was asked for and not yet taken back (Task.cancelling)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextlib.asynccontextmanager
async def every(interval: float, name: str, round_once: Callable[[], Awaitable[object]],
                wait: Callable[[], Awaitable[object]] | None = None) -> AsyncIterator[None]:
    """Run ``round_once`` every ``interval`` seconds in the background while the block runs (or each time
    ``wait`` returns, when given: a wait that may end early)."""

    async def loop() -> None:
        in_background()
        rounds = 0
        while True:
            await (wait() if wait is not None else asyncio.sleep(interval))
            if current_task_cancelling():
                # The stop's cancel came as the wait ended and the wait swallowed it (Python 3.11's
                # asyncio.wait_for returns a result that is ready instead of raising): stop now, or the
                # stop below waits for ever (a test's teardown hung on it).
                raise asyncio.CancelledError
            rounds += 1
            # Background work has no request; its own id keeps every log line traceable.
            structlog.contextvars.bind_contextvars(request_id=f"{name}-{rounds}")
            try:
                await round_once()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("background_round_failed", task=name)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
