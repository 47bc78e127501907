"""Queries on throttle counters: attempts per key within a window (gateway/core/throttle.py)."""
from __future__ import annotations

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.db.engine import Database, Row, change, fetch_one
from gateway.db.tables import throttle_counters

counters = throttle_counters


async def count_attempt(db: Database, key: str, now: str, window_started_after: str) -> Row:
    """Count one attempt on ``key`` in one statement; the counter afterwards (attempts, window_start).

    A window that started at or before ``window_started_after`` is over: the
    attempt opens a new one at ``now``. One atomic upsert, so concurrent
    attempts (in any gateway) each count: none reads a stale number.
    """
    dialect_insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    statement = dialect_insert(counters).values(key=key, attempts=1, window_start=now)
    over = counters.c.window_start <= window_started_after
    statement = statement.on_conflict_do_update(
        index_elements=[counters.c.key],
        set_={
            "attempts": case((over, 1), else_=counters.c.attempts + 1),
            "window_start": case((over, now), else_=counters.c.window_start),
        },
    ).returning(counters.c.attempts, counters.c.window_start)
    async with db.transaction() as conn:
        return await fetch_one(conn, statement)


async def uncount_attempt(db: Database, key: str, window_started_after: str) -> int:
    """Take back one attempt of the current window (one that turned out to be allowed)."""
    return await change(
        db,
        update(counters)
        .where(counters.c.key == key, counters.c.attempts > 0, counters.c.window_start > window_started_after)
        .values(attempts=counters.c.attempts - 1),
    )


async def forget_windows(db: Database, started_before: str) -> int:
    """Delete counters whose window is over: they count nothing any more."""
    return await change(db, delete(counters).where(counters.c.window_start <= started_before))
