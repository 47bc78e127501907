"""Many small files in one request: ``POST /dropbox/v1/files/batch`` (beyond the contract), in-process.

Each file of a batch gets the checks and the answer it would get alone (gateway/core/uploads.py's
store_batch); what is wrong with the request as a whole is one 400/413 and stores nothing. The real
store's side (each file's bytes stored whole, checked by the store) is in tests/test_uploads.py.
"""
from __future__ import annotations

import hashlib
import os

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from client.api import inline_form as batch_form  # the body dbx sends: a file_metadata part, then its file part
from protocol.batches import BATCH_MAX_FILES
from tests.app_fixtures import app_gateway as gateway, make_app as make_gateway  # noqa: F401
from tests.harness import Api, make_claim, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB
DEFAULT_CHUNK = 8 * MIB  # the chunk size of the `gateway` fixture's
BATCH = "/dropbox/v1/files/batch"


async def send(user: Api, files: list[tuple[dict, bytes]]) -> list[dict]:
    answer = await user.post(BATCH, data=batch_form(files))
    assert answer.status == 200, answer.body
    assert len(answer.body["entries"]) == len(files)
    return answer.body["entries"]


async def folder(user: Api, path: str) -> str:
    made = await user.post("/dropbox/v1/folders", json={"path": path})
    assert made.status in (200, 201), made.body
    return made.body["folder_id"]


async def names_in(user: Api, folder_id: str) -> list[str]:
    return [entry["name"] for entry in (await user.get(f"/dropbox/v1/folders/{folder_id}/entries")).body["entries"]]


@pytest.mark.every_engine  # one transaction inserts, places and journals them all
async def test_a_batch_stores_each_file_in_its_folder_as_one_inline_upload_would(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    photos, notes = await folder(user, "/photos"), await folder(user, "/notes")
    start = (await user.get("/dropbox/v1/changes")).body["cursor"]
    files = [({"file_name": f"img-{i}.bin", "parent_id": photos if i % 2 else notes}, os.urandom(1000 + i))
             for i in range(12)]
    files.append(({"file_name": "readme.txt", "file_type": "text/plain"}, b"hello"))  # the root: neither given
    entries = await send(user, files)
    for (metadata, data), entry in zip(files, entries, strict=True):
        assert entry["status"] == 201, entry
        file = entry["file"]
        assert file["status"] == "uploaded" and file["uploaded_by"] == user.username
        assert file["name"] == metadata["file_name"] and file["file_size"] == len(data)
        assert file["fingerprint"] == hashlib.sha256(hashlib.sha256(data).digest()).hexdigest()
        assert file["parent_id"] == metadata.get("parent_id", "root")
        assert file["path"] == ("/photos/" if metadata.get("parent_id") == photos else
                                "/notes/" if metadata.get("parent_id") == notes else "/") + metadata["file_name"]
        assert file["download_url"] and file["chunks"] == [
            {"index": 0, "fingerprint": hashlib.sha256(data).hexdigest(), "status": "uploaded"}]
        assert (await user.get(f"/dropbox/v1/files/{file['file_id']}")).body["path"] == file["path"]
    assert entries[-1]["file"]["file_type"] == "text/plain"
    assert sorted(await names_in(user, photos)) == sorted(m["file_name"] for m, _ in files if m.get("parent_id") == photos)
    usage = (await user.get("/dropbox/v1/users/me")).body
    assert usage["used_bytes"] == sum(len(data) for _, data in files)
    changes = (await user.get(f"/dropbox/v1/changes?cursor={start}")).body["changes"]
    assert [change["file_id"] for change in changes] == [entry["file"]["file_id"] for entry in entries]


async def test_names_taken_and_content_already_there_are_answered_as_alone(gateway, http):
    user = await Api(http, gateway.url).signup()
    docs = await folder(user, "/docs")
    kept = os.urandom(300)
    [first] = await send(user, [({"file_name": "a.txt", "parent_id": docs}, kept)])
    entries = await send(user, [
        ({"file_name": "A.TXT", "parent_id": docs}, kept),  # the same content under that name: that file, 200
        ({"file_name": "a.txt", "parent_id": docs}, os.urandom(300)),  # other content: the next free name
        ({"file_name": "b.txt", "parent_id": docs}, os.urandom(10)),
        ({"file_name": "b.txt", "parent_id": docs}, os.urandom(10)),  # one name twice in a batch: as if sent after
    ])
    assert entries[0] == {"status": 200, "file": entries[0]["file"]}
    assert entries[0]["file"]["file_id"] == first["file"]["file_id"]
    assert [entry["status"] for entry in entries[1:]] == [201, 201, 201]
    assert [entry["file"]["name"] for entry in entries[1:]] == ["a (1).txt", "b.txt", "b (1).txt"]
    assert sorted(await names_in(user, docs)) == ["a (1).txt", "a.txt", "b (1).txt", "b.txt"]


async def test_an_upload_under_way_of_the_same_file_is_finished_by_the_batch(gateway, http):
    """As one inline upload does: the user's upload of this content to this place, started and not finished,
    is resumed with the bytes sent (200, the same file id), and the files after it are placed after it."""
    user = await Api(http, gateway.url).signup()
    data = os.urandom(700)
    started = await user.post("/dropbox/v1/files", json=make_claim(data, DEFAULT_CHUNK, file_name="half.bin"))
    assert started.status == 201 and started.body["status"] == "uploading"
    entries = await send(user, [({"file_name": "before.bin"}, b"1"), ({"file_name": "half.bin"}, data),
                                ({"file_name": "after.bin"}, b"2")])
    assert [entry["status"] for entry in entries] == [201, 200, 201]
    assert entries[1]["file"]["file_id"] == started.body["file_id"] and entries[1]["file"]["status"] == "uploaded"
    assert sorted(await names_in(user, "root")) == ["after.bin", "before.bin", "half.bin"]


async def test_overwrite_update_and_paths_in_a_batch(gateway, http):
    user = await Api(http, gateway.url).signup()
    docs = await folder(user, "/docs")
    [old] = await send(user, [({"file_name": "plan.txt", "parent_id": docs}, b"first")])
    [other] = await send(user, [({"file_name": "log.txt", "parent_id": docs}, b"one")])
    entries = await send(user, [
        ({"file_name": "plan.txt", "parent_id": docs, "mode": "overwrite"}, b"second"),
        ({"file_name": "log.txt", "parent_id": docs, "mode": "update", "replaces": other["file"]["file_id"]}, b"two"),
        ({"file_name": "x.txt", "path": "/made/on/the/way/x.txt"}, b"deep"),
    ])
    assert [entry["status"] for entry in entries] == [201, 201, 201], entries
    versions = (await user.get(f"/dropbox/v1/files/{entries[0]['file']['file_id']}/versions")).body["versions"]
    assert [version["file_id"] for version in versions] == [old["file"]["file_id"]]
    assert entries[1]["file"]["path"] == "/docs/log.txt"
    assert entries[2]["file"]["path"] == "/made/on/the/way/x.txt"
    assert sorted(await names_in(user, docs)) == ["log.txt", "plan.txt"]


async def test_a_file_refused_is_its_own_entry_and_the_others_are_stored(gateway, http):
    user = await Api(http, gateway.url).signup()
    stranger = await Api(http, gateway.url).signup()
    theirs = await folder(stranger, "/private")
    entries = await send(user, [
        ({"file_name": "fine.bin"}, b"1"),
        ({"file_name": "x.bin", "parent_id": theirs}, b"2"),  # someone else's folder: as if none
        ({"file_name": "x.bin", "parent_id": "f" * 32}, b"3"),
        ({"file_name": ".."}, b"4"),
        ({"file_name": "also fine.bin"}, b"5"),
    ])
    assert [entry["status"] for entry in entries] == [201, 404, 404, 400, 201]
    assert [entry.get("error", {}).get("code") for entry in entries] == [None, "not_found", "not_found",
                                                                         "invalid_name", None]
    assert all(set(entry) == {"status", "error"} and entry["error"]["message"] for entry in entries[1:4])
    assert sorted(f["name"] for f in (await user.get("/dropbox/v1/files")).body["files"]) == ["also fine.bin",
                                                                                           "fine.bin"]
    assert (await stranger.get(f"/dropbox/v1/folders/{theirs}/entries")).body["entries"] == []


@pytest.mark.every_engine  # the usage counters, checked for the batch as a whole and then file by file
async def test_a_batch_over_the_quota_stores_what_fits_and_refuses_the_rest(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, user_quota_bytes=10_000, max_files_per_user=4)
    user = await Api(http, gateway.url).signup()
    entries = await send(user, [({"file_name": f"{i}.bin"}, os.urandom(3000)) for i in range(4)])
    assert [entry["status"] for entry in entries] == [201, 201, 201, 403]
    assert entries[3]["error"]["code"] == "quota_exceeded"
    entries = await send(user, [({"file_name": "small.bin"}, b"x"), ({"file_name": "more.bin"}, b"y")])
    assert [entry["status"] for entry in entries] == [201, 403]  # the cap on files
    usage = (await user.get("/dropbox/v1/users/me")).body
    assert usage["used_bytes"] == 9001


async def test_what_is_wrong_with_the_request_is_one_error_and_nothing_is_stored(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=1000)
    user = await Api(http, gateway.url).signup()

    async def refused(form: aiohttp.FormData | dict, status: int, code: str) -> dict:
        answer = await user.post(BATCH, **({"json": form} if isinstance(form, dict) else {"data": form}))
        assert answer.status == status and answer.body["error"]["code"] == code, answer.body
        return answer.body["error"]

    await refused({"file_name": "a"}, 400, "invalid_multipart")  # JSON, not a form
    await refused(form_of(("other", b"x")), 400, "invalid_multipart")
    await refused(form_of(("file", b"bytes")), 400, "invalid_multipart")  # no file_metadata before it
    await refused(form_of(("file_metadata", b'{"file_name": "a"}')), 400, "invalid_multipart")  # no file after it
    await refused(form_of(("file_metadata", b'{"file_name": "a"}'), ("file_metadata", b'{"file_name": "b"}'),
                          ("file", b"x")), 400, "invalid_multipart")
    await refused(form_of(("file_metadata", b'{"parent_id": "root"}'), ("file", b"x")), 400, "invalid_multipart")
    await refused(form_of(("file_metadata", b"[1]"), ("file", b"x")), 400, "invalid_json")
    error = await refused(batch_form([({"file_name": "a"}, b"1"), ({"file_name": "b", "mode": "sideways"}, b"2")]),
                          400, "invalid_field")
    assert error["index"] == 1 and error["field"] == "mode"
    await refused(batch_form([({"file_name": "a"}, os.urandom(1001))]), 413, "inline_upload_too_large")
    await refused(batch_form([({"file_name": f"{i}"}, b"x") for i in range(BATCH_MAX_FILES + 1)]), 413,
                  "batch_too_large")
    assert (await user.get("/dropbox/v1/files")).body["files"] == []
    assert (await user.get("/dropbox/v1/users/me")).body["used_bytes"] == 0


def form_of(*parts: tuple[str, bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in parts:
        form.add_field(name, value, filename="f" if name == "file" else None,
                       content_type="application/json" if name == "file_metadata" else "application/octet-stream")
    return form


async def test_a_batch_needs_an_access_token(gateway, http):
    answer = await Api(http, gateway.url).post(BATCH, data=batch_form([({"file_name": "a"}, b"1")]))
    assert answer.status == 401 and answer.body["error"]["code"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.tuples(st.sampled_from(["a.txt", "A.txt", "b.txt", "a (1).txt", "c"]),
                                 st.sampled_from(["add", "add", "overwrite"])), min_size=1, max_size=8),
       existing=st.lists(st.sampled_from(["a.txt", "b.txt", "a (1).txt"]), unique=True, max_size=3))
async def test_a_batch_names_files_as_the_same_files_sent_one_by_one_would_be(gateway, http, names, existing):
    """Property: whatever names (and modes) a batch holds and its folder holds already, the folder ends with the
    names that sending the same files alone, in order, gives (each with new content: no file is the answer
    of another)."""
    by_batch, one_by_one = await Api(http, gateway.url).signup(), await Api(http, gateway.url).signup()
    for user in (by_batch, one_by_one):
        for name in existing:
            await upload(user, os.urandom(8), DEFAULT_CHUNK, file_name=name)
    files = [({"file_name": name, "mode": mode}, os.urandom(16)) for name, mode in names]
    batched = await send(by_batch, files)
    alone = [(await send(one_by_one, [file]))[0] for file in files]
    assert [entry["file"]["name"] for entry in batched] == [entry["file"]["name"] for entry in alone]
    assert sorted(await names_in(by_batch, "root")) == sorted(await names_in(one_by_one, "root"))


async def test_a_batch_and_a_single_upload_use_the_same_content_rules(gateway, http):
    """A file the user holds already (elsewhere) is a copy of their own content; a claim made by the gateway
    from the bytes is what is stored, as for one inline upload."""
    user = await Api(http, gateway.url).signup()
    data = os.urandom(2000)
    held = await upload(user, data, DEFAULT_CHUNK, file_name="held.bin")
    [copy] = await send(user, [({"file_name": "copy.bin"}, data)])
    assert copy["status"] == 201 and copy["file"]["fingerprint"] == held["fingerprint"]
    assert make_claim(data, DEFAULT_CHUNK)["fingerprint"] == held["fingerprint"]
