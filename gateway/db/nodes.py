"""Queries on the tree (the ``nodes`` table): folders and placed files, versions, the trash.

``root`` names every user's root folder, which has no row: a node at the top
has ``parent_id = 'root'``. Live rows (neither replaced nor deleted) are what
folders hold; their ``name_key`` is unique per folder (the nodes_live_names
partial unique index), which is what makes two concurrent creations of one
name fail one of them, whichever gateways they reach.

Paths are not stored (a move would have to rewrite every path below): they are
read by walking up the parents, with a recursive query on both engines.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, cast

from sqlalchemy import Select, and_, bindparam, delete, exists, insert, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.plain import Plain
from gateway.db.engine import Database, Row, change, fetch, fetch_one, fetch_value
from gateway.db.tables import files, links, nodes, shares

On = Database | AsyncConnection
ROOT = "root"
FOLDER, FILE = "folder", "file"
LIVE = and_(nodes.c.deleted_at.is_(None), nodes.c.replaced_by.is_(None))
NODE_COLUMNS = (
    nodes.c.id, nodes.c.owner_id, nodes.c.kind, nodes.c.parent_id, nodes.c.name, nodes.c.name_key,
    nodes.c.created_at, nodes.c.modified_at, nodes.c.replaced_by, nodes.c.replaced_at, nodes.c.deleted_at,
    nodes.c.deleted_path, nodes.c.trashed_with,
)
NODE_SELECT = select(*NODE_COLUMNS)


class NameInUse(Exception):
    """The live name was taken (the unique index said so): another change got there first."""


class NodeRow(TypedDict):
    id: str
    owner_id: int
    kind: str
    parent_id: str
    name: str
    name_key: str
    created_at: str
    modified_at: str
    replaced_by: str | None
    replaced_at: str | None
    deleted_at: str | None
    deleted_path: str | None
    trashed_with: str | None


# --- reading --------------------------------------------------------------------------------------

# Built once with parameters: every upload and path lookup runs them.
NODE_BY_ID = NODE_SELECT.where(nodes.c.id == bindparam("node_id"), nodes.c.owner_id == bindparam("owner_id"))
LIVE_CHILD = Plain(NODE_SELECT.where(nodes.c.owner_id == bindparam("owner_id"), nodes.c.parent_id == bindparam("parent_id"),
                                     nodes.c.name_key == bindparam("name_key"), LIVE))


async def get_node(on: On, owner_id: int, node_id: str) -> NodeRow | None:
    """The owner's node with this id, in whatever state; None for anyone else's (or none)."""
    return cast(NodeRow | None, await fetch_one(on, NODE_BY_ID, {"node_id": node_id, "owner_id": owner_id}))


async def live_child(on: On, owner_id: int, parent_id: str, key: str) -> NodeRow | None:
    """What holds the name (by name_key) in the folder now, if anything."""
    params = {"owner_id": owner_id, "parent_id": parent_id, "name_key": key}
    return cast(NodeRow | None, await fetch_one(on, LIVE_CHILD, params))


# Built once (an expanding IN): a statement built per call costs more CPU than SQLite takes to run it.
TAKEN_KEYS = select(nodes.c.name_key).where(
    nodes.c.owner_id == bindparam("owner_id"), nodes.c.parent_id == bindparam("parent_id"),
    nodes.c.name_key.in_(bindparam("keys", expanding=True)), LIVE)


async def taken_keys(on: On, owner_id: int, parent_id: str, keys: Sequence[str]) -> set[str]:
    """Which of these name keys live entries of the folder hold."""
    params = {"owner_id": owner_id, "parent_id": parent_id, "keys": list(keys)}
    return {row["name_key"] for row in await fetch(on, TAKEN_KEYS, params)}


# The live files holding these names in a folder, with their contents (a batch of small files' lookups).
FILES_NAMED = select(nodes.c.id, nodes.c.name_key, files.c.fingerprint) \
    .select_from(nodes.join(files, files.c.id == nodes.c.id)) \
    .where(nodes.c.owner_id == bindparam("owner_id"), nodes.c.parent_id == bindparam("parent_id"),
           nodes.c.name_key.in_(bindparam("keys", expanding=True)), nodes.c.kind == FILE, LIVE)


async def files_named(on: On, owner_id: int, parent_id: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    """name_key -> (file id, fingerprint) of the live files of the folder that hold these names."""
    params = {"owner_id": owner_id, "parent_id": parent_id, "keys": sorted(set(keys))}
    return {row["name_key"]: (row["id"], row["fingerprint"]) for row in await fetch(on, FILES_NAMED, params)}


def _ancestry_query() -> Select:
    """The names from the root down to each of the nodes ``ids`` (an expanding IN): a recursive query up."""
    start = select(nodes.c.id.label("origin"), nodes.c.parent_id, nodes.c.name, literal(0).label("depth")) \
        .where(nodes.c.id.in_(bindparam("ids", expanding=True))).cte("up", recursive=True)
    step = select(start.c.origin, nodes.c.parent_id, nodes.c.name, (start.c.depth + 1).label("depth")) \
        .select_from(start.join(nodes, nodes.c.id == start.c.parent_id))
    up = start.union_all(step)
    return select(up.c.origin, up.c.name, up.c.depth).order_by(up.c.origin, up.c.depth.desc())


# Built once: every upload's answer (its path) and every listing with paths run it, and building the
# recursive query took 6% of the gateway's Python time in bench folders, more than running it.
ANCESTRY = _ancestry_query()


async def ancestry(on: On, node_ids: Sequence[str]) -> dict[str, list[str]]:
    """For each node, the names from the root down to it (its path's segments), in one recursive query.

    A node whose chain does not reach the root (a parent purged) gets the names it has.
    """
    if not node_ids:
        return {}
    rows = await fetch(on, ANCESTRY, {"ids": list(node_ids)})
    names: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for row in rows:
        names[row["origin"]].append(row["name"])
    return names


async def is_below(on: On, node_id: str, folder_id: str) -> bool:
    """Whether ``node_id`` is ``folder_id`` or inside it (walking up from ``node_id``)."""
    start = select(nodes.c.id, nodes.c.parent_id).where(nodes.c.id == node_id).cte("up", recursive=True)
    up = start.union_all(select(nodes.c.id, nodes.c.parent_id).select_from(start.join(nodes, nodes.c.id == start.c.parent_id)))
    return bool(await fetch_value(on, select(exists().where(up.c.id == folder_id))))


def _subtree(node_id: str):
    """The node and everything below it, live or trashed with it (a recursive CTE of ids)."""
    start = select(nodes.c.id).where(nodes.c.id == node_id).cte("down", recursive=True)
    return start.union_all(select(nodes.c.id).select_from(start.join(nodes, nodes.c.parent_id == start.c.id)))


async def subtree_files(on: On, node_id: str) -> list[str]:
    """The ids of the files in the subtree (versions included)."""
    down = _subtree(node_id)
    query = select(nodes.c.id).where(nodes.c.id.in_(select(down.c.id)), nodes.c.kind == FILE)
    return [row["id"] for row in await fetch(on, query)]


async def live_below(on: On, owner_id: int, folder_id: str) -> list[Row]:
    """Every live folder and file below the owner's folder (``root`` too), at any depth, each with its
    ``parent_id``, ``name`` and ``modified_at``, and a file with its ``file_size``, ``fingerprint`` and
    ``status``: what a zip of the folder holds. One recursive query that walks down through live nodes
    only, so what a trashed folder holds is never reached."""
    columns = (nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.modified_at)
    start = select(*columns).where(nodes.c.owner_id == owner_id, nodes.c.parent_id == folder_id, LIVE) \
        .cte("down", recursive=True)
    down = start.union_all(select(*columns).select_from(start.join(nodes, nodes.c.parent_id == start.c.id)).where(LIVE))
    query = select(down.c.id, down.c.parent_id, down.c.kind, down.c.name, down.c.modified_at,
                   files.c.file_size, files.c.fingerprint, files.c.status) \
        .select_from(down.outerjoin(files, files.c.id == down.c.id))
    return await fetch(on, query)


def entries_query(owner_id: int, parent_id: str, kind: str, after: tuple[str, str] | None, limit: int) -> Select:
    """Up to ``limit`` live entries of one kind in a folder, by (name_key, id), after ``after``: a keyset
    on the nodes_entries index, so the last page of 100,000 entries costs what the first does."""
    query = NODE_SELECT.where(nodes.c.owner_id == owner_id, nodes.c.parent_id == parent_id, nodes.c.kind == kind, LIVE)
    if after is not None:
        query = query.where(tuple_(nodes.c.name_key, nodes.c.id) > tuple_(*after))
    return query.order_by(nodes.c.name_key, nodes.c.id).limit(limit)


async def entries_page(on: On, owner_id: int, parent_id: str, kind: str, after: tuple[str, str] | None,
                       limit: int) -> list[NodeRow]:
    return cast(list[NodeRow], await fetch(on, entries_query(owner_id, parent_id, kind, after, limit)))


def search_query(owner_id: int, fragment: str, limit: int) -> Select:
    """The owner's live entries whose name_key holds ``fragment``, by name. On PostgreSQL the LIKE is
    served by the nodes_name_trigrams index (revision 0014: pg_trgm) for fragments of 3 characters or
    more; on SQLite it reads the owner's names."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (
        NODE_SELECT
        .where(nodes.c.owner_id == owner_id, LIVE, nodes.c.name_key.like(f"%{escaped}%", escape="\\"))
        .order_by(nodes.c.name_key, nodes.c.id)
        .limit(limit)
    )


async def search(on: On, owner_id: int, fragment: str, limit: int) -> list[NodeRow]:
    """The owner's live folders and files whose name_key holds ``fragment`` (a name_key too), by name."""
    return cast(list[NodeRow], await fetch(on, search_query(owner_id, fragment, limit)))


async def trash_page(on: On, owner_id: int, before: tuple[str, str] | None, limit: int) -> list[NodeRow]:
    """Up to ``limit`` trash entries (what was deleted, a folder as one), newest first, below ``before``."""
    query = NODE_SELECT.where(nodes.c.owner_id == owner_id, nodes.c.trashed_with == nodes.c.id)
    if before is not None:
        query = query.where(tuple_(nodes.c.deleted_at, nodes.c.id) < tuple_(*before))
    query = query.order_by(nodes.c.deleted_at.desc(), nodes.c.id.desc()).limit(limit)
    return cast(list[NodeRow], await fetch(on, query))


async def versions_of(on: On, file_id: str) -> list[NodeRow]:
    """The files this one replaced, and those they replaced, ..., newest first: the nearer in the chain
    first (a chain is in the order of replacement, whatever the clock said)."""
    start = select(nodes.c.id, literal(1).label("depth")).where(nodes.c.replaced_by == file_id).cte("older", recursive=True)
    older = start.union_all(select(nodes.c.id, (start.c.depth + 1).label("depth"))
                            .select_from(start.join(nodes, nodes.c.replaced_by == start.c.id)))
    query = (select(*NODE_COLUMNS).select_from(nodes.join(older, older.c.id == nodes.c.id))
             .order_by(older.c.depth, nodes.c.replaced_at.desc(), nodes.c.id.desc()))
    return cast(list[NodeRow], await fetch(on, query))


async def current_of(on: On, file_id: str) -> str:
    """The file at the head of the chain of versions ``file_id`` is in (itself when it is current)."""
    start = select(nodes.c.id, nodes.c.replaced_by).where(nodes.c.id == file_id).cte("newer", recursive=True)
    newer = start.union_all(
        select(nodes.c.id, nodes.c.replaced_by).select_from(start.join(nodes, nodes.c.id == start.c.replaced_by))
    )
    head = await fetch_value(on, select(newer.c.id).where(newer.c.replaced_by.is_(None)))
    return head or file_id


async def expired(on: On, trashed_before: str, replaced_before: str, limit: int) -> list[NodeRow]:
    """Up to ``limit`` trash entries deleted before ``trashed_before`` and versions replaced before
    ``replaced_before``: what the retention settings say to delete for good."""
    query = NODE_SELECT.where(or_(
        and_(nodes.c.trashed_with == nodes.c.id, nodes.c.deleted_at < trashed_before),
        and_(nodes.c.replaced_by.is_not(None), nodes.c.replaced_at < replaced_before, nodes.c.deleted_at.is_(None)),
    )).limit(limit)
    return cast(list[NodeRow], await fetch(on, query))


# --- writing --------------------------------------------------------------------------------------

async def insert_node(conn: AsyncConnection, node: Row) -> None:
    """A new live node; NameInUse when its name is taken in the folder (the unique index).

    No savepoint around it: every caller ends its transaction on NameInUse (a 409), so nothing runs on
    in a transaction PostgreSQL has marked failed, and a savepoint would cost two statements per node."""
    try:
        await conn.execute(insert(nodes), [node])
    except IntegrityError as exc:
        raise NameInUse(node["name"]) from exc


async def insert_nodes(conn: AsyncConnection, new: Sequence[Row]) -> None:
    """Several new live nodes in one statement, as insert_node inserts one (NameInUse: its transaction ends)."""
    try:
        await conn.execute(insert(nodes), list(new))
    except IntegrityError as exc:
        raise NameInUse(", ".join(node["name"] for node in new)) from exc


async def place(conn: AsyncConnection, node_id: str, parent_id: str, name: str, key: str, now: str) -> None:
    """Rename and/or move a node; NameInUse when the name is taken in the folder."""
    statement = update(nodes).where(nodes.c.id == node_id).values(
        parent_id=parent_id, name=name, name_key=key, modified_at=now)
    try:
        await conn.execute(statement)  # no savepoint: as insert_node
    except IntegrityError as exc:
        raise NameInUse(name) from exc


async def mark_replaced(conn: AsyncConnection, old_id: str, new_id: str, now: str) -> None:
    """``old_id`` becomes a version of ``new_id`` (and leaves its name to it)."""
    await change(conn, update(nodes).where(nodes.c.id == old_id).values(replaced_by=new_id, replaced_at=now))


async def trash(conn: AsyncConnection, node_id: str, path: str, now: str) -> None:
    """The node, and everything live below it, go to the trash as one entry: ``node_id``'s."""
    down = _subtree(node_id)
    await change(conn, update(nodes).where(nodes.c.id.in_(select(down.c.id)), nodes.c.deleted_at.is_(None))
                 .values(deleted_at=now, trashed_with=node_id))
    await change(conn, update(nodes).where(nodes.c.id == node_id).values(deleted_path=path))


async def untrash(conn: AsyncConnection, entry_id: str, parent_id: str, name: str, key: str, now: str) -> None:
    """A trash entry back in the tree, at ``parent_id``/``name``, with everything that went with it;
    NameInUse when the name is taken meanwhile."""
    try:
        async with conn.begin_nested():
            await conn.execute(update(nodes).where(nodes.c.id == entry_id).values(
                parent_id=parent_id, name=name, name_key=key, modified_at=now, deleted_path=None))
            await conn.execute(update(nodes).where(nodes.c.trashed_with == entry_id)
                               .values(deleted_at=None, trashed_with=None))
    except IntegrityError as exc:
        raise NameInUse(name) from exc


async def trashed_with(on: On, entry_id: str) -> list[str]:
    """The ids of the nodes that went to the trash as ``entry_id`` (itself included)."""
    return [row["id"] for row in await fetch(on, select(nodes.c.id).where(nodes.c.trashed_with == entry_id))]


async def bypass(conn: AsyncConnection, node_id: str, replaced_by: str | None) -> None:
    """The versions ``node_id`` replaced are versions of what replaced it: a chain stays whole when a
    version in it is deleted for good."""
    await change(conn, update(nodes).where(nodes.c.replaced_by == node_id).values(replaced_by=replaced_by))


async def purge_nodes(conn: AsyncConnection, node_ids: Sequence[str]) -> None:
    """Delete node rows for good (their files' rows are gateway/db/files.py's)."""
    if node_ids:
        await change(conn, delete(nodes).where(nodes.c.id.in_(list(node_ids))))


async def end_sharing(conn: AsyncConnection, file_ids: Sequence[str]) -> None:
    """The shares and links of these files end, as a deleted file's did (v1.1): a trashed file is no one's
    to read, and a restore does not bring them back."""
    if file_ids:
        await change(conn, delete(shares).where(shares.c.file_id.in_(list(file_ids))))
        await change(conn, delete(links).where(links.c.file_id.in_(list(file_ids))))


async def hand_over_sharing(conn: AsyncConnection, old_id: str, new_id: str) -> None:
    """The shares and links of a replaced file now belong to the file that replaced it."""
    await change(conn, update(shares).where(shares.c.file_id == old_id).values(file_id=new_id))
    await change(conn, update(links).where(links.c.file_id == old_id).values(file_id=new_id))
