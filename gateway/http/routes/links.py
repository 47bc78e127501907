"""Shared links: the owner creates, lists and revokes them; anyone with a token reads and downloads.

``/dropbox/v1/links/{link}`` is one path for two calls of the contract:
``GET`` takes a link's token (``GET /dropbox/v1/links/{token}``, public),
``DELETE`` a link id (``DELETE /dropbox/v1/links/{link_id}``, the owner).
The page for people, ``/s/{token}``, is gateway/http/routes/link_page.py.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config import Config
from gateway.core.links import MAX_EXPIRES_IN, MAX_PASSWORD, link_url
from gateway.db import Row
from gateway.http import appkeys
from gateway.http.errors import bad_request
from gateway.http.middlewares import public
from gateway.http.parsing import as_integer, read_optional_json

routes = web.RouteTableDef()


def link_json(config: Config, link: Row) -> dict[str, Any]:
    """The contract's link object."""
    return {
        "link_id": link["id"],
        "file_id": link["file_id"],
        "url": link_url(config, link["token"]),
        "expires_at": link["expires_at"],
        "has_password": link["password_hash"] is not None,
        "created_at": link["created_at"],
        "download_count": link["download_count"],
    }


def optional_password(body: dict) -> str | None:
    """``password``: absent or null for none, else a non-empty string."""
    password = body.get("password")
    if password is None:
        return None
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        raise bad_request(f"`password` must be a non-empty string of at most {MAX_PASSWORD} characters",
                          "invalid_field", field="password")
    return password


def optional_expires_in(body: dict) -> int | None:
    """``expires_in``: absent or null for never, else whole seconds from 1 to ten years (a JSON
    integer, which 393.0 is too, as the document's JSON Schema says)."""
    if body.get("expires_in") is None:
        return None
    expires_in = as_integer(body["expires_in"])
    if expires_in is None or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise bad_request(f"`expires_in` must be whole seconds from 1 to {MAX_EXPIRES_IN} (or null: never)",
                          "invalid_field", field="expires_in")
    return expires_in


@routes.post("/dropbox/v1/files/{file_id}/links")
async def create_link(request: web.Request) -> web.Response:
    """201 a new link; owner only (404 otherwise); 409 while the file is not uploaded."""
    body = await read_optional_json(request)
    expires_in, password = optional_expires_in(body), optional_password(body)
    link = await request.app[appkeys.CORE].links.create(
        request[appkeys.USER].user_id, request.match_info["file_id"], expires_in, password
    )
    return web.json_response(link_json(request.app[appkeys.CONFIG], link), status=201)


@routes.get("/dropbox/v1/files/{file_id}/links")
async def list_links(request: web.Request) -> web.Response:
    """The file's links that are not revoked (expired ones too), newest first; owner only."""
    links = await request.app[appkeys.CORE].links.of_file(request[appkeys.USER].user_id, request.match_info["file_id"])
    config = request.app[appkeys.CONFIG]
    return web.json_response({"links": [link_json(config, link) for link in links]})


@routes.delete("/dropbox/v1/links/{link}")
async def revoke_link(request: web.Request) -> web.Response:
    """204: the link (by link_id) stops working at once, also when it already had; owner of the file only."""
    await request.app[appkeys.CORE].links.revoke(request[appkeys.USER].user_id, request.match_info["link"])
    return web.Response(status=204)


@routes.get("/dropbox/v1/links/{link}")
@public
async def link_info(request: web.Request) -> web.Response:
    """What a link (by token) shares, with the thumbnail a link without a password shows: 404 unknown or
    revoked, 410 expired."""
    links = request.app[appkeys.CORE].links
    link = await links.open(request.match_info["link"])
    info = {
        "file_name": link["file_name"],
        "file_size": link["file_size"],
        "file_type": link["file_type"],
        "expires_at": link["expires_at"],
        "has_password": link["password_hash"] is not None,
    }
    if thumbnail := await links.thumbnail(link):
        info["thumbnail_url"], info["thumbnail_url_expires_at"] = thumbnail
    return web.json_response(info, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@routes.post("/dropbox/v1/links/{token}/download")
@public
async def link_download(request: web.Request) -> web.Response:
    """A CDN download URL, counted as a download; 401/403/429 for the password, 404/410 as for the link."""
    password = optional_password(await read_optional_json(request))
    url, expires_at = await request.app[appkeys.CORE].links.download(request.match_info["token"], password)
    return web.json_response({"download_url": url, "expires_at": expires_at},
                             headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
