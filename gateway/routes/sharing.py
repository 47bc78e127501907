"""Sharing: the owner shares a file with users by name, unshares it; files shared with me.

Registered before gateway/routes/files.py so that ``/dropbox/v1/files/shared``
is not taken for a file id.
"""
from __future__ import annotations

import json

import structlog
from aiohttp import web

from gateway import appkeys, permissions
from gateway.db import utcnow
from gateway.errors import ApiError, bad_request, not_found, read_json, require_str
from gateway.files import FILE_COLUMNS, decode_cursor, encode_cursor, page_limit
from gateway.routes.files import page_response

routes = web.RouteTableDef()
log = structlog.get_logger("gateway.sharing")

MAX_USERS_PER_SHARE = 1000


def unknown_users(names: list[str]) -> ApiError:
    shown = ", ".join(repr(name) for name in names[:20]) + (" ..." if len(names) > 20 else "")
    return not_found(
        f"no user named {shown}; the file was not shared with anyone", "unknown_users", users=names
    )


async def _owned_in_transaction(conn, user_id: int, file_id: str) -> None:
    """404 unless ``user_id`` owns the file, read inside the write transaction (authoritative)."""
    cursor = await conn.execute("SELECT owner_id FROM files WHERE id = ?", (file_id,))
    row = await cursor.fetchone()
    if row is None or row["owner_id"] != user_id:
        raise not_found(f"no file {file_id!r} of yours")


async def _shared_with(conn, file_id: str) -> list[str]:
    cursor = await conn.execute(
        """SELECT u.username FROM shares s JOIN users u ON u.id = s.user_id
           WHERE s.file_id = ? ORDER BY u.username COLLATE NOCASE""",
        (file_id,),
    )
    return [row["username"] for row in await cursor.fetchall()]


def parse_share(body: dict) -> tuple[str, list[str]]:
    file_id = require_str(body, "file_id", max_length=64)
    users = body.get("users")
    if (
        not isinstance(users, list)
        or not users
        or not all(isinstance(name, str) and name.strip() and len(name) <= 64 for name in users)
    ):
        raise bad_request("`users` must be a non-empty list of usernames", "invalid_field", field="users")
    if len(users) > MAX_USERS_PER_SHARE:
        raise bad_request(f"`users` lists at most {MAX_USERS_PER_SHARE} usernames", "invalid_field", field="users")
    return file_id, list(dict.fromkeys(users))


@routes.post("/dropbox/v1/files/share")
async def share(request: web.Request) -> web.Response:
    """Share a file with users, by username; owner only (404 for anyone else).

    All or nothing, in one transaction: an unknown username is a 404 naming
    every unknown one (``error.users``) and shares with nobody; the owner's own
    name is a 400 (``cannot_share_with_yourself``). Sharing again with a user it
    is already shared with changes nothing (idempotent). The answer lists
    everyone the file is shared with now, not only the new names.
    """
    user = request[appkeys.USER]
    file_id, names = parse_share(await read_json(request))
    async with request.app[appkeys.DB].transaction() as conn:
        await _owned_in_transaction(conn, user.user_id, file_id)
        # Usernames compare without case (users.username is COLLATE NOCASE), exactly as logins do.
        cursor = await conn.execute(
            """SELECT w.value AS name, u.id AS user_id FROM json_each(?) w
               LEFT JOIN users u ON u.username = w.value COLLATE NOCASE ORDER BY w.key""",
            (json.dumps(names),),
        )
        resolved = await cursor.fetchall()
        missing = [row["name"] for row in resolved if row["user_id"] is None]
        if missing:
            raise unknown_users(missing)
        user_ids = sorted({row["user_id"] for row in resolved})
        if user.user_id in user_ids:
            raise bad_request(
                "you cannot share a file with yourself: you own it", "cannot_share_with_yourself", field="users"
            )
        await conn.execute(
            """INSERT OR IGNORE INTO shares (file_id, user_id, created_at)
               SELECT ?, value, ? FROM json_each(?)""",
            (file_id, utcnow(), json.dumps(user_ids)),
        )
        shared_with = await _shared_with(conn, file_id)
    await permissions.invalidate(request.app, file_id)
    log.info("file_shared", file_id=file_id, users=len(user_ids), shared_with=len(shared_with))
    return web.json_response({"file_id": file_id, "shared_with": shared_with})


@routes.delete("/dropbox/v1/files/{file_id}/shares/{username}")
async def unshare(request: web.Request) -> web.Response:
    """Stop sharing a file with one user; owner only (404 for anyone else).

    204 when the file is no longer shared with that user, including when it
    never was (idempotent, so a retried request succeeds too). An unknown
    username is a 404 naming it (``unknown_users``), as for sharing. The user
    loses access at once: the permission cache is invalidated before the 204.
    """
    user = request[appkeys.USER]
    file_id = request.match_info["file_id"]
    username = request.match_info["username"]
    async with request.app[appkeys.DB].transaction() as conn:
        await _owned_in_transaction(conn, user.user_id, file_id)
        cursor = await conn.execute("SELECT id FROM users WHERE username = ?", (username,))
        target = await cursor.fetchone()
        if target is None:
            raise unknown_users([username])
        cursor = await conn.execute(
            "DELETE FROM shares WHERE file_id = ? AND user_id = ?", (file_id, target["id"])
        )
        removed = cursor.rowcount
    await permissions.invalidate(request.app, file_id)
    log.info("file_unshared", file_id=file_id, user_id=target["id"], removed=removed)
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
    params: list = [request[appkeys.USER].user_id]
    where = "s.user_id = ?"
    cursor = request.query.get("cursor")
    if cursor is not None:
        shared_at, _, file_id = decode_cursor(cursor, "shared").partition("|")
        if not file_id:
            raise bad_request("`cursor` is damaged; pass `next_cursor` unchanged", "invalid_cursor", field="cursor")
        where += " AND (s.created_at, s.file_id) < (?, ?)"
        params += [shared_at, file_id]
    rows = await request.app[appkeys.DB].fetchall(
        f"""SELECT {FILE_COLUMNS}, s.created_at AS shared_at FROM shares s
            JOIN files f ON f.id = s.file_id JOIN users u ON u.id = f.owner_id
            WHERE {where} ORDER BY s.created_at DESC, s.file_id DESC LIMIT ?""",
        [*params, limit + 1],
    )
    return await page_response(
        request.app, rows, limit, lambda row: encode_cursor("shared", f"{row['shared_at']}|{row['id']}")
    )
