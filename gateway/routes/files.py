"""Files: one file object, the caller's files page by page, the download redirect, deleting."""
from __future__ import annotations

import structlog
from aiohttp import web

from gateway import appkeys, permissions
from gateway.downloads import download_url
from gateway.errors import bad_request, conflict, not_found
from gateway.files import (
    FILE_SELECT,
    chunks_of,
    decode_cursor,
    encode_cursor,
    file_json,
    page_limit,
    readable_file,
    readable_file_and_chunks,
)
from protocol.fingerprints import EMPTY_FINGERPRINT, is_fingerprint
from gateway.content import content_key
from gateway.uploads import file_lock, refresh_from_store
from storage import StoreError

log = structlog.get_logger("gateway.files")

routes = web.RouteTableDef()


def download_for(app: web.Application, row) -> tuple[str, int] | None:
    if row["status"] != "uploaded":
        return None
    return download_url(app[appkeys.CONFIG], row["fingerprint"], row["file_name"], row["file_type"])


async def file_response(request: web.Request, file_id: str, status: int = 200) -> web.Response:
    row, chunks = await readable_file_and_chunks(request.app, request[appkeys.USER].user_id, file_id)
    return web.json_response(file_json(row, chunks, download_for(request.app, row)), status=status)


async def page_response(app: web.Application, rows: list, limit: int, cursor_of) -> web.Response:
    """``{files, next_cursor}`` from up to ``limit + 1`` rows; the chunks of the page in one query."""
    more = len(rows) > limit
    rows = rows[:limit]
    chunks = await chunks_of(app, [row["id"] for row in rows])
    files = [file_json(row, chunks[row["id"]], download_for(app, row)) for row in rows]
    next_cursor = cursor_of(rows[-1]) if more else None
    return web.json_response({"files": files, "next_cursor": next_cursor})


@routes.get("/dropbox/v1/files")
async def list_files(request: web.Request) -> web.Response:
    """The caller's own files, newest first, a page at a time.

    ``limit`` (1..1000, default 100) and ``cursor`` (the previous page's
    ``next_cursor``, opaque; null on the last page). Keyset pagination on
    ``files.seq`` through the files_by_owner (owner_id, seq DESC) index, so
    every page costs the same however many files the user has; files added
    while paging appear on no later page, and none is skipped or repeated.
    ``?fingerprint=`` keeps the files with that fingerprint (resuming an upload).
    """
    limit = page_limit(request.query)
    params: list = [request[appkeys.USER].user_id]
    where = "f.owner_id = ?"
    fingerprint = request.query.get("fingerprint")
    if fingerprint is not None:
        if not is_fingerprint(fingerprint):
            raise bad_request("`fingerprint` must be a lowercase hex SHA-256", "invalid_fingerprint", field="fingerprint")
        where += " AND f.fingerprint = ?"
        params.append(fingerprint)
    cursor = request.query.get("cursor")
    if cursor is not None:
        position = decode_cursor(cursor, "own")
        if not position.isascii() or not position.isdigit():
            raise bad_request("`cursor` is damaged; pass `next_cursor` unchanged", "invalid_cursor", field="cursor")
        where += " AND f.seq < ?"
        params.append(int(position))
    rows = await request.app[appkeys.DB].fetchall(
        f"{FILE_SELECT} WHERE {where} ORDER BY f.seq DESC LIMIT ?", [*params, limit + 1]
    )
    return await page_response(request.app, rows, limit, lambda row: encode_cursor("own", row["seq"]))


@routes.get("/dropbox/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    if not request.app[appkeys.CONFIG].store_part_events:
        # No per-part events from this store (MinIO): progress comes from its part list.
        row = await readable_file(request.app, request[appkeys.USER].user_id, file_id)
        if row["status"] == "uploading":
            await refresh_from_store(request.app, file_id)
    return await file_response(request, file_id)


@routes.get("/dropbox/v1/files/{file_id}/content")
async def content(request: web.Request) -> web.Response:
    row = await readable_file(request.app, request[appkeys.USER].user_id, request.match_info["file_id"])
    download = download_for(request.app, row)
    if download is None:
        raise conflict(f"the file is {row['status']}, not uploaded; nothing to download yet", "not_uploaded")
    raise web.HTTPFound(download[0])


@routes.delete("/dropbox/v1/files/{file_id}")
async def delete_file_route(request: web.Request) -> web.Response:
    """204; owner only, 404 for everyone else whether or not the file exists."""
    await delete_file(request.app, request[appkeys.USER].user_id, request.match_info["file_id"])
    return web.Response(status=204)


async def delete_file(app: web.Application, user_id: int, file_id: str) -> None:
    """Delete the user's file; its chunks and shares go with it (ON DELETE CASCADE).

    The content object ``content/<fingerprint>`` is shared by every file with
    that fingerprint (deduplication), so it is removed only when no file of
    anyone refers to it any more: no row with the fingerprint in ``uploading``
    (an upload under way will write the object) or ``uploaded`` (a file serves
    it). ``failed`` rows keep nothing.
    """
    db = app[appkeys.DB]
    store = app[appkeys.STORE]
    # The file lock waits for a complete/resume of this very upload running in this process,
    # so it cannot finish (and write the object) after its row is gone.
    async with file_lock(file_id):
        async with db.transaction() as conn:
            cursor = await conn.execute(
                "SELECT owner_id, fingerprint, status, upload_id FROM files WHERE id = ?", (file_id,)
            )
            row = await cursor.fetchone()
            if row is None or row["owner_id"] != user_id:
                raise not_found(f"no file {file_id!r} of yours")
            await conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
            # Decided in the transaction that deletes the row: no other write can slip in between.
            cursor = await conn.execute(
                "SELECT 1 FROM files WHERE fingerprint = ? AND status IN ('uploading', 'uploaded') LIMIT 1",
                (row["fingerprint"],),
            )
            still_referenced = await cursor.fetchone() is not None
        await permissions.invalidate(app, file_id)
        log.info("file_deleted", file_id=file_id, status=row["status"], content_still_referenced=still_referenced)
        key = content_key(row["fingerprint"])
        if row["status"] == "uploading" and row["upload_id"]:
            # Only this row's own multipart upload: upload ids are unique per row (files.upload_id
            # UNIQUE) and each upload of the same content, by anyone, has a multipart upload of its
            # own on the shared key; aborting one leaves the others and the finished object alone.
            try:
                await store.abort_multipart(key, row["upload_id"])
            except StoreError as exc:
                log.warning("abort_after_delete_failed", file_id=file_id, error=str(exc))
    if not still_referenced:
        await drop_unreferenced_content(app, row["fingerprint"])


async def drop_unreferenced_content(app: web.Application, fingerprint: str) -> bool:
    """Remove ``content/<fingerprint>`` from the store if still no file refers to it.

    Why a second check, under the write lock, and the store delete inside it.
    The delete transaction found no reference and committed; the object is
    removed after that commit (never before: a failed commit would leave a row
    without content). Between the commit and the store delete, a new upload of
    the same content may start:

    * A chunked upload (anyone's) starts a multipart upload, then inserts its
      ``uploading`` row. If that insert committed before this check, the row is
      seen and the object kept. Otherwise the insert waits for this
      transaction (one writer at a time, across processes too, BEGIN
      IMMEDIATE), so the upload's row, and hence its completion (which needs
      the row), comes after the store delete: CompleteMultipartUpload then
      writes the object anew from the upload's own parts, which deleting the
      object never touches. If the delete ran after the commit without this
      lock, a quick upload could complete in between and lose its object.
    * The empty file's object is never removed: it costs nothing, and
      ``store_empty_content`` checks for it before inserting its row, a gap
      this lock cannot cover.
    * Deduplication: a same-user copy is inserted only if, in the inserting
      transaction, the user still has an ``uploaded`` file with the
      fingerprint (``create_file(copy_of_own_content=True)``), so it either
      lands before this check (and keeps the object) or sees the copy gone
      and uploads the bytes.

    Returns whether the object was removed. A store failure leaves an orphaned
    object (wasted space, never lost data) and is logged.
    """
    if fingerprint == EMPTY_FINGERPRINT:
        return False
    key = content_key(fingerprint)
    try:
        async with app[appkeys.DB].transaction() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM files WHERE fingerprint = ? AND status IN ('uploading', 'uploaded') LIMIT 1",
                (fingerprint,),
            )
            if await cursor.fetchone() is not None:
                return False
            await app[appkeys.STORE].delete(key)
    except StoreError as exc:
        log.warning("content_delete_failed", key=key, error=str(exc))
        return False
    log.info("content_deleted", key=key)
    return True
