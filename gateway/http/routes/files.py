"""Files: one file object, the caller's files page by page, the download redirect, deleting."""
from __future__ import annotations

from aiohttp import web

from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.parsing import FILE_ID, own_cursor, page_limit
from gateway.http.views import file_json, own_cursor_of, page_response, with_thumbnails
from protocol.fingerprints import is_fingerprint

routes = web.RouteTableDef()


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
    fingerprint = request.query.get("fingerprint")
    if fingerprint is not None and not is_fingerprint(fingerprint):
        raise bad_request("`fingerprint` must be a lowercase hex SHA-256", "invalid_fingerprint", field="fingerprint")
    before_seq = own_cursor(request.query)
    core = request.app[appkeys.CORE]
    page = await core.files.own(request[appkeys.USER].user_id, limit, before_seq=before_seq, fingerprint=fingerprint)
    return await page_response(core, page, own_cursor_of)


@routes.get(f"/dropbox/v1/files/{FILE_ID}")
async def get_file(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    row, chunks = await core.files.get(request[appkeys.USER].user_id, request.match_info["file_id"])
    return web.json_response(await with_thumbnails(core, file_json(row, chunks, core.files.download(row))))


@routes.get(f"/dropbox/v1/files/{FILE_ID}/content")
async def content(request: web.Request) -> web.Response:
    core = request.app[appkeys.CORE]
    raise web.HTTPFound(await core.files.content_url(request[appkeys.USER].user_id, request.match_info["file_id"]))


@routes.delete(f"/dropbox/v1/files/{FILE_ID}")
async def delete_file(request: web.Request) -> web.Response:
    """204; owner only, 404 for everyone else whether or not the file exists."""
    await request.app[appkeys.CORE].tree.delete_file(request[appkeys.USER].user_id, request.match_info["file_id"])
    return web.Response(status=204)
