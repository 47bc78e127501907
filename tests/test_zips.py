"""Zips (gateway/core/zips.py) over HTTP, in-process on the in-memory store (tests/app_fixtures.py): what a
zip holds and under which names, who may zip what, the size limit, the signed URL. The same with the
real store, the browser's "Download selected" and the memory a large zip costs: tests/test_zips_stack.py.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import replace
from datetime import datetime

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.content import content_key
from gateway.core.zips import safe_segment, unique_names
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import Api, make_claim
from tests.test_tree import CHUNK, FILES, error_of, mkdir, put_file
from tests.test_tree import alice, gateway  # noqa: F401 - fixtures: a user of an in-process gateway

ZIPS = "/dropbox/v1/zips"


async def fetch_zip(api: Api, entries: list[str]) -> tuple[dict, zipfile.ZipFile, dict]:
    """(the POST's answer, the zip fetched from its URL without the access token, the GET's headers)."""
    made = await api.post(ZIPS, json={"entries": entries})
    assert made.status == 200, made.body
    async with api.session.get(made.body["url"]) as resp:
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
        headers = dict(resp.headers)
    assert len(raw) == made.body["size"] == int(headers["Content-Length"])
    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert archive.testzip() is None  # every member's CRC-32 matches its bytes
    return made.body, archive, headers


def dos_date_time(stamp: str) -> tuple[int, ...]:
    """A tree's ``modified_at`` as a zip holds it: UTC, two seconds a step."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second // 2 * 2


def member_dates(archive: zipfile.ZipFile) -> dict[str, tuple[int, ...]]:
    """Each member's date, checked to be the same in its local header and its central directory entry."""
    dates = {}
    for info in archive.infolist():
        archive.fp.seek(info.header_offset)  # type: ignore[union-attr]
        dos_time, dos_date = struct.unpack_from("<HH", archive.fp.read(30), 10)  # type: ignore[union-attr]
        local = (dos_date >> 9) + 1980, dos_date >> 5 & 0xF, dos_date & 0x1F, dos_time >> 11, dos_time >> 5 & 0x3F, \
            (dos_time & 0x1F) * 2
        assert local == info.date_time, f"{info.filename}: local header {local}, central directory {info.date_time}"
        dates[info.filename] = info.date_time
    return dates


async def tree_dates(api: Api, paths: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """{name in the zip: the date of the tree's entry at that path, as a zip holds it}."""
    dates = {}
    for name, path in paths.items():
        found = await api.get("/dropbox/v1/metadata", params={"path": path})
        assert found.status == 200, found.body
        dates[name] = dos_date_time(found.body["modified_at"])
    return dates


@pytest.mark.every_engine  # the folder's content is one recursive query
async def test_a_folder_zips_with_its_subfolders_and_the_right_bytes_and_nothing_trashed(alice):
    photos = await mkdir(alice, "/Photos")
    await mkdir(alice, "/Photos/2026/empty")
    one, two, gone = os.urandom(CHUNK + 123), os.urandom(4000), b"trashed"
    await put_file(alice, one, "big.bin", parent_id=photos["folder_id"])
    await put_file(alice, two, "b.txt", path="/Photos/2026/b.txt")
    await put_file(alice, b"", "empty.txt", path="/Photos/2026/empty.txt")
    trashed = await put_file(alice, gone, "gone.txt", path="/Photos/gone.txt")
    await put_file(alice, b"elsewhere", "other.txt")  # not in the folder
    assert (await alice.delete(f"{FILES}/{trashed['file_id']}")).status == 204

    made, archive, headers = await fetch_zip(alice, [photos["folder_id"]])
    assert archive.namelist() == ["Photos/", "Photos/2026/", "Photos/2026/b.txt", "Photos/2026/empty/",
                                  "Photos/2026/empty.txt", "Photos/big.bin"]
    assert archive.read("Photos/big.bin") == one and archive.read("Photos/2026/b.txt") == two
    assert archive.read("Photos/2026/empty.txt") == b""
    assert (made["name"], made["files"]) == ("Photos.zip", 3)
    assert headers["Content-Type"] == "application/zip" and headers["X-Accel-Buffering"] == "no"
    assert "filename*=UTF-8''Photos.zip" in headers["Content-Disposition"]


async def test_a_selection_zips_own_and_shared_files_with_clashing_names_made_unique(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    mine = await put_file(alice, b"alice's", "Report.txt")
    folder = await mkdir(alice, "/sub/report.TXT")  # a folder of the same name, compared as a desktop does
    theirs = await put_file(bob, b"bob's", "report.txt")
    await bob.post(f"{FILES}/share", json={"file_id": theirs["file_id"], "users": [alice.username]})

    made, archive, _ = await fetch_zip(alice, [mine["file_id"], theirs["file_id"], folder["folder_id"], mine["file_id"]])
    assert archive.namelist() == ["Report.txt", "report (1).txt", "report.TXT (1)/"]
    assert archive.read("report (1).txt") == b"bob's" and made["name"] == "Files.zip"
    _, everything, _ = await fetch_zip(alice, ["root"])
    assert everything.namelist() == ["All files/", "All files/Report.txt", "All files/sub/", "All files/sub/report.TXT/"]


@pytest.mark.every_engine  # the dates come with the folder's content, one recursive query
async def test_each_member_carries_its_date_in_the_tree_not_the_hour_of_the_zip(gateway, http, alice, app_clock):
    bob = await Api(http, gateway.url).signup()
    app_clock.advance(600)
    await put_file(alice, b"first", "a.txt", path="/Trip/a.txt")
    app_clock.advance(600)
    await put_file(alice, b"second", "b.txt", path="/Trip/Day 2/b.txt")
    await mkdir(alice, "/Trip/Day 2/empty")
    theirs = await put_file(bob, b"bob's", "bob.txt")
    await bob.post(f"{FILES}/share", json={"file_id": theirs["file_id"], "users": [alice.username]})
    app_clock.advance(600)  # zipped ten minutes after the last change (and 30 after the process's own clock)
    trip = await alice.get("/dropbox/v1/metadata", params={"path": "/Trip"})

    _, archive, _ = await fetch_zip(alice, [trip.body["folder_id"], theirs["file_id"]])
    expected = await tree_dates(alice, {"Trip/": "/Trip", "Trip/a.txt": "/Trip/a.txt", "Trip/Day 2/": "/Trip/Day 2",
                                        "Trip/Day 2/b.txt": "/Trip/Day 2/b.txt",
                                        "Trip/Day 2/empty/": "/Trip/Day 2/empty"})
    expected["bob.txt"] = dos_date_time((await bob.get(f"{FILES}/{theirs['file_id']}")).body["modified_at"])
    assert member_dates(archive) == expected
    assert expected["Trip/a.txt"] != expected["Trip/Day 2/b.txt"]  # ten minutes apart, each its own
    _, everything, _ = await fetch_zip(alice, ["root"])
    assert member_dates(everything)["All files/"] == max(expected.values())  # the root: its newest


async def test_only_what_the_caller_may_read_and_only_uploaded_files(gateway, http, alice):
    bob = await Api(http, gateway.url).signup()
    private = await put_file(bob, b"bob only", "secret.txt")
    bobs_folder = await mkdir(bob, "/Private")
    for entry_id in (private["file_id"], bobs_folder["folder_id"], "0" * 32):
        assert error_of(await alice.post(ZIPS, json={"entries": [entry_id]})) == (404, "not_found")
    claim = await alice.post(FILES, json=make_claim(b"never sent", CHUNK, file_name="half.bin"))
    assert error_of(await alice.post(ZIPS, json={"entries": [claim.body["file_id"]]})) == (409, "not_uploaded")
    assert (await alice.as_user(None).post(ZIPS, json={"entries": ["root"]})).status == 401


@pytest.mark.parametrize("body", [{}, {"entries": []}, {"entries": "root"}, {"entries": ["../etc"]},
                                  {"entries": [1]}, {"entries": ["root"] * 251}])
async def test_a_bad_selection_is_400_invalid_field(alice, body):
    answer = await alice.post(ZIPS, json=body)
    assert error_of(answer) == (400, "invalid_field") and answer.body["error"]["field"] == "entries"


async def test_past_the_size_limit_the_zip_is_413_when_made_and_when_fetched(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, zip_max_size=3000)
    alice = await Api(http, gateway.url).signup()
    small = await put_file(alice, os.urandom(1000), "small.bin")
    made = await alice.post(ZIPS, json={"entries": [small["file_id"]]})
    assert made.status == 200 and made.body["size"] < 3000
    await put_file(alice, os.urandom(2500), "large.bin")
    too_large = await alice.post(ZIPS, json={"entries": ["root"]})
    assert error_of(too_large) == (413, "zip_too_large")
    assert too_large.body["error"]["max_zip_size"] == 3000 and too_large.body["error"]["zip_size"] > 3000
    # What a URL holds is decided when it is fetched: the folder grew past the limit since.
    grown_folder = await mkdir(alice, "/grows")
    url = (await alice.post(ZIPS, json={"entries": [grown_folder["folder_id"]]})).body["url"]
    await put_file(alice, os.urandom(3000), "more.bin", parent_id=grown_folder["folder_id"])
    async with http.get(url) as resp:
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "zip_too_large"


async def test_the_url_is_signed_and_expires(gateway, http, alice, app_clock):
    await put_file(alice, b"x", "x.txt")
    made = (await alice.post(ZIPS, json={"entries": ["root"]})).body
    ticket = made["url"].rsplit("/", 1)[1]
    payload, mac = ticket.split(".")
    altered = ("A" if payload[0] != "A" else "B") + payload[1:]
    for bad in (f"{altered}.{mac}", payload, f"{payload}.{mac}x", "a.b", "a.b.c", "%00"):
        async with http.get(f"{gateway.url}{ZIPS}/{bad}") as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "invalid_zip_url"
    async with http.get(made["url"]) as resp:
        assert resp.status == 200
    app_clock.advance(gateway.config.download_url_ttl + 1)
    async with http.get(made["url"]) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "zip_url_expired"


async def test_a_store_that_fails_mid_zip_cuts_the_download_short_never_a_zip_that_looks_whole(
        gateway, http, alice, served_memory_store):
    data = os.urandom(3 * 1024 * 1024)
    file = await put_file(alice, data, "big.bin")
    made = (await alice.post(ZIPS, json={"entries": [file["file_id"]]})).body
    key = content_key(file["fingerprint"])
    served_memory_store._objects[key] = replace(served_memory_store._objects[key], data=data[:-1000])  # a store that lies
    async with http.get(made["url"]) as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == made["size"]
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


@given(st.text(max_size=300))
def test_a_segment_is_never_a_way_out_of_its_folder(name):
    segment = safe_segment(name)
    assert segment not in ("", ".", "..") and "/" not in segment and "\\" not in segment
    assert len(segment.encode("utf-8")) <= 255 and not any(ord(c) < 32 or ord(c) == 127 for c in segment)


@given(st.lists(st.tuples(st.sampled_from(["a.txt", "A.TXT", "b", "B", "..", "", "a (1).txt"]), st.booleans()),
                max_size=12))
def test_top_level_names_are_unique_as_a_desktop_compares_them(names):
    unique = unique_names(names)
    assert len({name.casefold() for name in unique}) == len(unique) == len(names)


def test_a_zip_urls_ticket_is_never_logged():
    from gateway.http.middlewares import loggable_path

    assert loggable_path("/dropbox/v1/zips/AAAA.BBBB") == "/dropbox/v1/zips/[redacted]"
    assert loggable_path("/dropbox/v1/zips") == "/dropbox/v1/zips"
