"""CORS on the store for the web app: the browser PUTs chunks to the store's origin.

The store must answer the preflight for the gateway's public origin (and only
that one), allowing the signed checksum header. The embedded store is set up by
EmbeddedStore(cors_origins=...) in the tests and the local stack; MinIO under
docker-compose by MINIO_API_CORS_ALLOW_ORIGIN.
"""
from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml

from deploy.stack import browser_origins
from tests.harness import BUCKET

ROOT = Path(__file__).resolve().parent.parent


async def preflight(http: aiohttp.ClientSession, store_endpoint: str, origin: str) -> aiohttp.ClientResponse:
    async with http.options(
        f"{store_endpoint}/{BUCKET}/content/x?partNumber=1&uploadId=y",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-amz-checksum-sha256",
        },
    ) as resp:
        await resp.read()
        return resp


async def test_the_store_answers_cors_for_the_gateways_origin_only(store, gateway_port, http):
    allowed = await preflight(http, store.endpoint, f"http://127.0.0.1:{gateway_port}")
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{gateway_port}"
    assert "PUT" in allowed.headers["Access-Control-Allow-Methods"]
    assert "x-amz-checksum-sha256" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "etag" in allowed.headers.get("Access-Control-Expose-Headers", "").lower()
    other = await preflight(http, store.endpoint, "http://elsewhere.example")
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_local_stack_allows_both_spellings_of_a_loopback_origin():
    assert browser_origins("http://127.0.0.1:8080") == ("http://127.0.0.1:8080", "http://localhost:8080")
    assert browser_origins("http://localhost:8080/") == ("http://127.0.0.1:8080", "http://localhost:8080")
    assert browser_origins("https://files.example.lan") == ("https://files.example.lan",)


def test_compose_gives_minio_the_gateways_public_origin():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    minio = services["minio"]["environment"]["MINIO_API_CORS_ALLOW_ORIGIN"]
    gateway = services["gateway"]["environment"]["GATEWAY_PUBLIC_URL"]
    assert minio == gateway == "${GATEWAY_PUBLIC_URL:-http://localhost:8080}"
