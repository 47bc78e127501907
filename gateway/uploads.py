"""The upload state machine: start, learn from the store, complete, fail, abandon.

The gateway never takes a client's word that bytes arrived. What the store
lists (its parts, its objects and their checksums) or announces (its events)
is the only evidence, and a file turns ``uploaded`` only after the store has
checked every chunk against its SHA-256.
"""
from __future__ import annotations

import asyncio
import secrets
import weakref
from dataclasses import dataclass

import structlog
from aiohttp import web

from gateway import appkeys, permissions
from gateway.db import utcnow
from gateway.errors import ApiError
from gateway.files import get_chunks, get_file
from protocol.fingerprints import EMPTY_FINGERPRINT, chunk_length, composite_checksum, hex_to_b64
from gateway.content import content_key
from storage import ChecksumMismatch, CompletedPart, StoredPart, UploadNotFound

log = structlog.get_logger("gateway.uploads")

# One settle/complete at a time per file within this process; the database's
# conditional updates keep several gateway processes from double-finishing.
_file_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


def file_lock(file_id: str) -> asyncio.Lock:
    lock = _file_locks.get(file_id)
    if lock is None:
        lock = _file_locks[file_id] = asyncio.Lock()
    return lock


@dataclass(frozen=True)
class UploadClaim:
    """What a client says it will upload; checked for consistency before use."""

    file_name: str
    file_size: int
    file_type: str
    fingerprint: str
    chunk_size: int
    chunks: list[str]


def new_file_id() -> str:
    # Hex: safe in paths and on command lines (a leading "-" would read as an option).
    return secrets.token_hex(16)


async def has_verified_content(app: web.Application, user_id: int, fingerprint: str) -> bool:
    """Whether this user already holds verified content with this fingerprint.

    Only the user's own uploads count: knowing a fingerprint of someone
    else's file must never be enough to get it (the "Dropship" attack).
    """
    found = await app[appkeys.DB].fetchval(
        "SELECT 1 FROM files WHERE owner_id = ? AND fingerprint = ? AND status = 'uploaded' LIMIT 1",
        (user_id, fingerprint),
    )
    return bool(found)


async def create_file(
    app: web.Application,
    user_id: int,
    claim: UploadClaim,
    *,
    status: str,
    upload_id: str | None,
    copy_of_own_content: bool = False,
) -> str | None:
    """Insert the file and its chunks.

    ``copy_of_own_content``: a deduplicated copy, inserted only if the user still
    holds verified content with this fingerprint, checked in the same transaction
    (a delete of their last copy may have committed since we looked); None if not.
    """
    file_id = new_file_id()
    now = utcnow()
    chunk_status = "uploaded" if status == "uploaded" else "pending"
    async with app[appkeys.DB].transaction() as conn:
        if copy_of_own_content:
            cursor = await conn.execute(
                "SELECT 1 FROM files WHERE owner_id = ? AND fingerprint = ? AND status = 'uploaded' LIMIT 1",
                (user_id, claim.fingerprint),
            )
            if await cursor.fetchone() is None:
                return None
        await conn.execute(
            """INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size,
                                  total_chunks, status, upload_id, created_at, updated_at, completed_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                file_id, user_id, claim.file_name, claim.file_size, claim.file_type, claim.fingerprint,
                claim.chunk_size, len(claim.chunks), status, upload_id, now, now,
                now if status == "uploaded" else None,
            ),
        )
        await conn.executemany(
            "INSERT INTO chunks (file_id, idx, fingerprint, size, status) VALUES (?, ?, ?, ?, ?)",
            [
                (file_id, index, fp, chunk_length(index, claim.file_size, claim.chunk_size), chunk_status)
                for index, fp in enumerate(claim.chunks)
            ],
        )
    log.info("file_created", file_id=file_id, status=status, size=claim.file_size, chunks=len(claim.chunks))
    return file_id


async def start_upload(app: web.Application, user_id: int, claim: UploadClaim) -> tuple[str, bool]:
    """Start (or resume) an upload; return (file id, created)."""
    db = app[appkeys.DB]
    same = await db.fetchone(
        """SELECT id, status FROM files WHERE owner_id = ? AND fingerprint = ? AND file_name = ?
           AND status IN ('uploading', 'uploaded') ORDER BY seq DESC LIMIT 1""",
        (user_id, claim.fingerprint, claim.file_name),
    )
    if same is not None:
        if same["status"] == "uploading":
            await resume_upload(app, same["id"])
        return same["id"], False
    if await has_verified_content(app, user_id, claim.fingerprint):
        # Deduplicated: the user's own verified content; no bytes move.
        file_id = await create_file(app, user_id, claim, status="uploaded", upload_id=None, copy_of_own_content=True)
        if file_id is not None:
            return file_id, True
        # Their last copy was deleted meanwhile: the bytes must be uploaded after all.
    if not claim.chunks:
        await store_empty_content(app)
        return await create_file(app, user_id, claim, status="uploaded", upload_id=None), True
    upload_id = await app[appkeys.STORE].start_multipart(content_key(claim.fingerprint))
    return await create_file(app, user_id, claim, status="uploading", upload_id=upload_id), True


async def store_empty_content(app: web.Application) -> None:
    """An empty file has no parts to upload: the gateway writes the empty object itself."""
    store = app[appkeys.STORE]
    key = content_key(EMPTY_FINGERPRINT)
    if await store.stat(key) is None:
        await store.put_object(key, b"", hex_to_b64(EMPTY_FINGERPRINT))


def _verified_parts(chunks, parts: list[StoredPart]) -> dict[int, StoredPart]:
    """Chunk index -> the stored part that holds exactly that chunk."""
    by_number = {part.part_number: part for part in parts}
    verified = {}
    for chunk in chunks:
        part = by_number.get(chunk["idx"] + 1)
        if part is None or part.size != chunk["size"]:
            continue
        # Where the store lists part checksums (MinIO does), they must match the claim.
        if part.sha256_b64 is not None and part.sha256_b64 != hex_to_b64(chunk["fingerprint"]):
            continue
        verified[chunk["idx"]] = part
    return verified


async def mark_chunks(app: web.Application, file_id: str, verified: dict[int, StoredPart]) -> int:
    """Record which chunks the store holds; return how many changed."""
    if not verified:
        return 0
    async with app[appkeys.DB].transaction() as conn:
        changed = 0
        for index, part in verified.items():
            cursor = await conn.execute(
                """UPDATE chunks SET status = 'uploaded', etag = ?
                   WHERE file_id = ? AND idx = ? AND (status != 'uploaded' OR etag IS NOT ?)""",
                (part.etag, file_id, index, part.etag),
            )
            changed += cursor.rowcount
        if changed:
            await conn.execute("UPDATE files SET updated_at = ? WHERE id = ?", (utcnow(), file_id))
    return changed


async def refresh_from_store(app: web.Application, file_id: str) -> dict[int, StoredPart] | None:
    """Ask the store which chunks it holds. None when the multipart upload is gone."""
    row = await get_file(app, file_id)
    if row is None or row["status"] != "uploading":
        return None
    chunks = await get_chunks(app, file_id)
    try:
        parts = await app[appkeys.STORE].list_parts(content_key(row["fingerprint"]), row["upload_id"])
    except UploadNotFound:
        return None
    verified = _verified_parts(chunks, parts)
    await mark_chunks(app, file_id, verified)
    return verified


async def resume_upload(app: web.Application, file_id: str) -> None:
    """Bring chunk statuses up to date; restart the multipart upload if the store dropped it."""
    async with file_lock(file_id):
        row = await get_file(app, file_id)
        if row is None or row["status"] != "uploading":
            return
        if await refresh_from_store(app, file_id) is not None:
            return
        if await _settle_from_object(app, row):
            return
        # The store forgot the upload (aborted by a lifecycle rule, say): start over.
        upload_id = await app[appkeys.STORE].start_multipart(content_key(row["fingerprint"]))
        async with app[appkeys.DB].transaction() as conn:
            await conn.execute(
                "UPDATE files SET upload_id = ?, updated_at = ? WHERE id = ? AND status = 'uploading'",
                (upload_id, utcnow(), file_id),
            )
            await conn.execute("UPDATE chunks SET status = 'pending', etag = NULL WHERE file_id = ?", (file_id,))
        log.info("upload_restarted", file_id=file_id, reason="the store no longer has the multipart upload")


async def _object_matches(app: web.Application, row) -> bool:
    stored = await app[appkeys.STORE].stat(content_key(row["fingerprint"]))
    return (
        stored is not None
        and stored.size == row["file_size"]
        and stored.sha256_checksum == composite_checksum(row["fingerprint"], row["total_chunks"])
    )


async def _settle_from_object(app: web.Application, row) -> bool:
    """The multipart upload is gone (we completed it, then crashed before recording it).

    The object alone proves nothing about *this* user: another user's upload
    may have written it. Only when the store had listed every chunk of this
    upload (the user sent all the bytes) does a verified object settle it.
    """
    pending = await app[appkeys.DB].fetchval(
        "SELECT count(*) FROM chunks WHERE file_id = ? AND status != 'uploaded'", (row["id"],)
    )
    if pending == 0 and await _object_matches(app, row):
        await mark_uploaded(app, row["id"])
        return True
    return False


async def mark_uploaded(app: web.Application, file_id: str) -> bool:
    now = utcnow()
    async with app[appkeys.DB].transaction() as conn:
        cursor = await conn.execute(
            """UPDATE files SET status = 'uploaded', upload_id = NULL, completed_at = ?, updated_at = ?
               WHERE id = ? AND status = 'uploading'""",
            (now, now, file_id),
        )
        if cursor.rowcount:
            await conn.execute("UPDATE chunks SET status = 'uploaded' WHERE file_id = ?", (file_id,))
    if cursor.rowcount:
        log.info("file_uploaded", file_id=file_id)
        await on_file_changed(app, file_id)
    return bool(cursor.rowcount)


async def mark_failed(app: web.Application, file_id: str, reason: str) -> bool:
    now = utcnow()
    changed = await app[appkeys.DB].execute(
        """UPDATE files SET status = 'failed', failure_reason = ?, upload_id = NULL, updated_at = ?
           WHERE id = ? AND status = 'uploading'""",
        (reason, now, file_id),
    )
    if changed:
        log.warning("file_failed", file_id=file_id, reason=reason)
        await on_file_changed(app, file_id)
    return bool(changed)


async def on_file_changed(app: web.Application, file_id: str) -> None:
    """Call after committing any change to a file's row: drops its cached metadata and permissions.

    gateway/permissions.py caches the row and chunks of files in a final state
    and who may read every file; it never caches a missing file, so a new
    upload needs no call, but every status change (and any later change to a
    final row) does.
    """
    await permissions.invalidate(app, file_id)


class MissingChunks(ApiError):
    def __init__(self, missing: list[int]):
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        super().__init__(
            409,
            "chunks_missing",
            f"the store does not hold {len(missing)} chunk(s) yet: {shown}; upload them, then complete again",
            missing=missing,
        )


async def complete_upload(app: web.Application, file_id: str, *, strict: bool = True) -> str:
    """Finish the upload once the store holds every chunk; return the file's status.

    ``strict`` raises MissingChunks when chunks are missing (the client asked);
    otherwise (events, reconciliation) it returns quietly.
    """
    store = app[appkeys.STORE]
    async with file_lock(file_id):
        row = await get_file(app, file_id)
        if row is None or row["status"] != "uploading":
            return row["status"] if row else "missing"
        key = content_key(row["fingerprint"])
        chunks = await get_chunks(app, file_id)
        try:
            parts = await store.list_parts(key, row["upload_id"])
        except UploadNotFound:
            if await _settle_from_object(app, row):
                return "uploaded"
            if strict:
                raise ApiError(409, "upload_gone", "the store no longer has this upload; start it again with POST /dropbox/v1/files")
            return "uploading"
        verified = _verified_parts(chunks, parts)
        await mark_chunks(app, file_id, verified)
        missing = [c["idx"] for c in chunks if c["idx"] not in verified]
        if missing:
            if strict:
                raise MissingChunks(missing)
            return "uploading"
        completed = [
            CompletedPart(c["idx"] + 1, verified[c["idx"]].etag, hex_to_b64(c["fingerprint"])) for c in chunks
        ]
        try:
            await store.complete_multipart(key, row["upload_id"], completed)
        except ChecksumMismatch as exc:
            return await _fail_and_discard(app, row, f"the store's bytes do not match the chunk fingerprints ({exc})")
        except UploadNotFound:
            pass  # completed concurrently (another gateway process): the object check below decides
        if await _object_matches(app, row):
            await mark_uploaded(app, file_id)
            return "uploaded"
        return await _fail_and_discard(app, row, "the stored object's checksum does not match the file fingerprint")


async def _fail_and_discard(app: web.Application, row, reason: str) -> str:
    """Mark the file failed and remove its partial data, never content another file relies on."""
    store = app[appkeys.STORE]
    await store.abort_multipart(content_key(row["fingerprint"]), row["upload_id"])
    await mark_failed(app, row["id"], reason)
    still_needed = await app[appkeys.DB].fetchval(
        "SELECT 1 FROM files WHERE fingerprint = ? AND status = 'uploaded' LIMIT 1", (row["fingerprint"],)
    )
    if not still_needed and not await _object_matches(app, row):
        await store.delete(content_key(row["fingerprint"]))
    return "failed"


async def abandon_upload(app: web.Application, file_id: str) -> bool:
    """Abort an upload nobody finished; an upload that completed is never touched."""
    async with file_lock(file_id):
        row = await get_file(app, file_id)
        if row is None or row["status"] != "uploading":
            return False
        if await _settle_from_object(app, row):
            return False
        await app[appkeys.STORE].abort_multipart(content_key(row["fingerprint"]), row["upload_id"])
        return await mark_failed(app, file_id, "abandoned: no progress for too long; upload it again")
