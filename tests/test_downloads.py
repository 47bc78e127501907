"""Downloads end to end: the gateway's signed URL, the real nginx CDN tier, the real store."""
from __future__ import annotations

import asyncio
import hashlib
import os

from tests.harness import Api, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB


async def fetch(http, url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    async with http.get(url, headers=headers or {}) as response:
        return response.status, await response.read(), response.headers.copy()


async def test_owner_and_shared_user_download_one_cached_copy_and_strangers_get_nothing(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    api = Api(http, gateway.url)
    owner, friend, stranger = await api.signup(), await api.signup(), await api.signup()
    data = os.urandom(2 * CHUNK + 99)
    file = await upload(owner, data, CHUNK, file_name="holiday 名前.mov", file_type="video/quicktime")
    assert file["download_url"].startswith(cdn.url)

    status, body, headers = await fetch(http, file["download_url"])
    assert (status, headers["X-Cache-Status"]) == (200, "MISS")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["ETag"] == f'"{file["fingerprint"]}"'
    assert headers["Content-Type"].startswith("video/quicktime")
    assert "filename*=UTF-8''holiday%20%E5%90%8D%E5%89%8D.mov" in headers["Content-Disposition"]

    shared = await owner.post("/dropbox/v1/files/share", json={"file_id": file["file_id"], "users": [friend.username]})
    assert shared.status == 200
    friends_view = await friend.get(f"/dropbox/v1/files/{file['file_id']}")
    assert friends_view.status == 200
    status, body, headers = await fetch(http, friends_view.body["download_url"])
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()

    # The /content redirect is what `curl -L` follows.
    redirect = await friend.get(f"/dropbox/v1/files/{file['file_id']}/content")
    assert redirect.status == 302 and redirect.headers["Location"].startswith(cdn.url)
    start, end = CHUNK - 5, CHUNK + 4
    status, body, headers = await fetch(http, redirect.headers["Location"], {"Range": f"bytes={start}-{end}"})
    assert status == 206 and body == data[start : end + 1]

    for path in (f"/dropbox/v1/files/{file['file_id']}", f"/dropbox/v1/files/{file['file_id']}/content"):
        denied = await stranger.get(path)
        assert denied.status == 404 and "download_url" not in (denied.body or {})


async def test_an_expired_download_url_is_refused_even_when_cached(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, download_url_ttl=1)
    owner = await Api(http, gateway.url).signup()
    file = await upload(owner, os.urandom(1000), CHUNK)
    assert (await fetch(http, file["download_url"]))[0] == 200
    await asyncio.sleep(2.2)
    status, _, _ = await fetch(http, file["download_url"])
    assert status == 403
    fresh = (await owner.get(f"/dropbox/v1/files/{file['file_id']}")).body["download_url"]
    status, _, headers = await fetch(http, fresh)
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")
