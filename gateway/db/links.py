"""Queries on shared links: create, look up by token hash, list a file's, revoke, count downloads."""
from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.engine import Database, Row, change, fetch, fetch_one
from gateway.db.tables import files, links, nodes

On = Database | AsyncConnection

LINK_COLUMNS = (
    links.c.id, links.c.file_id, links.c.password_hash, links.c.expires_at, links.c.created_at,
    links.c.revoked_at, links.c.download_count,
)
# What a visitor's download needs besides the link: the file's name (its node's, once in the tree), size,
# type, content and status.
FILE_FACTS = (
    files.c.owner_id, func.coalesce(nodes.c.name, files.c.file_name).label("file_name"), files.c.file_size,
    files.c.file_type, files.c.fingerprint, files.c.status,
)


async def insert_link(conn: AsyncConnection, link: Row) -> None:
    await conn.execute(insert(links), [link])


async def link_by_token_hash(on: On, token_hash: str) -> Row | None:
    """The link with this token hash and its file's facts; None when no link has it (or its file is gone)."""
    query = (
        select(*LINK_COLUMNS, *FILE_FACTS)
        .select_from(links.join(files, files.c.id == links.c.file_id).outerjoin(nodes, nodes.c.id == files.c.id))
        .where(links.c.token_hash == token_hash)
    )
    return await fetch_one(on, query)


async def link_by_id(on: On, link_id: str) -> Row | None:
    """The link and the owner of its file."""
    query = (
        select(*LINK_COLUMNS, files.c.owner_id)
        .select_from(links.join(files, files.c.id == links.c.file_id))
        .where(links.c.id == link_id)
    )
    return await fetch_one(on, query)


async def live_links_of(on: On, file_id: str) -> list[Row]:
    """The file's links that are not revoked (expired ones included), newest first."""
    query = (
        select(*LINK_COLUMNS)
        .where(links.c.file_id == file_id, links.c.revoked_at.is_(None))
        .order_by(links.c.created_at.desc(), links.c.id.desc())
    )
    return await fetch(on, query)


async def revoke(on: On, link_id: str, now: str) -> int:
    """Revoke a live link; 0 when it already was."""
    return await change(
        on, update(links).where(links.c.id == link_id, links.c.revoked_at.is_(None)).values(revoked_at=now)
    )


async def count_download(on: On, link_id: str, now: str) -> int:
    """download_count + 1 in one statement, only while the link is live and unexpired; the rows changed (0 or 1)."""
    unexpired = links.c.expires_at.is_(None) | (links.c.expires_at > now)
    return await change(
        on,
        update(links)
        .where(links.c.id == link_id, links.c.revoked_at.is_(None), unexpired)
        .values(download_count=links.c.download_count + 1),
    )
