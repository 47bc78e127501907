"""Zips (gateway/core/zips.py): ``POST /dropbox/v1/zips`` makes a signed zip URL for folders and files the
caller may read; ``GET /dropbox/v1/zips/{ticket}`` streams the zip, built as it is sent.

The GET takes no access token, so a browser downloads by navigating to the URL (a download cannot
carry an ``Authorization`` header); the URL itself is the credential, short-lived like a CDN
download URL. Its answer is never buffered by a proxy in front (``X-Accel-Buffering: no`` for
nginx): a buffering proxy would write the zip to a temporary file of its size.
"""
from __future__ import annotations

import contextlib
import time

import structlog
from aiohttp import web

from gateway.core.downloads import ascii_fallback, rfc5987_name
from gateway.core.zips import MAX_ENTRIES, is_entry_id
from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.middlewares import public
from gateway.http.parsing import read_json
from storage import StoreError

routes = web.RouteTableDef()
log = structlog.get_logger("gateway.zips")


def zip_url(request: web.Request, ticket: str) -> str:
    return f"{request.app[appkeys.CONFIG].public_url.rstrip('/')}/dropbox/v1/zips/{ticket}"


@routes.post("/dropbox/v1/zips")
async def make_zip(request: web.Request) -> web.Response:
    """``{entries: [folder or file id, ...]}`` -> 200 ``{url, expires_at, name, size, files}``."""
    body = await read_json(request)
    entries = body.get("entries")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES or not all(map(is_entry_id, entries)):
        raise bad_request(f"`entries` must be a list of 1 to {MAX_ENTRIES} folder or file ids (or `root`)",
                          "invalid_field", field="entries")
    zips = request.app[appkeys.CORE].zips
    user_id = request[appkeys.USER].user_id
    archive = await zips.archive(user_id, entries)
    ticket, expires_at = zips.ticket(user_id, list(dict.fromkeys(entries)))
    return web.json_response({"url": zip_url(request, ticket), "expires_at": expires_at, "name": archive.name,
                              "size": archive.size, "files": archive.files})


@routes.get("/dropbox/v1/zips/{ticket}")
@public
async def download_zip(request: web.Request) -> web.StreamResponse:
    """The zip, as the ticket's user may read its entries now; 403 for an altered or expired URL."""
    zips = request.app[appkeys.CORE].zips
    user_id, entries = zips.redeem(request.match_info["ticket"])
    archive = await zips.archive(user_id, entries)
    response = web.StreamResponse(headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f"attachment; filename=\"{ascii_fallback(archive.name)}\"; "
                               f"filename*=UTF-8''{rfc5987_name(archive.name)}",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    response.content_length = archive.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    started, sent = time.monotonic(), 0
    try:
        async with contextlib.aclosing(zips.stream(archive)) as pieces:
            async for piece in pieces:
                await response.write(piece)
                sent += len(piece)
    except (ConnectionError, StoreError, RuntimeError) as exc:
        # Too late for an error body: the connection is cut, and the client sees a download short of
        # its Content-Length (never a zip that looks whole).
        log.warning("zip_cut_short", user_id=user_id, sent=sent, size=archive.size, error=str(exc),
                    error_type=type(exc).__name__)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    log.info("zip_sent", user_id=user_id, files=archive.files, size=archive.size,
             seconds=round(time.monotonic() - started, 3))
    return response
