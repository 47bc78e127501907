"""The change journal (contract v1.2, Changes): ``GET /dropbox/v1/changes`` and ``/changes/wait``.
What the answers mean, and how the cursors are checked: gateway/core/changes.py."""
from __future__ import annotations

import re

from aiohttp import web

from gateway.core.changes import CURSOR, Deleted
from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.parsing import page_limit
from gateway.http.views import entry_json

routes = web.RouteTableDef()

DEFAULT_WAIT = 30  # seconds (the contract's default)
MAX_WAIT = 120  # seconds (the contract's most)


def cursor_of(request: web.Request, *, required: bool) -> str | None:
    """``?cursor=`` in the form the OpenAPI document states; the core checks whose it is."""
    cursor = request.query.get("cursor")
    if cursor is None and required:
        raise bad_request("`cursor` (from GET /dropbox/v1/changes) is required", "invalid_cursor", field="cursor")
    if cursor is not None and not CURSOR.match(cursor):
        raise bad_request("`cursor` is not a cursor of your changes", "invalid_cursor", field="cursor")
    return cursor


def wait_timeout(request: web.Request) -> int:
    raw = request.query.get("timeout")
    if raw is None:
        return DEFAULT_WAIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_WAIT:
        raise bad_request(f"`timeout` must be an integer from 1 to {MAX_WAIT} (seconds)", "invalid_field",
                          field="timeout")
    return int(raw)


@routes.get("/dropbox/v1/changes")
async def changes(request: web.Request) -> web.Response:
    """Without ``cursor``: the caller's tree, parents first, in pages; with it: every change since."""
    core = request.app[appkeys.CORE]
    page = await core.changes.page(request[appkeys.USER].user_id, cursor_of(request, required=False),
                                   page_limit(request.query))
    body = [{"type": "deleted", "id": item.node_id, "path": item.path} if isinstance(item, Deleted)
            else entry_json(core, item) for item in page.items]
    return web.json_response({"changes": body, "cursor": page.cursor, "has_more": page.has_more})


@routes.get("/dropbox/v1/changes/wait")
async def wait(request: web.Request) -> web.Response:
    """``{changes: true}`` as soon as something changed after ``cursor``; ``{changes: false}`` after ``timeout``."""
    cursor = cursor_of(request, required=True)
    assert cursor is not None
    timeout = wait_timeout(request)
    changed = await request.app[appkeys.CORE].changes.wait(request[appkeys.USER].user_id, cursor, timeout)
    return web.json_response({"changes": changed})
