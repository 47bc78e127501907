"""Sign-up, log-in and log-out (access tokens), the caller's own profile and password."""
from __future__ import annotations

import re

from aiohttp import web

from gateway.core.tokens import AccessToken
from gateway.http import appkeys
from gateway.http.client_address import client_address
from gateway.http.errors import bad_request
from gateway.http.middlewares import public
from gateway.http.parsing import read_json, require_str

routes = web.RouteTableDef()

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
# No control characters and no lone surrogates (not text: neither database can store them).
_EMAIL_CHAR = r"[^@\s\x00-\x1f\x7f\ud800-\udfff]"
EMAIL = re.compile(rf"^{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}+$")
MIN_PASSWORD = 8


def require_new_password(password: str, field: str) -> None:
    """The rules a new password must meet, at sign-up and at a change: 400 naming ``field`` otherwise."""
    if len(password) < MIN_PASSWORD:
        raise bad_request(f"`{field}` must be at least {MIN_PASSWORD} characters", "invalid_field", field=field)


def token_answer(token: AccessToken) -> web.Response:
    return web.json_response({"access_token": token.token, "token_type": "Bearer", "expires_in": token.expires_in})


def client(request: web.Request) -> str:
    """The client's address, which login and sign-up throttling count by."""
    return client_address(request, request.app[appkeys.CONFIG].trusted_proxy_networks)


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
    # Not the contract's: the code of an invitation, where sign-up takes invitations only (GATEWAY_SIGNUP=invite).
    invitation = require_str(body, "invitation", max_length=256, optional=True)
    require_new_password(password, "password")
    user = await request.app[appkeys.CORE].accounts.sign_up(username, email, password, client(request), invitation)
    return web.json_response(user, status=201)


@routes.post("/dropbox/v1/tokens")
@public
async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = require_str(body, "username", max_length=32)
    password = require_str(body, "password", max_length=1024)
    token = await request.app[appkeys.CORE].accounts.log_in(username, password, client(request))
    return token_answer(token)


@routes.get("/dropbox/v1/users/me")
async def me(request: web.Request) -> web.Response:
    """The caller's profile, with their storage quota (null: unlimited) and the bytes they use."""
    core = request.app[appkeys.CORE]
    user_id = request[appkeys.USER].user_id
    return web.json_response({**await core.accounts.profile(user_id), **await core.limits.usage(user_id)})


@routes.delete("/dropbox/v1/tokens/current")
async def log_out(request: web.Request) -> web.Response:
    await request.app[appkeys.CORE].sessions.log_out(request[appkeys.USER])
    return web.Response(status=204)


@routes.post("/dropbox/v1/tokens/current/renew")
async def renew_token(request: web.Request) -> web.Response:
    """A new token of the same session, for a client still using it (gateway/core/sessions.py)."""
    return token_answer(await request.app[appkeys.CORE].sessions.renew(request[appkeys.USER]))


@routes.put("/dropbox/v1/users/me/password")
async def change_password(request: web.Request) -> web.Response:
    body = await read_json(request)
    current = require_str(body, "current_password", max_length=1024)
    new = require_str(body, "new_password", max_length=1024)
    require_new_password(new, "new_password")
    await request.app[appkeys.CORE].accounts.change_password(request[appkeys.USER], current, new, client(request))
    return web.Response(status=204)
