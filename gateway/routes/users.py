"""Sign-up, log-in (access tokens) and the caller's own profile."""
from __future__ import annotations

import re
import sqlite3

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.db import utcnow
from gateway.errors import ApiError, bad_request, conflict, read_json, require_str, unauthorized
from gateway.middlewares import public
from gateway.passwords import hash_password, verify_password
from gateway.tokens import issue_token

routes = web.RouteTableDef()
log = structlog.get_logger("gateway.users")

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


def user_json(row) -> dict:
    return {"user_id": row["id"], "username": row["username"], "email": row["email"]}


@routes.post("/dropbox/v1/users")
@public
async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = require_str(body, "username", max_length=32)
    email = require_str(body, "email", max_length=254)
    password = require_str(body, "password", max_length=1024)
    if not USERNAME.match(username):
        raise bad_request(
            "`username` must be 3-32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
            "invalid_field",
            field="username",
        )
    if not EMAIL.match(email):
        raise bad_request("`email` is not an email address", "invalid_field", field="email")
    if len(password) < MIN_PASSWORD:
        raise bad_request(f"`password` must be at least {MIN_PASSWORD} characters", "invalid_field", field="password")
    db = request.app[appkeys.DB]
    password_hash = await hash_password(password)
    try:
        async with db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (username, email, password_hash, utcnow()),
            )
            user_id = cursor.lastrowid
    except sqlite3.IntegrityError as exc:
        raise conflict(f"the username {username!r} is taken", "username_taken") from exc
    log.info("user_created", new_user_id=user_id, username=username)
    return web.json_response({"user_id": user_id, "username": username, "email": email}, status=201)


@routes.post("/dropbox/v1/tokens")
@public
async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = require_str(body, "username", max_length=32)
    password = require_str(body, "password", max_length=1024)
    config = request.app[appkeys.CONFIG]
    row = await request.app[appkeys.DB].fetchone(
        "SELECT id, username, password_hash FROM users WHERE username = ?", (username,)
    )
    if not await verify_password(password, row["password_hash"] if row else None):
        log.info("login_failed", username=username)
        raise unauthorized("wrong username or password", "invalid_credentials")
    token = issue_token(config.jwt_secret, row["id"], row["username"], config.token_ttl)
    return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": config.token_ttl})


@routes.get("/dropbox/v1/users/me")
async def me(request: web.Request) -> web.Response:
    row = await request.app[appkeys.DB].fetchone(
        "SELECT id, username, email FROM users WHERE id = ?", (request[appkeys.USER].user_id,)
    )
    if row is None:
        raise ApiError(401, "unknown_user", "the token's user no longer exists")
    return web.json_response(user_json(row))
