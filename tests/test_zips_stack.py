"""Zips with real parts: a folder's zip downloaded from the web app in Chromium has the right bytes
inside, as does "Download selected"; a large zip streams from the SeaweedFS store through a
``python -m gateway`` process in flat memory. (The HTTP shape, permissions and limits: tests/test_zips.py.)
"""
from __future__ import annotations

import json
import os
import zipfile

import aiohttp

from tests.browser import (  # noqa: F401 - fixtures
    MIB,
    WebApp,
    browser,
    playwright_driver,
    web_gateway,
)
from tests.harness import Api, make_claim, put_chunks
from tests.test_web_everyday import session_token
from tests.test_zips import member_dates, tree_dates

FILES, ZIPS = "/dropbox/v1/files", "/dropbox/v1/zips"


async def put_inline(api: Api, data: bytes, **metadata) -> dict:
    """A file in one request (multipart/form-data): the gateway streams it into the store."""
    form = aiohttp.FormData()
    form.add_field("file_metadata", json.dumps(metadata), content_type="application/json")
    form.add_field("file", data, filename=metadata["file_name"], content_type="application/octet-stream")
    made = await api.post(FILES, data=form)
    assert made.status == 201, made.body
    return made.body


async def test_a_folder_and_a_selection_download_as_zips_with_the_right_bytes(browser, web_gateway, http, tmp_path):
    app = await WebApp.open(browser, web_gateway.url)
    await app.sign_up()
    owner = Api(http, web_gateway.url, await session_token(app.page))
    inside = {"Photos/a.jpg": os.urandom(3 * MIB + 5), "Photos/2026/b.jpg": os.urandom(1000), "Photos/2026/empty.txt": b""}
    for name, data in inside.items():
        await put_inline(owner, data, file_name=name.rsplit("/", 1)[1], path="/" + name)
    await put_inline(owner, b"loose notes", file_name="notes.txt")
    await app.page.reload()

    row = app.file_row("Photos")
    async with app.page.expect_download() as started:
        await row.get_by_role("button", name="Download Photos as a zip").click()
    download = await started.value
    assert download.suggested_filename == "Photos.zip"
    saved = tmp_path / "Photos.zip"
    await download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")} == inside
        assert "Photos/2026/" in archive.namelist()
        dated = {name: "/" + name.rstrip("/") for name in archive.namelist()}
        assert member_dates(archive) == await tree_dates(owner, dated)  # each its date in the tree

    section = app.page.locator("#my-files")
    await section.get_by_role("checkbox", name="Select Photos", exact=True).check()
    await section.get_by_role("checkbox", name="Select notes.txt", exact=True).check()
    async with app.page.expect_download() as started:
        await section.get_by_role("button", name="Download selected").click()
    download = await started.value
    assert download.suggested_filename == "Files.zip"
    await download.save_as(tmp_path / "Files.zip")
    with zipfile.ZipFile(tmp_path / "Files.zip") as archive:
        assert archive.read("notes.txt") == b"loose notes" and archive.read("Photos/a.jpg") == inside["Photos/a.jpg"]
    assert not app.problems


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def test_a_large_zip_streams_in_flat_memory(make_gateway_process, http):
    """A 1 GiB zip (32 copies of one 32 MiB content: copies move no bytes) through a gateway process:
    its resident memory, sampled every 32 MiB the client receives, stays within a few MiB of where it
    started (the zip is never held, nor written to a file)."""
    gateway = await make_gateway_process()
    alice = await Api(http, gateway.url).signup()
    data = os.urandom(32 * MIB)
    chunk = 8 * MIB
    started = await alice.post(FILES, json=make_claim(data, chunk, file_name="part.bin"))
    assert set(await put_chunks(alice, started.body["file_id"], data, chunk)) == {200}
    assert (await alice.post(f"{FILES}/{started.body['file_id']}/complete")).status == 200
    for _ in range(31):
        copied = await alice.post(f"{FILES}/{started.body['file_id']}/copy", json={"autorename": True})
        assert copied.status == 201, copied.body
    made = await alice.post(ZIPS, json={"entries": ["root"]})
    assert made.status == 200 and made.body["files"] == 32 and made.body["size"] > 1024 * MIB

    pid = gateway.process.pid
    before = rss_kib(pid)
    samples, received = [], 0
    async with http.get(made.body["url"]) as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == made.body["size"]
        async for piece in resp.content.iter_chunked(MIB):
            received += len(piece)
            if received // (32 * MIB) > len(samples):
                samples.append(rss_kib(pid))
    assert received == made.body["size"]
    growth_mib = (max(samples) - before) / 1024
    print(f"zip of {received / MIB:.0f} MiB: gateway RSS {before / 1024:.1f} MiB before, "
          f"at most {max(samples) / 1024:.1f} MiB while streaming (+{growth_mib:.1f} MiB), {len(samples)} samples")
    assert growth_mib < 48, f"the gateway grew {growth_mib:.1f} MiB while streaming a {received / MIB:.0f} MiB zip"
