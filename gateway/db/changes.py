"""Queries on the change journal (``changes``) and the listings of whole trees (``change_listings``).

One user's rows are numbered in the order their changes committed: every change to a tree holds the
lock on the owner's row while it writes its rows (gateway/core/namespace.py), so a later change of the
same user takes a later ``seq``. Readers therefore page one user's rows by ``seq`` alone.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import cast

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.engine import Database, Row, change, fetch, fetch_value
from gateway.db.nodes import LIVE, NODE_COLUMNS, NODE_SELECT, ROOT, NodeRow
from gateway.db.tables import change_listings, changes, nodes, users

On = Database | AsyncConnection


CHANNEL = "dbx_changes"  # PostgreSQL's NOTIFY channel: the payload is the owner's id


async def notify(conn: AsyncConnection, owner_id: int, seq: int) -> None:
    """On PostgreSQL, a NOTIFY (``owner:seq``) delivered to every listening gateway if and when ``conn`` commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                           {"channel": CHANNEL, "payload": f"{owner_id}:{seq}"})


async def record(conn: AsyncConnection, row: Row) -> int:
    """A journal row, on the change's own connection (it commits or rolls back with it); its seq."""
    return int((await conn.execute(insert(changes).values(**row).returning(changes.c.seq))).scalar_one())


async def record_many(conn: AsyncConnection, rows: Sequence[Row]) -> int:
    """Journal rows in one statement, in the order given (record, for a batch); the last one's seq."""
    result = await conn.execute(insert(changes).returning(changes.c.seq, sort_by_parameter_order=True), list(rows))
    return max(int(row[0]) for row in result)


async def since(on: On, owner_id: int, after: int, limit: int) -> list[Row]:
    """Up to ``limit`` of the owner's rows after ``after``, in the order they happened."""
    query = (select(changes.c.seq, changes.c.kind, changes.c.node_id, changes.c.node_kind, changes.c.path)
             .where(changes.c.owner_id == owner_id, changes.c.seq > after).order_by(changes.c.seq).limit(limit))
    return await fetch(on, query)


async def any_since(on: On, owner_id: int, after: int) -> bool:
    query = select(changes.c.seq).where(changes.c.owner_id == owner_id, changes.c.seq > after).limit(1)
    return await fetch_value(on, query) is not None


async def last_seq(on: On) -> int:
    """The highest seq handed out and committed (0: none yet)."""
    return int(await fetch_value(on, select(func.coalesce(func.max(changes.c.seq), 0))) or 0)


async def pruned_through(on: On, owner_id: int) -> int | None:
    """The highest seq of the owner's pruned rows; None: no such user."""
    return await fetch_value(on, select(users.c.changes_pruned_through).where(users.c.id == owner_id))


async def owners_since(on: On, after: int) -> dict[int, int]:
    """The owners with rows after ``after``, each with their last seq: what a poller of the journal's tail wakes."""
    rows = await fetch(on, select(changes.c.owner_id, func.max(changes.c.seq).label("last"))
                       .where(changes.c.seq > after).group_by(changes.c.owner_id))
    return {row["owner_id"]: row["last"] for row in rows}


async def prune(conn: AsyncConnection, before: str, limit: int) -> int:
    """Delete up to ``limit`` rows recorded before ``before`` (oldest first), noting for each owner the
    highest seq pruned; how many were deleted."""
    old = await fetch(conn, select(changes.c.seq, changes.c.owner_id).where(changes.c.recorded_at < before)
                      .order_by(changes.c.seq).limit(limit))
    if not old:
        return 0
    highest: dict[int, int] = {}
    for row in old:
        highest[row["owner_id"]] = max(highest.get(row["owner_id"], 0), row["seq"])
    for owner_id, seq in highest.items():
        await change(conn, update(users).where(users.c.id == owner_id, users.c.changes_pruned_through < seq)
                     .values(changes_pruned_through=seq))
    return await change(conn, delete(changes).where(changes.c.seq.in_([row["seq"] for row in old])))


# --- listings of a whole tree ---------------------------------------------------------------------

async def live_tree(on: On, owner_id: int) -> list[NodeRow]:
    """Every live folder and file of the owner's tree, parents first: by depth, then name."""
    return await _live_below(on, nodes.c.parent_id == ROOT, owner_id)


async def live_subtree(on: On, owner_id: int, node_id: str) -> list[NodeRow]:
    """The live node and everything live below it, parents first."""
    return await _live_below(on, nodes.c.id == node_id, owner_id)


async def _live_below(on: On, first, owner_id: int) -> list[NodeRow]:
    start = (select(nodes.c.id, nodes.c.name_key, literal(1).label("depth"))
             .where(nodes.c.owner_id == owner_id, first, LIVE).cte("down", recursive=True))
    step = (select(nodes.c.id, nodes.c.name_key, (start.c.depth + 1).label("depth"))
            .select_from(start.join(nodes, nodes.c.parent_id == start.c.id)).where(LIVE))
    down = start.union_all(step)
    query = (select(*NODE_COLUMNS).select_from(nodes.join(down, down.c.id == nodes.c.id))
             .order_by(down.c.depth, down.c.name_key, down.c.id))
    return cast(list[NodeRow], await fetch(on, query))


async def nodes_by_ids(on: On, owner_id: int, node_ids: Sequence[str]) -> dict[str, NodeRow]:
    """The owner's live nodes among these ids, by id."""
    if not node_ids:
        return {}
    rows = await fetch(on, NODE_SELECT.where(nodes.c.owner_id == owner_id, nodes.c.id.in_(list(node_ids)), LIVE))
    return {row["id"]: cast(NodeRow, row) for row in rows}


async def keep_listing(conn: AsyncConnection, token: str, owner_id: int, entries: Sequence[str], now: str,
                       start: int = 0) -> None:
    """Rows of a listing: ``entries`` (JSON) from position ``start``."""
    if entries:
        await conn.execute(insert(change_listings), [
            {"token": token, "pos": start + index, "owner_id": owner_id, "entry": entry, "created_at": now}
            for index, entry in enumerate(entries)])


async def listing_page(on: On, token: str, owner_id: int, after: int, limit: int) -> list[Row]:
    """Up to ``limit`` rows of the owner's listing after position ``after``."""
    query = (select(change_listings.c.pos, change_listings.c.entry)
             .where(change_listings.c.token == token, change_listings.c.owner_id == owner_id,
                    change_listings.c.pos > after)
             .order_by(change_listings.c.pos).limit(limit))
    return await fetch(on, query)


async def drop_listing(on: On, token: str) -> None:
    await change(on, delete(change_listings).where(change_listings.c.token == token))


async def drop_listings_before(on: On, before: str) -> int:
    return await change(on, delete(change_listings).where(change_listings.c.created_at < before))


@contextlib.asynccontextmanager
async def listening(db: Database, on_owner: Callable[[int, int], None], on_lost: Callable[[], None]) -> AsyncIterator[None]:
    """PostgreSQL: LISTEN on :data:`CHANNEL` on one connection of the pool, kept for the block's life;
    ``on_owner`` is called with each NOTIFY's owner id and seq, ``on_lost`` when the connection ends (the
    caller then opens another: notifications sent meanwhile are lost, so it wakes everyone)."""
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None

        def received(_connection, _pid, _channel, payload: str) -> None:
            owner, _, seq = payload.partition(":")
            if owner.isdigit() and seq.isdigit():
                on_owner(int(owner), int(seq))

        raw.add_termination_listener(lambda _connection: on_lost())
        await raw.add_listener(CHANNEL, received)
        try:
            yield
        finally:
            if not raw.is_closed():
                await raw.remove_listener(CHANNEL, received)
