"""The web app for people: ``GET /`` and its static files, from the package's ``gateway/web/``.

The app is plain ES modules, a Web Worker and a stylesheet, read once at
import (a few hundred KiB) and served from memory:

* ``/`` -- the page; never cached without revalidation, so a new release is
  picked up on the next load. Its asset URLs carry a version (a digest of
  every file), so
* ``/assets/<version>/<path>`` -- the app's own files, cacheable for a year
  (``immutable``): a new release has a new version, hence new URLs. The
  modules import each other by relative paths, so they stay under one version.
  An old version's URL still answers, with the current file and no long-lived
  caching, so a page that was open across a release keeps working.
* ``/static/<path>`` -- the same files under stable URLs, revalidated on every
  use (ETag), for pages outside the app that reuse its look, such as the shared
  link page ``/s/{token}`` (``/static/style.css``).

Every answer carries a strict Content-Security-Policy: scripts only from this
origin (no inline script, no eval), requests only to this origin, the store's
public endpoint (chunk PUTs) and the CDN tier, and images and media only from
this origin and the CDN tier (previews); the origins come from the gateway's
configuration.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from gateway.http import appkeys
from gateway.config import Config, origin
from gateway.http.middlewares import public

routes = web.RouteTableDef()

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
ASSETS_PLACEHOLDER = b"{{ASSETS}}"
YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_web_files() -> tuple[dict[str, Asset], str]:
    """Every servable file of gateway/web by relative path, and the version (a digest of them all)."""
    root = resources.files("gateway").joinpath("web")
    files: dict[str, Asset] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            path = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, path + "/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix in CONTENT_TYPES and not child.name.startswith("."):
                files[path] = _asset(child.read_bytes(), CONTENT_TYPES[suffix])

    walk(root, "")
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].body + b"\0")
    return files, digest.hexdigest()[:16]


FILES, VERSION = load_web_files()
INDEX = _asset(
    FILES["index.html"].body.replace(ASSETS_PLACEHOLDER, f"/assets/{VERSION}".encode()), CONTENT_TYPES[".html"]
)


def content_security_policy(config: Config) -> str:
    """No inline script, no eval, no framing; fetch/XHR only to us, the store (chunk PUTs) and the CDN;
    images, audio and video of previews from the CDN (gateway/web/js/views/preview.js).

    'wasm-unsafe-eval' lets the page compile WebAssembly (the SHA-256 of plain-http addresses,
    gateway/web/js/fingerprint.js) and nothing else: no eval, no new Function, no inline script.
    """
    cdn = origin(config.cdn_url)
    connect = " ".join(dict.fromkeys(["'self'", origin(config.presign_endpoint), cdn]))
    return (
        f"default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; "
        f"img-src 'self' {cdn}; media-src {cdn}; connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def security_headers(config: Config) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(config),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def serve(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {
        **security_headers(request.app[appkeys.CONFIG]),
        "Cache-Control": cache_control,
        "ETag": asset.etag,
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def find(path: str) -> Asset:
    asset = FILES.get(path)
    if asset is None or path == "index.html":
        raise web.HTTPNotFound()
    return asset


@routes.get("/")
@public
async def index(request: web.Request) -> web.Response:
    return serve(request, INDEX, "no-cache")


@routes.get("/assets/{version}/{path:.+}")
@public
async def versioned_asset(request: web.Request) -> web.Response:
    asset = find(request.match_info["path"])
    current = request.match_info["version"] == VERSION
    return serve(request, asset, f"public, max-age={YEAR}, immutable" if current else "no-cache")


@routes.get("/static/{path:.+}")
@public
async def static_asset(request: web.Request) -> web.Response:
    return serve(request, find(request.match_info["path"]), "no-cache")
