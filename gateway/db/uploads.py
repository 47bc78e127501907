"""Queries on upload sessions (the ``uploads`` table): one per file still uploading.

A session holds how the file is arriving: the store's multipart upload, where
the file is headed (folder, name, mode, the file it replaces), its last
activity, the settling lease, the part-event mark and the reconciler's last
look. It is deleted in the transaction that makes its file ``uploaded`` or
``failed`` (gateway/db/files.py), so "has a session" and "is uploading" are one
fact.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.plain import Plain
from gateway.db.engine import Database, Row, change, fetch, fetch_one, fetch_value
from gateway.db.files import FILE_COLUMNS, FILE_FROM, FileRow
from gateway.db.tables import chunks, files, uploads
from protocol.states import ChunkStatus

On = Database | AsyncConnection

UPLOAD_COLUMNS = (
    uploads.c.upload_id, uploads.c.parent_id, uploads.c.name, uploads.c.name_key, uploads.c.mode,
    uploads.c.replaces, uploads.c.active_at,
)
UPLOAD_SELECT = select(*FILE_COLUMNS, *UPLOAD_COLUMNS).select_from(FILE_FROM).where(uploads.c.file_id.is_not(None))
# One chunk the store lists, with the ETag it gave: written only if the row says otherwise.
MARK_CHUNK = (
    update(chunks)
    .where(chunks.c.file_id == bindparam("chunk_file"), chunks.c.idx == bindparam("chunk_index"),
           or_(chunks.c.status != ChunkStatus.UPLOADED, chunks.c.etag.is_distinct_from(bindparam("listed_etag"))))
    .values(status=ChunkStatus.UPLOADED, etag=bindparam("listed_etag"))
)


class UploadRow(FileRow):
    """A file that is uploading, with its session."""

    upload_id: str
    name: str
    name_key: str
    mode: str
    replaces: str | None
    active_at: str


# --- reading --------------------------------------------------------------------------------------

# Built once with parameters: every upload start and completion runs them.
UPLOAD_BY_ID = Plain(UPLOAD_SELECT.where(uploads.c.file_id == bindparam("file_id")))
RESUMABLE = Plain(
    UPLOAD_SELECT
    .where(uploads.c.owner_id == bindparam("owner_id"), uploads.c.parent_id == bindparam("parent_id"),
           uploads.c.name_key == bindparam("name_key"), files.c.fingerprint == bindparam("fingerprint"))
    .order_by(files.c.seq.desc())
    .limit(1)
)


async def get_upload(on: On, file_id: str) -> UploadRow | None:
    """The file and its session while it is uploading; None once it is not (or never was)."""
    return cast(UploadRow | None, await fetch_one(on, UPLOAD_BY_ID, {"file_id": file_id}))


async def resumable(on: On, owner_id: int, fingerprint: str, parent_id: str, key: str) -> UploadRow | None:
    """The owner's newest upload of this content headed for this place (folder and name_key)."""
    params = {"owner_id": owner_id, "parent_id": parent_id, "name_key": key, "fingerprint": fingerprint}
    return cast(UploadRow | None, await fetch_one(on, RESUMABLE, params))


# resumable for many contents at once (a batch of small files' lookups): an expanding IN, built once.
UPLOADING_PLACES = (
    select(files.c.fingerprint, uploads.c.parent_id, uploads.c.name_key)
    .select_from(uploads.join(files, files.c.id == uploads.c.file_id))
    .where(uploads.c.owner_id == bindparam("owner_id"), files.c.fingerprint.in_(bindparam("fingerprints", expanding=True)))
)


async def uploading_places(on: On, owner_id: int, fingerprints: Sequence[str]) -> set[tuple[str, str, str]]:
    """(fingerprint, folder, name_key) of each of the owner's uploads of these contents: where resumable finds one."""
    params = {"owner_id": owner_id, "fingerprints": sorted(set(fingerprints))}
    return {(row["fingerprint"], row["parent_id"], row["name_key"]) for row in await fetch(on, UPLOADING_PLACES, params)}


async def uploading_with_content(on: On, fingerprint: str) -> list[str]:
    query = (
        select(uploads.c.file_id)
        .select_from(uploads.join(files, files.c.id == uploads.c.file_id))
        .where(files.c.fingerprint == fingerprint)
    )
    return [row["file_id"] for row in await fetch(on, query)]


async def exists_upload(on: On, file_id: str) -> bool:
    return bool(await fetch_value(on, select(exists().where(uploads.c.file_id == file_id))))


async def uploads_to_check(on: On, quiet_since: str, checked_before: str, abandon_before: str, limit: int) -> list[Row]:
    """Up to ``limit`` uploads quiet since ``quiet_since`` that the reconciler has not looked at
    since their last activity, nor since ``checked_before``, or that are due to be abandoned
    (quiet since ``abandon_before``); the longest without a look first. Rows: ``id``, ``active_at``."""
    due = or_(
        uploads.c.checked_at.is_(None), uploads.c.checked_at < uploads.c.active_at,
        uploads.c.checked_at <= checked_before, uploads.c.active_at <= abandon_before,
    )
    query = (
        select(uploads.c.file_id.label("id"), uploads.c.active_at)
        .where(uploads.c.active_at <= quiet_since, due)
        .order_by(func.coalesce(uploads.c.checked_at, uploads.c.active_at), uploads.c.file_id)
        .limit(limit)
    )
    return await fetch(on, query)


async def mark_checked(on: On, file_id: str, now: str) -> int:
    """The reconciler looked at the upload now."""
    return await change(on, update(uploads).where(uploads.c.file_id == file_id).values(checked_at=now))


# --- part events: a mark asks for the part list to be read, once per burst ------------------------

async def upload_by_store_id(on: On, upload_id: str) -> Row | None:
    """The upload whose multipart upload this is (``id``), and its mark."""
    query = select(uploads.c.file_id.label("id"), uploads.c.parts_marked_at).where(uploads.c.upload_id == upload_id)
    return await fetch_one(on, query)


async def mark_parts(on: On, file_id: str, now: str) -> int:
    """Ask for the upload's part list to be read; a mark already there stays (the burst's first)."""
    return await change(
        on,
        update(uploads).where(uploads.c.file_id == file_id, uploads.c.parts_marked_at.is_(None))
        .values(parts_marked_at=now),
    )


async def marked_uploads(on: On, marked_before: str, limit: int) -> list[Row]:
    """Up to ``limit`` uploads marked before ``marked_before``, the oldest mark first (uploads_parts_marked)."""
    query = (
        select(uploads.c.file_id.label("id"), uploads.c.parts_marked_at)
        .where(uploads.c.parts_marked_at.is_not(None), uploads.c.parts_marked_at <= marked_before)
        .order_by(uploads.c.parts_marked_at)
        .limit(limit)
    )
    return await fetch(on, query)


async def take_mark(on: On, file_id: str, marked_at: str) -> bool:
    """Clear the mark if it is still ``marked_at``: whoever clears it reads the part list (one gateway)."""
    changed = await change(
        on,
        update(uploads).where(uploads.c.file_id == file_id, uploads.c.parts_marked_at == marked_at)
        .values(parts_marked_at=None),
    )
    return bool(changed)


# --- writing --------------------------------------------------------------------------------------

UPLOAD_INSERT = Plain(insert(uploads), keys=("file_id", "owner_id", "upload_id", "parent_id", "name", "name_key",
                                              "mode", "replaces", "active_at"))


async def insert_upload(conn: AsyncConnection, session: Row) -> None:
    """The session of a file just inserted (UPLOAD_INSERT's columns): a plain statement (gateway/db/plain.py),
    as every upload start runs it."""
    await UPLOAD_INSERT.count(conn, session)


async def touch(on: On, file_id: str, now: str) -> int:
    """Record activity on an upload: an upload with recent activity is not abandoned."""
    return await change(on, update(uploads).where(uploads.c.file_id == file_id).values(active_at=now))


async def mark_chunks(conn: AsyncConnection, file_id: str, upload_id: str, etags: dict[int, str], now: str) -> bool:
    """Mark chunks as held by the store, with the ETags it listed for them in ``upload_id``; False if not its upload.

    Only while ``upload_id`` is still the file's upload: a part list read just
    before the upload was restarted must not mark the new upload's chunks. One
    statement for all the chunks (executemany): a list of thousands of parts is
    written without building a statement per part.
    """
    current = await fetch_one(
        conn,
        select(uploads.c.file_id).where(uploads.c.file_id == file_id, uploads.c.upload_id == upload_id).with_for_update(),
    )
    if current is None:
        return False
    if etags:
        await conn.execute(MARK_CHUNK, [{"chunk_file": file_id, "chunk_index": index, "listed_etag": etag}
                                        for index, etag in etags.items()])
        await touch(conn, file_id, now)
    return True


async def restart_upload(conn: AsyncConnection, file_id: str, upload_id: str, now: str) -> int:
    """A new multipart upload for a file still uploading; every chunk is pending again."""
    changed = await change(
        conn, update(uploads).where(uploads.c.file_id == file_id).values(upload_id=upload_id, active_at=now),
    )
    if changed:
        await change(conn, update(chunks).where(chunks.c.file_id == file_id).values(status=ChunkStatus.PENDING, etag=None))
    return changed


async def end_upload(conn: AsyncConnection, file_id: str) -> int:
    return await change(conn, delete(uploads).where(uploads.c.file_id == file_id))


# --- leases: one gateway at a time settles an upload ------------------------------------------------

async def claim_lease(on: On, file_id: str, token: str, now: str, expires_at: str) -> bool:
    """Take the upload's lease if nobody holds it (or their lease ran out); whether we got it."""
    free = or_(uploads.c.lease_token.is_(None), uploads.c.lease_expires_at < now)
    changed = await change(
        on,
        update(uploads).where(uploads.c.file_id == file_id, free).values(lease_token=token, lease_expires_at=expires_at),
    )
    return bool(changed)


async def release_lease(on: On, file_id: str, token: str) -> None:
    """Give the lease back, if it is still ours (and the session still there)."""
    await change(
        on,
        update(uploads).where(uploads.c.file_id == file_id, uploads.c.lease_token == token)
        .values(lease_token=None, lease_expires_at=None),
    )
