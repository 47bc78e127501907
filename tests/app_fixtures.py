"""The gateway in-process: ``create_app`` on the in-memory store, a temporary database, a clock the test moves.

For what is about the HTTP interface's shape (status codes and error bodies,
permission matrices, paging, throttle windows, OpenAPI): no store process and
no wait for real time. The app is served on a loopback port as Gateway (tests/harness.py) serves any
app, and aiohttp's test server serves the in-memory store's presigned-URL endpoint, so the tests'
``Api`` and ``upload`` helpers work unchanged, chunks PUT over HTTP included.

A test module moves here by importing these fixtures under the real ones'
names, which also takes it out of the real-parts lane (conftest.py marks by
fixture)::

    from tests.app_fixtures import app_gateway as gateway, make_app as make_gateway  # noqa: F401

Each behaviour keeps one test against the real parts (SeaweedFS, nginx,
PostgreSQL) in the modules that do not move.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import Config
from storage.embedded import free_port
from storage.memory import InMemoryObjectStore
from tests.core_fixtures import FakeClock
from tests.harness import BUCKET, EVENTS_TOKEN, Gateway

__all__ = ["app_clock", "app_gateway", "make_app", "served_memory_store"]


def store_app(store: InMemoryObjectStore) -> web.Application:
    """The in-memory store over HTTP: a presigned PUT answered with the status the store gives."""

    async def send(request: web.Request) -> web.Response:
        status = store.send_presigned(request.method, str(request.url), request.headers, await request.read())
        return web.Response(status=status)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("PUT", "/{key:.*}", send)
    return app


@pytest.fixture
async def served_memory_store(memory_store: InMemoryObjectStore) -> AsyncIterator[InMemoryObjectStore]:
    """The in-memory store with its presigned URLs reachable on a loopback port."""
    server = TestServer(store_app(memory_store), host="127.0.0.1", port=free_port())
    await server.start_server()
    memory_store.endpoint = f"http://127.0.0.1:{server.port}"
    yield memory_store
    await server.close()


@pytest.fixture
def app_clock() -> FakeClock:
    """The app's clock: now at first (access tokens carry real times), then wherever the test moves it."""
    return FakeClock(datetime.now(UTC))


def app_config(database_path: Path, port: int, **overrides: Any) -> Config:
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}", database_path=str(database_path),
        s3_secret_key="memory", s3_bucket=BUCKET, jwt_secret="app-test-jwt-secret-" + "x" * 32,
        events_token=EVENTS_TOKEN, cdn_secret="test-cdn-secret",
        # The in-memory store sends no part events: progress is read from its part lists, as with MinIO.
        store_part_events=False,
        reconcile_interval=3600.0,
    )
    values.update(overrides)
    config = Config(**values)
    config.validate()
    return config


@pytest.fixture
async def make_app(served_memory_store, app_clock, database_path, database_url) -> AsyncIterator[
        Callable[..., Awaitable[Gateway]]]:
    """Start the gateway app in this process with config overrides (as ``make_gateway`` does for the real one)."""
    started: list[Gateway] = []

    async def make(**overrides: Any) -> Gateway:
        port = overrides.pop("port", None) or free_port()
        overrides.setdefault("database_url", database_url)
        gateway = Gateway(app_config(database_path, port, **overrides), app_clock, served_memory_store)
        started.append(gateway)
        return await gateway.start()

    yield make
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def app_gateway(make_app) -> Gateway:
    return await make_app()
