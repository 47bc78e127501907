"""Thumbnails end to end: the real store, the real CDN tier, both engines, two gateways on one database.

The worker logic is tested in the fast lane (tests/test_thumbnails.py); here the parts it meets:
the store's keys and the CDN's read-only key, the signed URLs nginx checks, who is given them, and
several gateways' workers sharing the queue on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from gateway.core.thumbnails import decode_in_child
from gateway.thumbnailer import EDGE, PAGE_EDGE
from storage.embedded import free_port
from tests.harness import Api, upload
from tests.images import encoded, png_bomb, thumbnail_size

pytestmark = pytest.mark.every_engine  # the queue is claimed with SQL that differs by engine
CHUNK = 5 * 1024 * 1024


async def fetch(http, url: str) -> tuple[int, bytes, dict]:
    async with http.get(URL(url, encoded=True)) as response:
        return response.status, await response.read(), response.headers.copy()


async def test_a_thumbnail_is_made_after_upload_and_served_by_the_cdn_to_readers_only(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    api = Api(http, gateway.url)
    owner, friend, stranger = await api.signup(), await api.signup(), await api.signup()
    file = await upload(owner, encoded("JPEG", (1600, 1200)), CHUNK, file_name="beach.jpg", file_type="image/jpeg")
    assert await asyncio.wait_for(gateway.core.thumbnails.settled(file["fingerprint"]), 60) == "made"

    seen = (await owner.get(f"/dropbox/v1/files/{file['file_id']}")).body
    assert seen["thumbnail_url"].startswith(f"{cdn.url}/t/{file['fingerprint']}?exp=")
    status, body, headers = await fetch(http, seen["thumbnail_url"])
    assert status == 200, body
    assert thumbnail_size(body) == ("WEBP", (EDGE, EDGE * 3 // 4))
    assert headers["Content-Type"] == "image/webp" and headers["Content-Disposition"] == "inline"
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
    listed = (await owner.get("/dropbox/v1/folders/root/entries")).body["entries"]
    assert [entry["thumbnail_url"] for entry in listed] == [seen["thumbnail_url"]]

    # Whoever may read the file is given the URL; nobody else is.
    shared = await owner.post("/dropbox/v1/files/share", json={"file_id": file["file_id"], "users": [friend.username]})
    assert shared.status == 200
    friends = (await friend.get("/dropbox/v1/files/shared")).body["files"]
    assert friends[0]["thumbnail_url"] == seen["thumbnail_url"]
    denied = await stranger.get(f"/dropbox/v1/files/{file['file_id']}")
    assert denied.status == 404 and "thumbnail_url" not in denied.body

    # The URL is the credential: altered, or made into a download URL, it opens nothing.
    tampered = seen["thumbnail_url"][:-3] + ("AAA" if not seen["thumbnail_url"].endswith("AAA") else "BBB")
    status, body, _ = await fetch(http, tampered)
    assert status == 403 and b"invalid_thumbnail_url" in body
    as_download = seen["thumbnail_url"].replace("/t/", "/c/").replace("?", "/beach.jpg?")
    assert (await fetch(http, as_download))[0] == 403


async def test_a_pdf_has_its_first_page_for_the_preview_and_a_photo_none(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    owner = await Api(http, gateway.url).signup()
    pdf = await upload(owner, encoded("PDF", (595, 842)), CHUNK, file_name="report.pdf", file_type="application/pdf")
    photo = await upload(owner, encoded("PNG"), CHUNK, file_name="photo.png", file_type="image/png")
    for file in (pdf, photo):
        assert await asyncio.wait_for(gateway.core.thumbnails.settled(file["fingerprint"]), 60) == "made"

    seen = (await owner.get(f"/dropbox/v1/files/{pdf['file_id']}")).body
    assert seen["page_url"].startswith(f"{cdn.url}/t/{pdf['fingerprint']}-page?exp=")
    status, body, headers = await fetch(http, seen["page_url"])
    assert status == 200, body
    kind, (width, height) = thumbnail_size(body)
    assert kind == "WEBP" and height == PAGE_EDGE and abs(width - 595 * PAGE_EDGE / 842) <= 1
    assert headers["Content-Disposition"] == "inline" and "sandbox" in headers["Content-Security-Policy"]
    assert thumbnail_size((await fetch(http, seen["thumbnail_url"]))[1])[1][1] == EDGE  # two pictures, two sizes
    listed = {entry["name"]: entry for entry in (await owner.get("/dropbox/v1/folders/root/entries")).body["entries"]}
    assert listed["report.pdf"]["page_url"] == seen["page_url"] and "page_url" not in listed["photo.png"]
    # The page's URL is signed for its own path: made into the thumbnail's, it opens nothing.
    assert (await fetch(http, seen["page_url"].replace("-page?", "?")))[0] == 403


async def test_a_decompression_bomb_gets_no_thumbnail_and_the_gateway_goes_on(make_gateway, cdn, http):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    owner = await Api(http, gateway.url).signup()
    bomb = await upload(owner, png_bomb(), CHUNK, file_name="bomb.png", file_type="image/png")
    assert await asyncio.wait_for(gateway.core.thumbnails.settled(bomb["fingerprint"]), 60) == "none"
    assert "thumbnail_url" not in (await owner.get(f"/dropbox/v1/files/{bomb['file_id']}")).body
    fine = await upload(owner, encoded("PNG"), CHUNK, file_name="fine.png", file_type="image/png")
    assert await asyncio.wait_for(gateway.core.thumbnails.settled(fine["fingerprint"]), 60) == "made"
    async with http.get(f"{gateway.url}/healthz") as health:
        assert health.status == 200


async def test_two_gateways_on_one_database_make_each_content_once(make_gateway, cdn, http):
    first = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    second = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, port=free_port())
    decoded: list[str] = []

    def counted(gateway):
        async def decode(data: bytes):
            decoded.append(gateway.url)
            return await decode_in_child(data, seconds=20, memory_bytes=768 * 1024 * 1024)
        return decode

    for gateway in (first, second):
        gateway.core.thumbnails.decode = counted(gateway)
    alice = await Api(http, first.url).signup()
    alice_too = Api(http, second.url, alice.token)
    contents = [encoded("PNG", (60 + index, 40)) for index in range(6)]
    files = []
    for index, data in enumerate(contents):
        # Each content twice, once through each gateway: both queue it, one makes it.
        files.append(await upload(alice, data, CHUNK, file_name=f"a{index}.png"))
        await upload(alice_too, data, CHUNK, file_name=f"b{index}.png")
    for file in files:
        assert await asyncio.wait_for(first.core.thumbnails.settled(file["fingerprint"]), 60) == "made"
    assert len(decoded) == len(contents)
    for file in files:
        url = (await alice_too.get(f"/dropbox/v1/files/{file['file_id']}")).body["thumbnail_url"]
        assert (await fetch(http, url))[0] == 200
