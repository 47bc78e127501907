"""The contract as an OpenAPI 3.1 document: ``GET /dropbox/v1/openapi.json``, public.

The document is the hand-written package file gateway/openapi.json, read once
at import and served byte for byte. tests/test_openapi.py keeps it and the
routes the app registers from drifting apart.
"""
from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from gateway.http.middlewares import public

routes = web.RouteTableDef()

DOCUMENT: bytes = resources.files("gateway").joinpath("openapi.json").read_bytes()
json.loads(DOCUMENT)  # a broken document fails at start, not on the first request


@routes.get("/dropbox/v1/openapi.json")
@public
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=DOCUMENT, content_type="application/json")
