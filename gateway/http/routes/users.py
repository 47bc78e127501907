"""Sign-up, log-in (access tokens) and the caller's own profile."""
from __future__ import annotations

import re

from aiohttp import web

from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.middlewares import public
from gateway.http.parsing import read_json, require_str

routes = web.RouteTableDef()

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


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
    user = await request.app[appkeys.CORE].accounts.sign_up(username, email, password)
    return web.json_response(user, status=201)


@routes.post("/dropbox/v1/tokens")
@public
async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = require_str(body, "username", max_length=32)
    password = require_str(body, "password", max_length=1024)
    token = await request.app[appkeys.CORE].accounts.log_in(username, password)
    return web.json_response({"access_token": token.token, "token_type": "Bearer", "expires_in": token.expires_in})


@routes.get("/dropbox/v1/users/me")
async def me(request: web.Request) -> web.Response:
    """The caller's profile, with their storage quota (null: unlimited) and the bytes they use."""
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    return web.json_response({**await core.accounts.profile(user_id), **await core.limits.usage(user_id)})
