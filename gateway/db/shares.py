"""Queries on shares: who a file is shared with."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.plain import Plain
from gateway.db.engine import Database, change, fetch, insert_or
from gateway.db.tables import shares, users

On = Database | AsyncConnection


async def add_shares(conn: AsyncConnection, file_id: str, user_ids: Sequence[int], now: str) -> None:
    """Share with these users; users it is already shared with keep their share (and its time)."""
    statement = insert_or(conn.dialect.name, shares).on_conflict_do_nothing(index_elements=[shares.c.file_id, shares.c.user_id])
    await conn.execute(statement, [{"file_id": file_id, "user_id": user_id, "created_at": now} for user_id in user_ids])


async def remove_share(conn: AsyncConnection, file_id: str, user_id: int) -> int:
    return await change(conn, delete(shares).where(shares.c.file_id == file_id, shares.c.user_id == user_id))


async def shared_with(on: On, file_id: str) -> list[str]:
    """The names of the users the file is shared with, in alphabetical order (case aside)."""
    query = (
        select(users.c.username)
        .select_from(shares.join(users, users.c.id == shares.c.user_id))
        .where(shares.c.file_id == file_id)
        .order_by(func.lower(users.c.username))
    )
    return [row["username"] for row in await fetch(on, query)]


READERS = Plain(select(shares.c.user_id).where(shares.c.file_id == bindparam("file_id")).order_by(shares.c.user_id))


async def readers(on: On, file_id: str) -> list[int]:
    """The ids of the users the file is shared with (a statement built once: every uncached read runs it)."""
    return [row["user_id"] for row in await fetch(on, READERS, {"file_id": file_id})]
