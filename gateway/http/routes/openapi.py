"""The contract as an OpenAPI 3.1 document: ``GET /dropbox/v1/openapi.json``, public.

The document is the hand-written package file gateway/openapi.json, read once
at import. What depends on this gateway's settings is filled in before it is
served (:func:`with_settings`): a claim's ``chunk_size`` must *be* the
configured chunk size, and ``file_size`` is bounded by ``max_file_size``, so
every request the served document allows is one this gateway accepts as far as
a schema can say. tests/test_openapi.py keeps the document and the routes the
app registers from drifting apart; tests/test_schemathesis.py checks the
gateway against it.
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources

from aiohttp import web

from gateway.config import MAX_CHUNKS
from gateway.http import appkeys
from gateway.http.middlewares import public

routes = web.RouteTableDef()

DOCUMENT: bytes = resources.files("gateway").joinpath("openapi.json").read_bytes()
json.loads(DOCUMENT)  # a broken document fails at start, not on the first request


def with_settings(document: dict, chunk_size: int, max_file_size: int) -> dict:
    """A copy of ``document`` stating this gateway's chunk size and file size limit in the upload claim."""
    document = copy.deepcopy(document)
    claim = document["components"]["schemas"]["UploadClaim"]["properties"]
    claim["chunk_size"] = {**claim["chunk_size"], "const": chunk_size}
    claim["chunk_size"].pop("minimum", None)
    claim["file_size"] = {**claim["file_size"], "maximum": max_file_size}
    claim["chunks"] = {**claim["chunks"], "maxItems": min(MAX_CHUNKS, -(-max_file_size // chunk_size))}
    return document


@functools.cache
def served_document(chunk_size: int, max_file_size: int) -> bytes:
    return json.dumps(with_settings(json.loads(DOCUMENT), chunk_size, max_file_size), ensure_ascii=False).encode()


@routes.get("/dropbox/v1/openapi.json")
@public
async def openapi_document(request: web.Request) -> web.Response:
    config = request.app[appkeys.CONFIG]
    return web.Response(body=served_document(config.chunk_size, config.max_file_size), content_type="application/json")
