"""gateway/core/throttle.py on a real database of each engine (SQLite file, PostgreSQL), with a clock the test moves."""
from __future__ import annotations

import asyncio

import pytest

from gateway.core.throttle import Limit, Throttle, forget_expired
from gateway.db import Database
from gateway.db import database_url as sqlalchemy_url

pytestmark = pytest.mark.every_engine  # counters under concurrency, on both engines

LIMIT = Limit(failures=3, window=60)


@pytest.fixture
def db(core_database: Database) -> Database:
    return core_database


async def rows(db: Database) -> dict[str, dict]:
    return {row["key"]: row for row in await db.fetchall("SELECT * FROM throttle")}


async def test_the_failure_past_the_limit_blocks_the_key_until_the_block_ends(db, clock):
    throttle = Throttle(db, clock, "login", LIMIT)
    for _ in range(LIMIT.failures):
        assert await throttle.check("alice") is None
        assert await throttle.record_failure("alice") is None
        clock.advance(1)
    assert await throttle.check("alice") is None
    assert await throttle.record_failure("alice") == 60  # the 4th failure blocks, for the window's length
    clock.advance(20)
    assert await throttle.check("alice") == 40
    assert await throttle.check("bob") is None, "keys are counted apart"
    clock.advance(39.5)
    assert await throttle.check("alice") == 1, "Retry-After rounds up"
    clock.advance(0.5)
    assert await throttle.check("alice") is None
    # A new window: the old failures count no more.
    assert await throttle.record_failure("alice") is None
    assert (await rows(db))["login:alice"]["failures"] == 1


async def test_failures_spread_wider_than_the_window_never_block(db, clock):
    throttle = Throttle(db, clock, "login", LIMIT)
    for _ in range(10):
        assert await throttle.record_failure("alice") is None
        clock.advance(LIMIT.window / 2)
        assert await throttle.record_failure("alice") is None
        clock.advance(LIMIT.window / 2 + 1)
    assert await throttle.check("alice") is None


async def test_a_block_of_its_own_length(db, clock):
    throttle = Throttle(db, clock, "login", Limit(failures=1, window=60, block=600))
    await throttle.record_failure("alice")
    assert await throttle.record_failure("alice") == 600
    clock.advance(300)  # the window is over, the block is not
    assert await throttle.check("alice") == 300
    assert await throttle.record_failure("alice") == 300, "a failure in a new window keeps the running block"


async def test_reset_forgets_the_failures_and_the_block(db, clock):
    throttle = Throttle(db, clock, "login", LIMIT)
    for _ in range(LIMIT.failures + 1):
        await throttle.record_failure("alice")
    assert await throttle.check("alice")
    await throttle.reset("alice")
    assert await throttle.check("alice") is None
    assert await throttle.record_failure("alice") is None
    assert (await rows(db))["login:alice"]["failures"] == 1


async def test_throttles_of_different_names_count_apart(db, clock):
    logins = Throttle(db, clock, "login", LIMIT)
    links = Throttle(db, clock, "link", Limit(failures=100, window=60))
    for _ in range(LIMIT.failures + 1):
        await logins.record_failure("same-key")
    assert await logins.check("same-key") and await links.check("same-key") is None
    assert set(await rows(db)) == {"login:same-key"}


async def test_concurrent_failures_each_count_once(db, clock):
    throttle = Throttle(db, clock, "login", Limit(failures=10, window=60))
    answers = await asyncio.gather(*(throttle.record_failure("alice") for _ in range(25)))
    assert (await rows(db))["login:alice"]["failures"] == 25
    assert answers.count(None) == 10, "exactly the first ten failures are let through"


async def test_the_counts_hold_across_database_connections_of_other_processes(db, clock, database_url, database_path):
    """A second engine on the same database, as another gateway process has: it sees the same counters."""
    other = await Database.open(sqlalchemy_url(database_url, str(database_path)))
    try:
        here, there = Throttle(db, clock, "login", LIMIT), Throttle(other, clock, "login", LIMIT)
        for throttle in (here, there, here):
            assert await throttle.record_failure("alice") is None
        assert await there.record_failure("alice") == 60
        assert await here.check("alice") == 60
        await here.reset("alice")
        assert await there.check("alice") is None
    finally:
        await other.close()


async def test_forget_expired_drops_only_counters_that_count_nothing(db, clock):
    throttle = Throttle(db, clock, "login", Limit(failures=1, window=60, block=600))
    await throttle.record_failure("blocked")
    await throttle.record_failure("blocked")
    await throttle.record_failure("quiet")
    clock.advance(61)
    await throttle.record_failure("recent")
    assert await forget_expired(db, clock) == 1
    assert set(await rows(db)) == {"login:blocked", "login:recent"}
    clock.advance(600)
    assert await forget_expired(db, clock) == 2
    assert await rows(db) == {}


async def test_forgiving_takes_back_one_failure_of_the_window_and_never_a_block(db, clock):
    """For a key many people share (a link's password): an attempt counted first, then proved right."""
    throttle = Throttle(db, clock, "link", LIMIT)
    await throttle.record_failure("l1")
    await throttle.record_failure("l1")  # a guess, and an attempt that will prove right
    await throttle.forgive("l1")
    assert (await rows(db))["link:l1"]["failures"] == 1, "only one is taken back; the guess stays"
    await throttle.forgive("l1")
    await throttle.forgive("l1")
    assert (await rows(db))["link:l1"]["failures"] == 0, "never below zero"
    for _ in range(LIMIT.failures + 1):
        await throttle.record_failure("l1")
    await throttle.forgive("l1")
    assert await throttle.check("l1") == 60, "a block stays"
    assert (await rows(db))["link:l1"]["failures"] == LIMIT.failures
    clock.advance(61)
    await throttle.forgive("l1")  # the window is over: nothing to take back
    assert (await rows(db))["link:l1"]["failures"] == LIMIT.failures
