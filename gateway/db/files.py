"""Queries on files and their chunks: reading, listing, the status transitions, deleting.

An upload in progress has a session besides its file row: gateway/db/uploads.py.

Every function takes ``on``: the :class:`~gateway.db.Database` (the query runs
on its own, a short read or a one-statement transaction) or a connection of a
transaction the caller holds. Rows come back as dicts; those the core reads
a file's or a chunk's state from are typed (:class:`FileRow`, :class:`ChunkRow`,
:class:`FileFacts`), their statuses members of protocol/states.py's enums (the
columns' StatusText reads them so).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict, cast

from sqlalchemy import Delete, and_, bindparam, delete, exists, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.plain import Plain
from gateway.db.engine import Database, Row, change, fetch, fetch_one, fetch_value, insert_or
from gateway.db.tables import chunks, content_drops, files, nodes, shares, uploads, users
from protocol.states import ChunkStatus, FileStatus

On = Database | AsyncConnection

# What a file row answers with: every column, the owner's name, and its place: in the tree (nodes) once
# uploaded, where it is headed (its upload session) before. A placed file's name is its node's.
FILE_COLUMNS = (
    files.c.id, files.c.seq, files.c.owner_id, users.c.username.label("owner_name"),
    func.coalesce(nodes.c.name, files.c.file_name).label("file_name"),
    files.c.file_size, files.c.file_type, files.c.fingerprint, files.c.chunk_size, files.c.total_chunks,
    files.c.status, files.c.failure_reason, files.c.created_at, files.c.updated_at, files.c.completed_at,
    func.coalesce(nodes.c.parent_id, uploads.c.parent_id).label("parent_id"),
    func.coalesce(nodes.c.modified_at, files.c.updated_at).label("modified_at"),
    nodes.c.replaced_by, nodes.c.deleted_at, nodes.c.deleted_path,
)
FILE_FROM = (
    files.join(users, users.c.id == files.c.owner_id)
    .outerjoin(nodes, nodes.c.id == files.c.id)
    .outerjoin(uploads, uploads.c.file_id == files.c.id)
)
FILE_SELECT = select(*FILE_COLUMNS).select_from(FILE_FROM)
# Files a v1 listing shows: those in the tree and those not placed yet (uploading, failed); not
# versions, not the trash.
LISTED = or_(nodes.c.id.is_(None), and_(nodes.c.replaced_by.is_(None), nodes.c.deleted_at.is_(None)))
CHUNK_COLUMNS = (chunks.c.idx, chunks.c.fingerprint, chunks.c.size, chunks.c.status, chunks.c.etag)
# Statuses of a file that needs its content: an upload under way will write it, an uploaded file serves it.
REFERENCING = (FileStatus.UPLOADING, FileStatus.UPLOADED)


# --- the rows the core reads, typed ---------------------------------------------------------------

class FileRow(TypedDict):
    """A file as FILE_COLUMNS read it."""

    id: str
    seq: int
    owner_id: int
    owner_name: str
    file_name: str
    file_size: int
    file_type: str
    fingerprint: str
    chunk_size: int
    total_chunks: int
    status: FileStatus
    failure_reason: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    parent_id: str | None  # the folder it is in, or headed for while uploading; None: failed
    modified_at: str
    replaced_by: str | None  # a version: the file that replaced it
    deleted_at: str | None  # in the trash since
    deleted_path: str | None
    path: NotRequired[str | None]  # filled by the core (gateway/core/tree.py): paths are not stored
    shared_at: NotRequired[str]  # in shared_files_page only: when it was shared with the reader


class ChunkRow(TypedDict):
    """A chunk as CHUNK_COLUMNS read it."""

    idx: int
    fingerprint: str
    size: int
    status: ChunkStatus
    etag: str | None


class FileFacts(TypedDict):
    """What a change to a file is decided on (file_for_change)."""

    owner_id: int
    fingerprint: str
    status: FileStatus
    upload_id: str | None
    deleted_at: str | None  # in the trash: no change but restoring or deleting it for good


def inserted_row(file: Mapping[str, Any], seq: int, owner_name: str, parent_id: str, name: str,
                 modified_at: str) -> FileRow:
    """A file just inserted (``file``: its ``files`` columns, as insert_file took them) as FILE_COLUMNS would read
    it back after the commit, from what its transaction wrote: the owner's name, where it is (its node's folder,
    name and time once placed; where its upload is headed before), no failure, not a version, not in the trash.
    The answer to an upload is made from it instead of reading the file again."""
    return FileRow(
        id=file["id"], seq=seq, owner_id=file["owner_id"], owner_name=owner_name, file_name=name,
        file_size=file["file_size"], file_type=file["file_type"], fingerprint=file["fingerprint"],
        chunk_size=file["chunk_size"], total_chunks=file["total_chunks"], status=FileStatus(file["status"]),
        failure_reason=None, created_at=file["created_at"], updated_at=file["updated_at"],
        completed_at=file["completed_at"], parent_id=parent_id, modified_at=modified_at, replaced_by=None,
        deleted_at=None, deleted_path=None,
    )


def file_row(values: Mapping[str, Any]) -> FileRow:
    """A copy of a FileRow kept elsewhere (the permission cache), its status a member again (ValueError if none):
    a JSON cache gives strings back."""
    return cast(FileRow, {**values, "status": FileStatus(values["status"])})


def chunk_rows(values: list[dict[str, Any]]) -> list[ChunkRow]:
    """ChunkRows kept elsewhere, as :func:`file_row`; the very list when its statuses are members already
    (the memory cache keeps what it was given: no copy of a 5,120-chunk list per read)."""
    if all(isinstance(chunk["status"], ChunkStatus) for chunk in values):
        return cast(list[ChunkRow], values)
    return [cast(ChunkRow, {**chunk, "status": ChunkStatus(chunk["status"])}) for chunk in values]


# --- reading --------------------------------------------------------------------------------------

# The statements every request runs, built once with parameters (building one per call, and its cache key,
# cost about 0.2 ms of CPU each on a 2-core VM: bench control's figures are per statement).
FILE_BY_ID = Plain(FILE_SELECT.where(files.c.id == bindparam("file_id")))


async def get_file(on: On, file_id: str) -> FileRow | None:
    return cast(FileRow | None, await fetch_one(on, FILE_BY_ID, {"file_id": file_id}))


async def files_by_ids(on: On, file_ids: Sequence[str]) -> dict[str, FileRow]:
    """The files with these ids (a page of folder entries), by id."""
    if not file_ids:
        return {}
    rows = await fetch(on, FILE_SELECT.where(files.c.id.in_(list(file_ids))))
    return {row["id"]: cast(FileRow, row) for row in rows}


async def copy_file(conn: AsyncConnection, source_id: str, file_id: str, owner_id: int, name: str, now: str) -> bool:
    """A new uploaded file of ``owner_id`` with the content of ``source_id``: rows only, no bytes move.
    False (and nothing written) when ``source_id`` is gone."""
    copied = [dict(row) for row in (await conn.execute(
        insert(files).from_select(
            ["id", "owner_id", "file_name", "file_size", "file_type", "fingerprint", "chunk_size", "total_chunks",
             "status", "created_at", "updated_at", "completed_at"],
            select(literal(file_id), literal(owner_id), literal(name), files.c.file_size, files.c.file_type,
                   files.c.fingerprint, files.c.chunk_size, files.c.total_chunks, literal(FileStatus.UPLOADED.value),
                   literal(now), literal(now), literal(now)).where(files.c.id == source_id),
        ).returning(*COUNTED)
    )).mappings()]
    if not copied:
        return False
    await count_usage(conn, copied, added=True)
    await conn.execute(
        insert(chunks).from_select(
            ["file_id", "idx", "fingerprint", "size", "status", "etag"],
            select(literal(file_id), chunks.c.idx, chunks.c.fingerprint, chunks.c.size,
                   literal(ChunkStatus.UPLOADED.value), chunks.c.etag).where(chunks.c.file_id == source_id),
        )
    )
    return True


async def fingerprints_of(on: On, file_ids: Sequence[str]) -> list[str]:
    """The distinct fingerprints of these files, in order (locks taken in one order everywhere)."""
    if not file_ids:
        return []
    query = select(files.c.fingerprint).where(files.c.id.in_(list(file_ids))).distinct().order_by(files.c.fingerprint)
    return [row["fingerprint"] for row in await fetch(on, query)]


async def delete_files(conn: AsyncConnection, file_ids: Sequence[str]) -> list[str]:
    """Delete these files for good (chunks, shares, links go with them), taken off their owners' usage; the
    fingerprints they had, in order."""
    if not file_ids:
        return []
    deleted = await _deleting(conn, delete(files).where(files.c.id.in_(list(file_ids))))
    return sorted({row["fingerprint"] for row in deleted})


CHUNKS_OF = Plain(select(*CHUNK_COLUMNS).where(chunks.c.file_id == bindparam("file_id")).order_by(chunks.c.idx))


async def get_chunks(on: On, file_id: str) -> list[ChunkRow]:
    return cast(list[ChunkRow], await fetch(on, CHUNKS_OF, {"file_id": file_id}))


async def uploaded_counts(on: On, file_ids: Sequence[str]) -> dict[str, int]:
    """How many chunks of each file the store holds, in one query (a listing page); 0 for a file without any."""
    counts = {file_id: 0 for file_id in file_ids}
    if file_ids:
        query = (
            select(chunks.c.file_id, func.count().label("uploaded"))
            .where(chunks.c.file_id.in_(list(file_ids)), chunks.c.status == ChunkStatus.UPLOADED)
            .group_by(chunks.c.file_id)
        )
        for row in await fetch(on, query):
            counts[row["file_id"]] = row["uploaded"]
    return counts


async def own_files_page(on: On, owner_id: int, limit: int, *, before_seq: int | None = None,
                         fingerprint: str | None = None) -> list[FileRow]:
    """Up to ``limit`` of the owner's files, newest first (files_by_owner), below ``before_seq``."""
    query = FILE_SELECT.where(files.c.owner_id == owner_id, LISTED)
    if fingerprint is not None:
        query = query.where(files.c.fingerprint == fingerprint)
    if before_seq is not None:
        query = query.where(files.c.seq < before_seq)
    return cast(list[FileRow], await fetch(on, query.order_by(files.c.seq.desc()).limit(limit)))


async def shared_files_page(on: On, user_id: int, limit: int, *,
                            before: tuple[str, str] | None = None) -> list[FileRow]:
    """Up to ``limit`` files shared with the user, newest share first (shares_by_user_newest), below ``before``.

    ``before`` is the (share time, file id) of the last file of the previous page.
    """
    query = (
        select(*FILE_COLUMNS, shares.c.created_at.label("shared_at"))
        .select_from(FILE_FROM.join(shares, shares.c.file_id == files.c.id))
        .where(shares.c.user_id == user_id, LISTED)
    )
    if before is not None:
        query = query.where(tuple_(shares.c.created_at, shares.c.file_id) < tuple_(*before))
    query = query.order_by(shares.c.created_at.desc(), shares.c.file_id.desc()).limit(limit)
    return cast(list[FileRow], await fetch(on, query))


VERIFIED_CONTENT = Plain(select(files.c.seq).where(
    files.c.owner_id == bindparam("owner_id"), files.c.fingerprint == bindparam("fingerprint"),
    files.c.status == FileStatus.UPLOADED,
).limit(1))


async def holds_verified_content(on: On, owner_id: int, fingerprint: str) -> bool:
    return await fetch_one(on, VERIFIED_CONTENT, {"owner_id": owner_id, "fingerprint": fingerprint}) is not None


# holds_verified_content for many contents at once (a batch of small files' lookups).
VERIFIED_AMONG = select(files.c.fingerprint).distinct().where(
    files.c.owner_id == bindparam("owner_id"), files.c.fingerprint.in_(bindparam("fingerprints", expanding=True)),
    files.c.status == FileStatus.UPLOADED,
)


async def verified_contents(on: On, owner_id: int, fingerprints: Iterable[str]) -> set[str]:
    """Which of these contents the owner holds verified (holds_verified_content, for a batch)."""
    params = {"owner_id": owner_id, "fingerprints": sorted(set(fingerprints))}
    return {row["fingerprint"] for row in await fetch(on, VERIFIED_AMONG, params)}


async def content_referenced(on: On, fingerprint: str, statuses: Iterable[FileStatus] = REFERENCING) -> bool:
    """Whether any file of anyone with this fingerprint is in one of ``statuses``."""
    query = select(files.c.seq).where(files.c.fingerprint == fingerprint, files.c.status.in_(list(statuses))).limit(1)
    return await fetch_one(on, query) is not None


async def count_with_content(on: On, fingerprint: str, status: FileStatus) -> int:
    return await fetch_value(
        on, select(func.count()).select_from(files).where(files.c.fingerprint == fingerprint, files.c.status == status)
    )


async def pending_chunks(on: On, file_id: str) -> int:
    query = select(func.count()).select_from(chunks).where(chunks.c.file_id == file_id, chunks.c.status != ChunkStatus.UPLOADED)
    return await fetch_value(on, query)


async def unverified_chunks(on: On, file_id: str) -> int:
    """Chunks the store has not listed as parts of the file's current upload (marked without an ETag)."""
    query = select(func.count()).select_from(chunks).where(
        chunks.c.file_id == file_id, or_(chunks.c.status != ChunkStatus.UPLOADED, chunks.c.etag.is_(None))
    )
    return await fetch_value(on, query)


# The user's quota setting and usage from their row (revision 0013: no sum over their files), and their uploads
# in progress (files_by_owner_status: a range of at most GATEWAY_MAX_UPLOADS_IN_PROGRESS entries). Built once,
# with a parameter: building a select and its cache key per call costs more CPU than running it (aiosqlite).
UPLOADING_COUNT = (
    select(func.count()).select_from(files)
    .where(files.c.owner_id == users.c.id, files.c.status == FileStatus.UPLOADING).scalar_subquery()
)
LIMITS_QUERY = Plain(select(
    users.c.username, users.c.quota_bytes, users.c.used_bytes, users.c.file_count.label("files"),
    UPLOADING_COUNT.label("uploading"),
).where(users.c.id == bindparam("owner_id")))


async def limits_of(on: On, owner_id: int) -> Row | None:
    """The user's own quota setting (``quota_bytes``, None: the gateway's) and their usage, in one statement:
    ``used_bytes`` (sizes of their uploaded and uploading files: the counter on their row), ``uploading``
    (how many are) and ``files`` (how many files they have, failed ones too: each is a row); and their
    ``username`` (a new file's ``uploaded_by``, from the same row). None when there is no such user."""
    row = await fetch_one(on, LIMITS_QUERY, {"owner_id": owner_id})
    if row is None:
        return None
    return {"username": row["username"], "quota_bytes": row["quota_bytes"], "used_bytes": int(row["used_bytes"]),
            "uploading": int(row["uploading"]), "files": int(row["files"])}


# --- the users' usage counters (revision 0013) ------------------------------------------------------

# What a file adds to its owner's usage: its size while it holds or will hold content (REFERENCING), and one file.
COUNTED = (files.c.owner_id, files.c.file_size, files.c.status)
COUNT_USAGE = Plain(
    update(users).where(users.c.id == bindparam("owner_key"))
    .values(used_bytes=users.c.used_bytes + bindparam("bytes_added"),
            file_count=users.c.file_count + bindparam("files_added"))
)


async def count_usage(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]], *, added: bool,
                      files_too: bool = True) -> None:
    """Add ``rows`` (COUNTED: the files inserted, deleted or failed) to their owners' usage, or take them off;
    ``files_too``: their number as well (False: a file that stays a row, failed).

    Always an addition on the row as it is (``used_bytes = used_bytes + :delta``) in the caller's transaction:
    two gateways committing changes of one user at once add up (PostgreSQL's row lock orders the two
    UPDATEs, the second reading the first's result), and a change that rolls back counts nothing.
    Owners in id order: two transactions lock users rows in one order.
    """
    sign = 1 if added else -1
    deltas: dict[int, list[int]] = {}
    for row in rows:
        delta = deltas.setdefault(row["owner_id"], [0, 0])
        delta[0] += row["file_size"] if row["status"] in REFERENCING else 0
        delta[1] += 1 if files_too else 0
    params = [{"owner_key": owner, "bytes_added": sign * size, "files_added": sign * count}
              for owner, (size, count) in sorted(deltas.items()) if size or count]
    if params:
        await COUNT_USAGE.run_many(conn, params)


async def _deleting(conn: AsyncConnection, statement: Delete) -> list[Row]:
    """Run a DELETE of files, take what it deleted off their owners' usage; the rows deleted (COUNTED, and the
    fingerprint). RETURNING says what the DELETE itself removed, as it found the rows: nothing a concurrent
    change did between a read and the DELETE can be counted twice or missed."""
    deleted = [dict(row) for row in (await conn.execute(statement.returning(*COUNTED, files.c.fingerprint))).mappings()]
    await count_usage(conn, deleted, added=False)
    return deleted


# --- content removed from the store (gateway/core/deletion.py), what a small file's upload checks ----

async def record_content_drop(conn: AsyncConnection, fingerprint: str, now: str) -> None:
    """The content is being removed from the store (in the transaction that removes it, under its lock)."""
    statement = insert_or(conn.dialect.name, content_drops).values(fingerprint=fingerprint, dropped_at=now)
    await conn.execute(statement.on_conflict_do_update(index_elements=[content_drops.c.fingerprint],
                                                       set_={"dropped_at": now}))


async def content_dropped(on: On, fingerprint: str) -> bool:
    """Whether the content was removed from the store in the last day (revision 0011 says why that matters)."""
    query = select(content_drops.c.fingerprint).where(content_drops.c.fingerprint == fingerprint)
    return await fetch_one(on, query) is not None


async def contents_dropped(on: On, fingerprints: Iterable[str]) -> set[str]:
    """Which of these contents were removed from the store in the last day (content_dropped, for a batch)."""
    query = select(content_drops.c.fingerprint).where(content_drops.c.fingerprint.in_(sorted(set(fingerprints))))
    return {row["fingerprint"] for row in await fetch(on, query)}


async def forget_content_drops(on: On, before: str) -> int:
    return await change(on, delete(content_drops).where(content_drops.c.dropped_at < before))


# --- writing --------------------------------------------------------------------------------------

# What a new file's row gives (the rest are the server's defaults), and its chunks' rows.
FILE_KEYS = ("id", "owner_id", "file_name", "file_size", "file_type", "fingerprint", "chunk_size", "total_chunks",
             "status", "created_at", "updated_at", "completed_at")
FILE_INSERT = Plain(insert(files).returning(files.c.seq), keys=FILE_KEYS)
CHUNKS_INSERT = Plain(insert(chunks), keys=("file_id", "idx", "fingerprint", "size", "status", "etag"))


async def insert_file(conn: AsyncConnection, file: Row, file_chunks: Sequence[Mapping[str, Any]]) -> int:
    """Insert a file row (FILE_KEYS) and its chunks (ChunkRow); the file's seq. Plain statements
    (gateway/db/plain.py): every upload start runs them."""
    [inserted] = await FILE_INSERT.rows(conn, file)
    await count_usage(conn, [file], added=True)
    if file_chunks:
        await CHUNKS_INSERT.run_many(conn, [{"file_id": file["id"], **chunk} for chunk in file_chunks])
    return inserted["seq"]


# Several files at once (a batch of small files, gateway/core/uploads.py's store_batch): their seqs in the order given.
FILES_INSERT = insert(files).returning(files.c.seq, sort_by_parameter_order=True)


async def insert_files(conn: AsyncConnection, new: Sequence[tuple[Row, Sequence[Mapping[str, Any]]]]) -> list[int]:
    """Insert files with their chunks, as insert_file does one: one statement for the files, one for all their
    chunks, one change of the owners' usage; the files' seqs, in the order given."""
    seqs = [row[0] for row in await conn.execute(FILES_INSERT, [file for file, _ in new])]
    await count_usage(conn, [file for file, _ in new], added=True)
    rows = [{"file_id": file["id"], **chunk} for file, file_chunks in new for chunk in file_chunks]
    if rows:
        await conn.execute(insert(chunks), rows)
    return seqs


async def mark_uploaded(conn: AsyncConnection, file_id: str, now: str) -> bool:
    """uploading -> uploaded (only from uploading: a second settle changes nothing); the session ends."""
    changed = await change(
        conn,
        update(files).where(files.c.id == file_id, files.c.status == FileStatus.UPLOADING)
        .values(status=FileStatus.UPLOADED, completed_at=now, updated_at=now),
    )
    if changed:
        await change(conn, update(chunks).where(chunks.c.file_id == file_id).values(status=ChunkStatus.UPLOADED))
        await change(conn, delete(uploads).where(uploads.c.file_id == file_id))
    return bool(changed)


async def mark_failed(on: On, file_id: str, reason: str, now: str) -> bool:
    """uploading -> failed, with the reason the owner will read; the session ends."""
    if isinstance(on, Database):
        async with on.transaction() as conn:
            return await mark_failed(conn, file_id, reason, now)
    await lock_owner_of(on, file_id)
    failed = (await on.execute(
        update(files).where(files.c.id == file_id, files.c.status == FileStatus.UPLOADING)
        .values(status=FileStatus.FAILED, failure_reason=reason, updated_at=now).returning(*COUNTED)
    )).mappings().all()
    if failed:
        # A failed file keeps its row (and counts as a file) but no longer its size.
        await count_usage(on, [{**row, "status": FileStatus.UPLOADING} for row in failed], added=False, files_too=False)
        await change(on, delete(uploads).where(uploads.c.file_id == file_id))
    return bool(failed)


OWNER_OF_FILE = select(files.c.owner_id).where(files.c.id == bindparam("file_id")).scalar_subquery()
LOCK_OWNER_OF_FILE = select(users.c.id).where(users.c.id == OWNER_OF_FILE).with_for_update(of=users)


async def lock_owner_of(conn: AsyncConnection, file_id: str) -> None:
    """Lock the row of the file's owner (PostgreSQL; SQLite's writer lock holds every row) before the file's:
    every transaction that changes a user's files and usage takes the two in this order, so two of them
    never wait for each other (gateway/core/namespace.py locks the owner first too)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(LOCK_OWNER_OF_FILE, {"file_id": file_id})


async def file_for_change(conn: AsyncConnection, file_id: str) -> FileFacts | None:
    """The facts a change is decided on, locked until ``conn`` commits (FOR UPDATE; SQLite's writer lock)."""
    query = (
        select(files.c.owner_id, files.c.fingerprint, files.c.status, uploads.c.upload_id, nodes.c.deleted_at)
        .select_from(files.outerjoin(uploads, uploads.c.file_id == files.c.id).outerjoin(nodes, nodes.c.id == files.c.id))
        .where(files.c.id == file_id)
        .with_for_update(of=files)
    )
    return cast(FileFacts | None, await fetch_one(conn, query))


async def delete_file(conn: AsyncConnection, file_id: str) -> int:
    """Delete the row, taken off its owner's usage; its chunks, shares and upload session go with it
    (ON DELETE CASCADE)."""
    return len(await _deleting(conn, delete(files).where(files.c.id == file_id)))


async def exists_file(on: On, file_id: str) -> bool:
    return bool(await fetch_value(on, select(exists().where(files.c.id == file_id))))
