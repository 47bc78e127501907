from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from storage.embedded import free_port
from deploy.supervisor import GatewayProcess
from tests import lanes
from tests.harness import Api, Gateway, gateway_config, gateway_env, start_store
from tests.app_fixtures import *  # noqa: F401,F403 - the gateway in-process
from tests.cdn_fixtures import *  # noqa: F401,F403 - the CDN tier's fixtures
from tests.core_fixtures import clock, core, core_database, memory_store  # noqa: F401 - the core on the in-memory store


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


ENGINES = ("sqlite", "postgresql")

# Fixtures that start a real part of the stack: a test asking for one (directly or through
# another fixture) is in the real-parts lane, marked ``real``; every other test is in the fast
# lane (`./dev test --fast`). A test on PostgreSQL is real too (its database_url asks for the
# cluster when it runs). Modules that start parts by hand say ``pytestmark = pytest.mark.real``.
REAL_PARTS = frozenset({
    "store", "cdn", "postgres_cluster", "redis_server", "browser", "make_gateway_process",
})


def pytest_addoption(parser):
    parser.addoption(
        "--engine",
        action="append",
        choices=ENGINES,
        help="run every test that has a metadata database on this engine (repeatable); default: SQLite, "
             "and PostgreSQL too where a test is marked every_engine",
    )
    parser.addoption("--fast", action="store_true", help="only the fast lane: no test that starts a real part")


def pytest_configure(config):
    lanes.FAST = config.getoption("fast")
    config.addinivalue_line("markers", "real: starts a real part (store, nginx, PostgreSQL, Redis, browser, process)")
    config.addinivalue_line("markers", "long: runs for many seconds; started first (pytest_collection_modifyitems)")
    config.addinivalue_line("markers", "real_password_cost: passwords hashed at scrypt's real cost (conftest.py)")
    config.addinivalue_line(
        "markers", "every_engine: database behaviour can differ here (queries, migrations, concurrency, the "
                   "core's transactions): run on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc):
    """A test with a metadata database runs on SQLite; where database behaviour can differ
    (marked every_engine), on PostgreSQL as well. ``--engine`` chooses for every test."""
    if "engine" in metafunc.fixturenames:
        engines = metafunc.config.getoption("engine")
        if not engines:
            engines = ENGINES if metafunc.definition.get_closest_marker("every_engine") else ("sqlite",)
        metafunc.parametrize("engine", engines)


def needs_real_parts(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("engine") == "postgresql"
    return on_postgres or bool(REAL_PARTS.intersection(getattr(item, "fixturenames", ()))) \
        or item.get_closest_marker("real") is not None


def pytest_collection_modifyitems(config, items):
    real = [item for item in items if needs_real_parts(item)]
    for item in real:
        item.add_marker(pytest.mark.real)
    if config.getoption("fast") and real:
        config.hook.pytest_deselected(items=real)
        items[:] = [item for item in items if item.get_closest_marker("real") is None]
    # The longest first (the rest keep their order): with `./dev test`'s small scheduling chunks, the other
    # worker runs the short tests beside them, instead of one worker finishing a long one alone at the end.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


# What starts each real part; in the fast lane each of them fails the test that calls it, so
# a test that starts a part without asking for its fixture cannot hide there unmarked.
REAL_PART_STARTERS = (
    "storage.embedded.EmbeddedStore.start", "deploy.postgres.PostgresCluster.start",
    "deploy.redis_server.LocalRedis.start", "deploy.supervisor.GatewayProcess.start",
    "cdn.nginx.nginx_binary", "tests.browser.launch_browser",
)


# scrypt's cost parameter for the passwords the test process hashes (gateway/core/passwords.py's N is
# 2**14: about 70 ms of CPU a hash here). Sign-ups and logins of in-process gateways were most of the
# fast lane's CPU time; at 2**10 a hash costs 16 times less and is the same code. Gateways started as
# processes keep the real cost, and tests marked real_password_cost (tests/test_passwords.py) see it.
TEST_SCRYPT_N = 2**10


@pytest.fixture(autouse=True)
def cheap_password_hashes(request, monkeypatch):
    from gateway.core import passwords

    if request.node.get_closest_marker("real_password_cost") is None:
        monkeypatch.setattr(passwords, "N", TEST_SCRYPT_N)


@pytest.fixture(autouse=True)
def fast_lane_guard(request, monkeypatch):
    if request.config.getoption("fast"):
        for target in REAL_PART_STARTERS:
            def refuse(*args, _target=target, **kwargs):
                raise AssertionError(f"{_target} starts a real part in the fast lane: mark the test real")
            monkeypatch.setattr(target, refuse)
    yield


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite database migrated once per session (per xdist worker): migrating costs 0.2-0.8 s a test."""
    from gateway.db import Database, database_url

    path = tmp_path_factory.mktemp("sqlite-template") / "gateway.sqlite3"

    async def migrate() -> None:
        db = await Database.open(database_url("", str(path)))
        await db.close()

    asyncio.run(migrate())
    assert not path.with_name(path.name + "-wal").exists(), "the template must be whole in its one file"
    return path


@pytest.fixture
def database_path(tmp_path, engine, request) -> Path:
    """The SQLite database of one test: a copy of the migrated template, as PostgreSQL's tests get one."""
    path = tmp_path / "gateway.sqlite3"
    if engine == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster) -> str:
    """A database migrated once; each test gets a copy of it (CREATE DATABASE ... TEMPLATE)."""
    import asyncio

    from gateway.db import Database, database_url

    name = "gateway_template"
    url = postgres_cluster.create_database(name)

    async def migrate() -> None:
        db = await Database.open(database_url(url, ""))
        await db.close()

    asyncio.run(migrate())
    return name


@pytest.fixture
def database_url(engine, request) -> str:
    """The metadata database of one test: "" (SQLite at database_path) or a fresh PostgreSQL database."""
    if engine == "sqlite":
        yield ""
        return
    import secrets

    cluster = request.getfixturevalue("postgres_cluster")
    template = request.getfixturevalue("postgres_template")
    name = f"test_{secrets.token_hex(6)}"
    url = cluster.create_database(name, template=template)
    yield url
    cluster.drop_database(name)


@pytest.fixture
async def make_gateway(store, database_path, database_url, gateway_port):
    """Start a gateway (a real app on a real port, a real database of each engine) with config overrides."""
    started: list[Gateway] = []

    async def make(*, clock=None, **overrides) -> Gateway:
        overrides.setdefault("port", gateway_port)
        overrides.setdefault("database_url", database_url)
        gateway = Gateway(gateway_config(store, database_path, **overrides), clock)
        await gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def make_gateway_process(store, database_path, database_url, tmp_path):
    """Start ``python -m gateway`` processes on this test's database (each engine), on ports of their own."""
    started: list[GatewayProcess] = []

    async def make(**overrides) -> GatewayProcess:
        overrides.setdefault("database_url", database_url)
        port = overrides.pop("port", None) or free_port()
        config = gateway_config(store, database_path, port, **overrides)
        process = GatewayProcess(gateway_env(config), tmp_path / f"gateway-{len(started)}.log")
        started.append(process)
        return await asyncio.to_thread(process.start)

    yield make
    for process in started:
        process.stop()


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


@pytest.fixture
def redis_url(redis_server):
    """The shared cache's Redis, emptied for this test: user ids start at 1 in every test's database."""
    import redis

    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
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

    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="test-postgres-")), settings=UNSAFE_FAST, sync_init=False).start()
    yield cluster
    cluster.destroy()
