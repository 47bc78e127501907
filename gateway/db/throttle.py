"""Queries on the throttle's failure counters (gateway/core/throttle.py): one atomic statement each.

Counting is one ``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING``, the
same SQL on SQLite and PostgreSQL: concurrent failures on one key, from any
number of gateway processes, each add exactly one, and each learns the count
its own failure made.
"""
from __future__ import annotations

from sqlalchemy import case, delete, or_, select, update

from gateway.db.engine import Database, Row, change, fetch_one, insert_or
from gateway.db.tables import throttle


async def blocked_until(db: Database, key: str, now: str) -> str | None:
    """Until when ``key`` is blocked, if it is blocked at ``now``."""
    query = select(throttle.c.blocked_until).where(throttle.c.key == key, throttle.c.blocked_until > now)
    row = await fetch_one(db, query)
    return row["blocked_until"] if row else None


async def count_failure(db: Database, key: str, *, now: str, window_ends_at: str, limit: int,
                        block_ends_at: str) -> Row:
    """Count one failure against ``key``; the row after it: ``failures``, ``blocked_until``.

    A window that has ended starts again at this failure (``window_ends_at``
    is the end of a window starting now). The failure that makes the count
    pass ``limit`` blocks the key until ``block_ends_at``; a block still
    running is kept.
    """
    window_over = throttle.c.window_ends_at <= now
    failures = case((window_over, 1), else_=throttle.c.failures + 1)
    first = {"key": key, "failures": 1, "window_ends_at": window_ends_at,
             "blocked_until": block_ends_at if 1 > limit else None}
    statement = insert_or(db.dialect, throttle).values(**first).on_conflict_do_update(
        index_elements=[throttle.c.key],
        set_={
            "failures": failures,
            "window_ends_at": case((window_over, window_ends_at), else_=throttle.c.window_ends_at),
            "blocked_until": case(
                (failures > limit, block_ends_at),
                (throttle.c.blocked_until > now, throttle.c.blocked_until),
                else_=None,
            ),
        },
    ).returning(throttle.c.failures, throttle.c.blocked_until)
    async with db.transaction() as conn:
        return dict((await conn.execute(statement)).mappings().one())


async def uncount_failure(db: Database, key: str, *, now: str) -> int:
    """One failure fewer for ``key`` in its current window (never below zero); a block stays."""
    return await change(
        db,
        update(throttle)
        .where(throttle.c.key == key, throttle.c.failures > 0, throttle.c.window_ends_at > now)
        .values(failures=throttle.c.failures - 1),
    )


async def forget(db: Database, key: str) -> int:
    return await change(db, delete(throttle).where(throttle.c.key == key))


async def forget_expired(db: Database, now: str) -> int:
    """Drop the counters whose window and block have both ended: they count nothing any more."""
    ended = throttle.c.window_ends_at <= now
    not_blocked = or_(throttle.c.blocked_until.is_(None), throttle.c.blocked_until <= now)
    return await change(db, delete(throttle).where(ended, not_blocked))
