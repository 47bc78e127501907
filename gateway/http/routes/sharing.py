"""Sharing: the owner shares a file with users by name, unshares it; files shared with me.

``/dropbox/v1/files/shared`` and ``/share`` are never taken for a file id: file
routes match only ids (parsing.FILE_ID), whatever the order they are added in.
"""
from __future__ import annotations

from aiohttp import web

from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.parsing import FILE_ID, page_limit, read_json, shared_cursor
from gateway.http.views import page_response, shared_cursor_of

routes = web.RouteTableDef()

# An unknown username is named in the answer: a call must not test a thousand guesses at once
# (gateway/core/sharing.py throttles the calls too).
MAX_USERS_PER_SHARE = 50


def parse_share(body: dict) -> tuple[str, list[str]]:
    # Any string names a file of the caller's or not (404), "" too: as an id in a path that is no
    # file id answers, and as the contract's "owner only" says. Only a non-string is malformed.
    file_id = body.get("file_id")
    if not isinstance(file_id, str) or len(file_id) > 64:
        raise bad_request("`file_id` must be a file id (a string)", "invalid_field", field="file_id")
    users = body.get("users")
    if (
        not isinstance(users, list)
        or not users
        or not all(isinstance(name, str) and name.strip() and len(name) <= 64 for name in users)
    ):
        raise bad_request("`users` must be a non-empty list of usernames", "invalid_field", field="users")
    users = list(dict.fromkeys(users))
    if len(users) > MAX_USERS_PER_SHARE:
        raise bad_request(
            f"`users` lists at most {MAX_USERS_PER_SHARE} usernames per call; share with more in several calls",
            "too_many_users",
            field="users",
        )
    return file_id, users


@routes.post("/dropbox/v1/files/share")
async def share(request: web.Request) -> web.Response:
    """Share a file with users, by username; owner only (404 for anyone else).

    All or nothing, in one transaction: an unknown username is a 404 naming
    every unknown one (``error.users``) and shares with nobody; the owner's own
    name is a 400 (``cannot_share_with_yourself``). Sharing again with a user it
    is already shared with changes nothing (idempotent). The answer lists
    everyone the file is shared with now, not only the new names.
    """
    file_id, names = parse_share(await read_json(request))
    shared_with = await request.app[appkeys.CORE].sharing.share(request[appkeys.USER].user_id, file_id, names)
    return web.json_response({"file_id": file_id, "shared_with": shared_with})


@routes.get(f"/dropbox/v1/files/{FILE_ID}/shares")
async def list_shares(request: web.Request) -> web.Response:
    """Who has access to a file now: ``{file_id, shared_with}``, as sharing answers it; owner only (404 otherwise)."""
    file_id = request.match_info["file_id"]
    shared_with = await request.app[appkeys.CORE].sharing.shared_with(request[appkeys.USER].user_id, file_id)
    return web.json_response({"file_id": file_id, "shared_with": shared_with})


@routes.delete(f"/dropbox/v1/files/{FILE_ID}/shares/{{username}}")
async def unshare(request: web.Request) -> web.Response:
    """Stop sharing a file with one user; owner only (404 for anyone else).

    204 when the file is no longer shared with that user, including when it
    never was (idempotent, so a retried request succeeds too). An unknown
    username is a 404 naming it (``unknown_users``), as for sharing. The user
    loses access at once: the permission cache is invalidated before the 204.
    """
    await request.app[appkeys.CORE].sharing.unshare(
        request[appkeys.USER].user_id, request.match_info["file_id"], request.match_info["username"]
    )
    return web.Response(status=204)


@routes.get("/dropbox/v1/files/shared")
async def list_shared(request: web.Request) -> web.Response:
    """The files shared with the caller, newest share first, a page at a time: ``{files, next_cursor}``.

    ``limit`` (1..1000, default 100) and ``cursor`` as for ``GET /dropbox/v1/files``.
    Keyset pagination on (shares.created_at, file_id) through the
    shares_by_user_newest index: every page is one index range scan, however
    many files are shared with the caller, and paging neither repeats nor skips.
    """
    limit = page_limit(request.query)
    before = shared_cursor(request.query)
    core = request.app[appkeys.CORE]
    page = await core.files.shared_with_me(request[appkeys.USER].user_id, limit, before=before)
    return await page_response(core, page, shared_cursor_of)
