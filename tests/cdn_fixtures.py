"""The CDN tier for the tests: a real nginx in front of the session's real store.

conftest.py imports these fixtures. A gateway test that needs download URLs on
this nginx starts its gateway with ``make_gateway(cdn_url=cdn.url)``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cdn.nginx import LocalCdn, start_local_cdn
from gateway.http.app import make_store
from gateway.config import Config
from protocol.fingerprints import chunk_count, file_fingerprint, hex_to_b64
from gateway.core.content import content_key
from storage.base import CompletedPart
from storage.embedded import free_port
from storage.s3 import S3ObjectStore
from tests.harness import BUCKET, CDN_ACCESS_KEY, CDN_SECRET_KEY, gateway_config

__all__ = ["cdn", "cdn_config", "content_store", "put_content"]


@pytest.fixture(scope="session")
def cdn(store, tmp_path_factory) -> LocalCdn:
    """nginx on a free port, checking URLs with the secret every test gateway signs with,
    reading the store with its own read-only key."""
    env = cdn_environment(store, gateway_config(store, Path(os.devnull), 0).cdn_secret)
    local = start_local_cdn(tmp_path_factory.mktemp("cdn"), env, free_port(), workers="2")
    yield local
    local.stop()


def cdn_environment(store, cdn_secret: str, **overrides: str) -> dict[str, str]:
    """What start_local_cdn needs: the gateway's settings and the tier's secrets."""
    return {
        "GATEWAY_S3_ENDPOINT": store.endpoint,
        "GATEWAY_S3_BUCKET": BUCKET,
        "GATEWAY_CDN_SECRET": cdn_secret,
        "CDN_S3_ACCESS_KEY": CDN_ACCESS_KEY,
        "CDN_S3_SECRET_KEY": CDN_SECRET_KEY,
        **overrides,
    }


@pytest.fixture
def cdn_config(store, cdn, tmp_path) -> Config:
    """A gateway configuration whose download URLs point at the test nginx."""
    return gateway_config(store, tmp_path / "gateway.sqlite3", free_port(), cdn_url=cdn.url)


@pytest.fixture
def content_store(cdn_config) -> S3ObjectStore:
    return make_store(cdn_config)


async def put_content(store: S3ObjectStore, data: bytes, chunk_size: int = 8 * 1024 * 1024) -> str:
    """Store ``data`` as the gateway would (one part per chunk) and return its fingerprint."""
    chunks = [data[i * chunk_size : (i + 1) * chunk_size] for i in range(chunk_count(len(data), chunk_size))]
    digests = [hashlib.sha256(chunk).hexdigest() for chunk in chunks]
    fingerprint = file_fingerprint(digests)
    key = content_key(fingerprint)
    if len(chunks) <= 1:
        await store.put_object(key, data, hex_to_b64(hashlib.sha256(data).hexdigest()))
        return fingerprint
    upload_id = await store.start_multipart(key)
    parts = []
    for number, (chunk, digest) in enumerate(zip(chunks, digests, strict=True), start=1):
        etag = await store.upload_part(key, upload_id, number, chunk, hex_to_b64(digest))
        parts.append(CompletedPart(number, etag, hex_to_b64(digest)))
    await store.complete_multipart(key, upload_id, parts)
    return fingerprint
