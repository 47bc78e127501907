"""Queries on the thumbnails queue (revision 0012): want, claim, finish, forget, and which are made.

Claiming is one UPDATE of the rows a subquery picks, returning them: on PostgreSQL the subquery
locks what it picks ``FOR UPDATE SKIP LOCKED``, so workers of several gateways claiming at once
each get other rows, never the same one, and none waits for another; SQLite has one writer at a
time (``BEGIN IMMEDIATE``), so the same statement is already alone there (SQLAlchemy writes no
FOR UPDATE for it).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict, cast

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.engine import Database, change, fetch, fetch_one, insert_or
from gateway.db.tables import thumbnails

On = Database | AsyncConnection
QUEUED, MADE, NONE = "queued", "made", "none"


class Job(TypedDict):
    """A claimed row: the content, its size, the claim's token and how many times it was claimed."""

    fingerprint: str
    source_size: int
    lease_token: str
    attempts: int


async def want(conn: AsyncConnection, fingerprint: str, source_size: int, now: str) -> None:
    """Queue the content for a thumbnail unless it has a row already (queued, made or none): once per content."""
    statement = insert_or(conn.dialect.name, thumbnails).values(
        fingerprint=fingerprint, source_size=source_size, state=QUEUED, queued_at=now,
    ).on_conflict_do_nothing(index_elements=[thumbnails.c.fingerprint])
    await conn.execute(statement)


DUE = (
    select(thumbnails.c.fingerprint)
    .where(thumbnails.c.state == QUEUED,
           or_(thumbnails.c.lease_expires_at.is_(None), thumbnails.c.lease_expires_at < bindparam("now")))
    .order_by(thumbnails.c.queued_at)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True)
)
CLAIM = (
    update(thumbnails)
    .where(thumbnails.c.fingerprint.in_(DUE.scalar_subquery()))
    .values(lease_token=bindparam("token"), lease_expires_at=bindparam("until"), attempts=thumbnails.c.attempts + 1)
    .returning(thumbnails.c.fingerprint, thumbnails.c.source_size, thumbnails.c.lease_token, thumbnails.c.attempts)
)


async def claim(db: Database, token: str, now: str, until: str, batch: int) -> list[Job]:
    """Claim up to ``batch`` queued rows nobody holds (oldest first) under ``token`` until ``until``."""
    async with db.transaction() as conn:
        result = await conn.execute(CLAIM, {"token": token, "now": now, "until": until, "batch": batch})
        return [cast(Job, dict(row._mapping)) for row in result]


def _held(job: Job):
    return and_(thumbnails.c.fingerprint == job["fingerprint"], thumbnails.c.lease_token == job["lease_token"])


async def finish(conn: AsyncConnection, job: Job, state: str, now: str, reason: str | None = None) -> bool:
    """The claim's end: ``made`` or ``none``. False when the claim was lost (expired and taken, or the row forgotten)."""
    statement = update(thumbnails).where(_held(job)).values(
        state=state, done_at=now, reason=reason, lease_token=None, lease_expires_at=None,
    )
    return await change(conn, statement) == 1


async def retry_later(db: Database, job: Job, not_before: str) -> bool:
    """Give the claim back, the row to be claimed again from ``not_before`` (a store failure)."""
    statement = update(thumbnails).where(_held(job)).values(lease_token=None, lease_expires_at=not_before)
    return await change(db, statement) == 1


async def state_of(on: On, fingerprint: str) -> str | None:
    row = await fetch_one(on, select(thumbnails.c.state).where(thumbnails.c.fingerprint == fingerprint))
    return None if row is None else str(row["state"])


async def forget(conn: AsyncConnection, fingerprint: str) -> None:
    """The content is gone from the store: its thumbnail row goes with it (a new upload queues it again)."""
    await conn.execute(delete(thumbnails).where(thumbnails.c.fingerprint == fingerprint))


async def made_among(on: On, fingerprints: Iterable[str]) -> set[str]:
    """Which of these contents have a thumbnail."""
    wanted = sorted(set(fingerprints))
    if not wanted:
        return set()
    query = select(thumbnails.c.fingerprint).where(thumbnails.c.fingerprint.in_(wanted), thumbnails.c.state == MADE)
    return {row["fingerprint"] for row in await fetch(on, query)}
