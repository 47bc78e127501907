"""PostgreSQL stops, and the gateway rides it out: 503s meanwhile (never a 500), back at once after.

The gateway runs in this process (tests/app_fixtures.py) on a PostgreSQL of
this module's own: it is stopped and started here, which the session's shared
one must not be. The stack's supervisor brings it back (deploy/stack.py's
component for it, the very one `./dev up --cluster` uses).
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from deploy.postgres import UNSAFE_FAST, PostgresCluster
from deploy.stack import postgres_component
from deploy.supervisor import Supervisor
from gateway.db import DatabaseUnavailable
from tests.app_fixtures import make_app  # noqa: F401 - the gateway in-process, on the in-memory store
from tests.harness import Api, upload

FILES = "/dropbox/v1/files"


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL for this module alone, under /tmp where its user can reach it."""
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="test-outage-postgres-")), settings=UNSAFE_FAST).start()
    yield cluster
    cluster.destroy()


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
