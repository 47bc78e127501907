from __future__ import annotations

import aiohttp
import pytest

from storage.embedded import free_port
from tests.harness import Api, Gateway, gateway_config, start_store
from tests.cdn_fixtures import *  # noqa: F401,F403 - the CDN tier's fixtures


@pytest.fixture(scope="session")
def gateway_port() -> int:
    """The port every test gateway listens on, so the store's webhook reaches whichever runs."""
    return free_port()


@pytest.fixture(scope="session")
def store(tmp_path_factory, gateway_port):
    """One real SeaweedFS for the whole session; tests use random content, so they do not collide."""
    embedded = start_store(tmp_path_factory.mktemp("store"), gateway_port)
    yield embedded
    embedded.stop()


@pytest.fixture
def database_path(tmp_path):
    return tmp_path / "gateway.sqlite3"


@pytest.fixture
async def make_gateway(store, database_path, gateway_port):
    """Start a gateway (a real app on a real port, a real SQLite file) with config overrides."""
    started: list[Gateway] = []

    async def make(**overrides) -> Gateway:
        overrides.setdefault("port", gateway_port)
        gateway = Gateway(gateway_config(store, database_path, **overrides))
        await gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def gateway(make_gateway) -> Gateway:
    return await make_gateway()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(gateway, http) -> Api:
    return Api(http, gateway.url)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis server for the shared permission cache (deploy/redis_server.py: loopback, password)."""
    from deploy.redis_server import LocalRedis

    server = LocalRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres_cluster():
    """One private PostgreSQL for the session (deploy/postgres.py), under /tmp where its user can reach it."""
    import tempfile
    from pathlib import Path

    from deploy.postgres import UNSAFE_FAST, PostgresCluster

    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="test-postgres-")), settings=UNSAFE_FAST).start()
    yield cluster
    cluster.destroy()
