"""Downloads end to end: the gateway's signed URL, the real nginx CDN tier, the real store.

The cache status is read from the tier's access log, by the answer's X-Request-Id: clients are not told.
"""
from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import urlsplit

from yarl import URL

from gateway.core.downloads import download_url
from tests.harness import BUCKET, Api, make_claim, put_chunks, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB


async def fetch(http, url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    async with http.get(url, headers=headers or {}) as response:
        assert "X-Cache-Status" not in response.headers
        return response.status, await response.read(), response.headers.copy()


async def test_owner_and_shared_user_download_one_cached_copy_and_strangers_get_nothing(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    api = Api(http, gateway.url)
    owner, friend, stranger = await api.signup(), await api.signup(), await api.signup()
    data = os.urandom(2 * CHUNK + 99)
    file = await upload(owner, data, CHUNK, file_name="holiday 名前.mov", file_type="video/quicktime")
    assert file["download_url"].startswith(cdn.url)
    assert "X-Amz-" not in file["download_url"]

    status, body, headers = await fetch(http, file["download_url"])
    assert (status, cdn.cache_status(headers["X-Request-Id"])) == (200, "MISS")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["ETag"] == f'"{file["fingerprint"]}"'
    assert headers["Content-Type"].startswith("video/quicktime")
    assert "filename*=UTF-8''holiday%20%E5%90%8D%E5%89%8D.mov" in headers["Content-Disposition"]

    shared = await owner.post("/dropbox/v1/files/share", json={"file_id": file["file_id"], "users": [friend.username]})
    assert shared.status == 200
    friends_view = await friend.get(f"/dropbox/v1/files/{file['file_id']}")
    assert friends_view.status == 200
    status, body, headers = await fetch(http, friends_view.body["download_url"])
    assert (status, cdn.cache_status(headers["X-Request-Id"])) == (200, "HIT")
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
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    owner = await Api(http, gateway.url).signup()
    file = await upload(owner, os.urandom(1000), CHUNK)
    assert (await fetch(http, file["download_url"]))[0] == 200
    # The same URL as the gateway signed it a second past its lifetime ago (no waiting for time to pass).
    signed_at = int(time.time()) - gateway.config.download_url_ttl - 1
    expired, _ = download_url(gateway.config, file["fingerprint"], file["file_name"], file["file_type"], now=signed_at)
    status, _, _ = await fetch(http, expired)
    assert status == 403
    fresh = (await owner.get(f"/dropbox/v1/files/{file['file_id']}")).body["download_url"]
    status, _, headers = await fetch(http, fresh)
    assert (status, cdn.cache_status(headers["X-Request-Id"])) == (200, "HIT")


async def test_a_download_url_opens_nothing_but_the_cdn_tier(make_gateway, cdn, store, http):
    """A download URL once carried a presigned store GET valid an hour past its own expiry:
    taken to the store, it read the object there, past any unshare. Now it holds only the edge
    signature, worth nothing at the store."""
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    owner = await Api(http, gateway.url).signup()
    data = os.urandom(5000)
    file = await upload(owner, data, CHUNK)
    url = file["download_url"]
    assert (await fetch(http, url))[:2] == (200, data)
    query = urlsplit(url).query
    for target in (f"{store.endpoint}/{BUCKET}/content/{file['fingerprint']}?{query}",
                   f"{store.endpoint}/{BUCKET}/content/{file['fingerprint']}"):
        async with http.get(URL(target, encoded=True), headers={"Host": urlsplit(store.endpoint).netloc}) as response:
            assert response.status == 403, target
            assert data not in await response.read()


async def test_a_version_and_a_renamed_file_download_through_the_cdn_with_their_own_names(make_gateway, cdn, http):
    """Contract v1.2 end to end on the real store and CDN tier: a file uploaded into a path, replaced
    (overwrite), the old content downloaded as a version, the current one under its new name."""
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    owner = await Api(http, gateway.url).signup()
    old, new = os.urandom(CHUNK + 10), os.urandom(2000)
    first = await owner.post("/dropbox/v1/files", json={**make_claim(old, CHUNK, "plan.txt"), "path": "/Work/plan.txt"})
    assert first.status == 201 and first.body["path"] == "/Work/plan.txt"
    assert await put_chunks(owner, first.body["file_id"], old, CHUNK) == [200, 200]
    assert (await owner.post(f"/dropbox/v1/files/{first.body['file_id']}/complete")).status == 200
    second = await owner.post("/dropbox/v1/files", json={**make_claim(new, CHUNK, "plan.txt"), "path": "/Work/plan.txt",
                                                         "mode": "overwrite"})
    assert await put_chunks(owner, second.body["file_id"], new, CHUNK) == [200]
    assert (await owner.post(f"/dropbox/v1/files/{second.body['file_id']}/complete")).body["path"] == "/Work/plan.txt"

    [version] = (await owner.get(f"/dropbox/v1/files/{second.body['file_id']}/versions")).body["versions"]
    assert version["file_id"] == first.body["file_id"] and version["replaced_by"] == second.body["file_id"]
    status, body, _ = await fetch(http, version["download_url"])
    assert status == 200 and body == old
    renamed = await owner.request("PATCH", f"/dropbox/v1/files/{second.body['file_id']}", json={"name": "plan v2.txt"})
    assert renamed.body["path"] == "/Work/plan v2.txt"
    status, body, headers = await fetch(http, renamed.body["download_url"])
    assert status == 200 and body == new and "plan%20v2.txt" in headers["Content-Disposition"]
