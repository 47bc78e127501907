"""PostgreSQL and Redis stop, and the gateway rides it out: 503s meanwhile (never a 500), back at once after.

The gateway runs in this process (tests/app_fixtures.py) on a PostgreSQL and a
Redis of this module's own: they are stopped and started here, which the
session's shared ones must not be. The stack's supervisor brings them back
(deploy/stack.py's components for them, the very ones `./dev up --cluster` uses).
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

import pytest
from sqlalchemy import text

from deploy.postgres import UNSAFE_FAST, PostgresCluster
from deploy.redis_server import LocalRedis
from deploy.stack import postgres_component, redis_component
from deploy.supervisor import Supervisor
from gateway.cache import make_cache
from gateway.core import build_core
from gateway.core.errors import FileNotFound, TokenRevoked
from gateway.db import DatabaseUnavailable
from gateway.core.tokens import verify_token
from tests.app_fixtures import make_app  # noqa: F401 - the gateway in-process, on the in-memory store
from tests.core_fixtures import FakeClock, core_config, new_user, uploaded
from tests.harness import Api, upload

FILES = "/dropbox/v1/files"


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL for this module alone, under /tmp where its user can reach it."""
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="test-outage-postgres-")), settings=UNSAFE_FAST).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def own_redis(tmp_path):
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


async def until_ready(api: Api, timeout: float = 30.0) -> None:
    """Wait for /readyz to answer 200 (the database back), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (ready := await api.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, f"not ready {timeout}s after the database came back: {ready.body}"
        await asyncio.sleep(0.1)


def assert_unavailable(answer, code: str = "database_unavailable") -> None:
    assert answer.status == 503, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body["error"]["code"] == code and answer.body["error"]["message"]


@pytest.mark.real  # a PostgreSQL of its own, stopped and started
async def test_the_gateway_rides_out_a_postgresql_restart_and_outage(own_postgres, make_app, http):  # noqa: F811
    # No cache: every request reads the database.
    gateway = await make_app(database_url=own_postgres.url, cache_url="none://")
    chunk = gateway.config.chunk_size
    api = Api(http, gateway.url)
    owner = await api.signup()
    before = await upload(owner, os.urandom(100), chunk)

    # A restart between two requests (an upgrade): the pool's connections are dead, the next request works.
    await asyncio.to_thread(own_postgres.stop)
    await asyncio.to_thread(own_postgres.start)
    listed = await owner.get(FILES)
    assert listed.status == 200, listed.body
    assert [file["file_id"] for file in listed.body["files"]] == [before["file_id"]]

    # Down: readiness names the database; requests answer the contract's 503, in flight or new.
    db = gateway.core.db
    with pytest.raises(DatabaseUnavailable):
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.to_thread(own_postgres.stop)
            await conn.execute(text("SELECT 1"))
    ready = await api.get("/readyz")
    assert ready.status == 503 and ready.body["error"]["failing"] == ["database"], ready.body
    assert ready.body["checks"]["store"] == "ok"
    assert (await api.get("/healthz")).status == 200
    assert_unavailable(answer := await owner.get(FILES))
    assert answer.headers["Retry-After"] == "2"
    assert_unavailable(await owner.post(FILES, json={"file_name": "x"}))
    assert_unavailable(await api.post("/dropbox/v1/tokens", json={"username": owner.username, "password": "x"}))

    # The stack's supervisor starts it again; the gateway works at once, nothing written before is lost.
    supervisor = Supervisor([postgres_component(own_postgres)])
    assert await asyncio.to_thread(supervisor.check) is None, "the supervisor gave PostgreSQL up"
    await until_ready(api)
    after = await upload(owner, os.urandom(200), chunk)
    assert after["status"] == "uploaded"
    listed = await owner.get(FILES)
    assert listed.status == 200
    assert {file["file_id"] for file in listed.body["files"]} == {before["file_id"], after["file_id"]}
    assert (await owner.get(f"{FILES}/{before['file_id']}")).body["status"] == "uploaded"


@pytest.mark.real  # a Redis of its own, stopped and started
async def test_the_gateway_works_without_redis_and_uses_it_again(own_redis, make_app, http):  # noqa: F811
    gateway = await make_app(cache_url=own_redis.url)
    chunk = gateway.config.chunk_size
    api = Api(http, gateway.url)
    owner, friend = await api.signup(), await api.signup()
    file_id = (await upload(owner, os.urandom(100), chunk))["file_id"]
    path = f"{FILES}/{file_id}"
    assert (await owner.post(f"{FILES}/share", json={"file_id": file_id, "users": [friend.username]})).status == 200
    assert (await friend.get(path)).status == 200  # cached

    # Down: everything works from the database; the unshare is owed to the cache.
    own_redis.stop()
    assert (await friend.get(path)).status == 200
    assert (await owner.delete(f"{path}/shares/{friend.username}")).status == 204
    assert (await friend.get(path)).status == 404
    assert (await api.get("/readyz")).status == 200, "the cache is no part readiness waits for"
    later = await upload(owner, os.urandom(100), chunk)
    assert (await owner.get(f"{FILES}/{later['file_id']}")).status == 200
    assert (await api.signup()).token

    # The stack's supervisor starts it again (empty); the owed unshare is delivered, the cache used again.
    supervisor = Supervisor([redis_component(own_redis)])
    assert await asyncio.to_thread(supervisor.check) is None, "the supervisor gave Redis up"
    deadline = time.monotonic() + 10
    while gateway.core.cache.owed:
        assert time.monotonic() < deadline, f"still owed: {gateway.core.cache.owed}"
        await asyncio.sleep(0.1)
    hits = gateway.core.metrics.cache_lookups.labels("hit")
    before = hits._value.get()
    for _ in range(3):
        assert (await owner.get(path)).status == 200
        assert (await friend.get(path)).status == 404
    assert hits._value.get() > before, "the gateway does not use the cache again"


class Unreachable:
    """A cache this process cannot reach while ``down`` (the one another process reaches meanwhile)."""

    def __init__(self, cache):
        self.cache = cache
        self.down = False

    def __getattr__(self, name):
        method = getattr(self.cache, name)
        if name not in ("get", "add", "set", "delete"):
            return method

        async def call(*args, **kwargs):
            if self.down:
                raise ConnectionError("the cache is out of reach")
            return await method(*args, **kwargs)

        return call


async def test_an_invalidation_the_cache_missed_is_delivered_once_it_answers(core_database, memory_store):
    """Gateway A cannot reach the cache when it unshares and logs out; gateway B can. Neither change may be
    forgotten: once A reaches the cache again, B serves neither the stale permission nor the ended token."""
    config, clock = core_config(), FakeClock(datetime.now(UTC))
    shared = make_cache(config)
    seen_by_a = Unreachable(shared)
    gateway_a = build_core(config, core_database, memory_store, seen_by_a, clock)  # type: ignore[arg-type]
    gateway_b = build_core(config, core_database, memory_store, shared, clock)
    alice, bob = await new_user(gateway_a, "alice"), await new_user(gateway_a, "bob")
    file_id = await uploaded(gateway_a, memory_store, alice, b"shared for a while")
    await gateway_a.sharing.share(alice, file_id, ["bob"])
    token = (await gateway_a.accounts.log_in("bob", "correct horse battery")).token
    await gateway_b.permissions.readable(bob, file_id)  # both entries cached through B
    await gateway_b.sessions.authenticate(token)

    seen_by_a.down = True
    await gateway_a.sharing.unshare(alice, file_id, "bob")
    await gateway_a.sessions.log_out(verify_token(config.jwt_secret, token))
    assert len(gateway_a.cache.owed) == 2
    with pytest.raises(FileNotFound):  # A reads the database meanwhile
        await gateway_a.permissions.readable(bob, file_id)

    seen_by_a.down = False
    # A's own lookup of an owed key delivers it first...
    with pytest.raises(TokenRevoked):
        await gateway_a.sessions.authenticate(token)
    with pytest.raises(TokenRevoked):
        await gateway_b.sessions.authenticate(token)
    # ...and the background round delivers the rest.
    assert await gateway_a.deliver_owed_invalidations() == 0
    with pytest.raises(FileNotFound):
        await gateway_b.permissions.readable(bob, file_id)
    await shared.close()
