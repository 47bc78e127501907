"""Every answer is the contract's JSON error with an X-Request-Id, a bug's 500 included; one mapping of domain errors."""
from __future__ import annotations

import inspect

from aiohttp import web

from gateway.core import errors as domain
from gateway.http.errors import DOMAIN_ERRORS, api_error
from gateway.http.middlewares import auth_middleware, error_middleware, public, request_id_middleware


def app_that_fails() -> web.Application:
    app = web.Application(middlewares=[request_id_middleware, error_middleware, auth_middleware])

    @public
    async def bug(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    @public
    async def missing(request: web.Request) -> web.Response:
        raise domain.FileNotFound("abc")

    app.router.add_get("/bug", bug)
    app.router.add_get("/missing", missing)
    return app


async def test_an_unexpected_error_is_a_json_500_naming_the_request_id(aiohttp_client):
    client = await aiohttp_client(app_that_fails())
    response = await client.get("/bug", headers={"X-Request-Id": "trace-me-42"})
    assert response.status == 500
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-Id"] == "trace-me-42"
    body = await response.json()
    assert body["error"]["code"] == "internal_error" and "trace-me-42" in body["error"]["message"]


async def test_domain_errors_and_unknown_paths_answer_json_with_a_request_id(aiohttp_client):
    client = await aiohttp_client(app_that_fails())
    missing = await client.get("/missing")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    assert missing.headers["X-Request-Id"]
    nowhere = await client.get("/nowhere")
    assert nowhere.status == 404 and (await nowhere.json())["error"]["code"] == "unknown_endpoint"
    assert nowhere.headers["X-Request-Id"]


def test_every_domain_error_has_its_contract_error():
    defined = {
        cls for _, cls in inspect.getmembers(domain, inspect.isclass)
        if issubclass(cls, domain.DomainError) and cls is not domain.DomainError
    }
    assert defined == set(DOMAIN_ERRORS)
    chunks = api_error(domain.ChunksMissing([3, 4]))
    assert (chunks.status, chunks.code, chunks.details) == (409, "chunks_missing", {"missing": [3, 4]})

