"""Chunked uploads straight to the real store, verified by the store, resumable and deduplicated."""
from __future__ import annotations

import asyncio
import hashlib
import os

import warnings

import pytest
from hypothesis import given, strategies as st

from gateway.core.content import content_key
from tests.harness import Api, make_claim, put_chunks, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB  # the smallest chunk size the gateway accepts keeps the files small


async def stored_bytes(gateway, fingerprint: str) -> bytes:
    """Read the object back from the store with the gateway's own credentials (not through the gateway)."""
    from tests.harness import BUCKET, raw_s3

    def read() -> bytes:
        answer = raw_s3(gateway.config.s3_endpoint).get_object(Bucket=BUCKET, Key=content_key(fingerprint))
        return answer["Body"].read()

    return await asyncio.to_thread(read)


async def test_files_of_edge_sizes_end_uploaded_with_the_right_bytes(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    for size in (0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17):
        data = os.urandom(size)
        file = await upload(user, data, CHUNK, file_name=f"size-{size}.bin")
        assert file["status"] == "uploaded", (size, file)
        assert file["total_chunks"] == file["uploaded_chunks"] == -(-size // CHUNK)
        assert all(c["status"] == "uploaded" for c in file["chunks"])
        assert file["uploaded_by"] == user.username
        stored = await stored_bytes(gateway, file["fingerprint"])
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest(), size


async def test_inconsistent_claims_are_400_naming_the_problem(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    good = make_claim(os.urandom(CHUNK + 5), CHUNK)
    cases = {
        "wrong_chunk_size": {**good, "chunk_size": CHUNK * 2},
        "wrong_chunk_count": {**good, "chunks": good["chunks"][:1]},
        "invalid_fingerprint": {**good, "chunks": [good["chunks"][0].upper(), good["chunks"][1]]},
        "fingerprint_mismatch": {**good, "fingerprint": hashlib.sha256(b"other").hexdigest()},
        "file_too_large": {**good, "file_size": gateway.config.max_file_size + 1},
        "invalid_field": {**good, "file_size": "12"},
    }
    for code, body in cases.items():
        response = await user.post("/dropbox/v1/files", json=body)
        assert response.status == 400, code
        assert response.body["error"]["code"] == code, (code, response.body)
        assert response.body["error"]["message"]
    garbage = await user.post("/dropbox/v1/files", data=b"{not json", headers={"Content-Type": "application/json"})
    assert garbage.status == 400 and garbage.body["error"]["code"] == "invalid_json"


async def test_wrong_bytes_never_make_an_uploaded_file(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 100)
    started = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK))
    file_id = started.body["file_id"]
    urls = (await user.post(f"/dropbox/v1/files/{file_id}/upload-urls", json={"chunks": [1]})).body["urls"]
    entry = urls[0]
    forged = os.urandom(100)
    # With the signed checksum header the store checks the bytes; without it the signature fails.
    async with http.put(entry["url"], data=forged, headers=entry["headers"]) as resp:
        assert resp.status == 400, await resp.text()
        assert "BadDigest" in await resp.text()
    async with http.put(entry["url"], data=forged) as resp:
        assert resp.status == 403
    # A forged checksum header for the forged bytes breaks the signature too.
    import base64

    forged_sum = base64.b64encode(hashlib.sha256(forged).digest()).decode()
    async with http.put(entry["url"], data=forged, headers={"x-amz-checksum-sha256": forged_sum}) as resp:
        assert resp.status == 403
    done = await user.post(f"/dropbox/v1/files/{file_id}/complete")
    assert done.status == 409
    assert done.body["error"]["code"] == "chunks_missing"
    assert done.body["error"]["missing"] == [0, 1]
    info = await user.get(f"/dropbox/v1/files/{file_id}")
    assert info.body["status"] == "uploading"
    assert "download_url" not in info.body


async def test_resume_after_gateway_restart_sends_only_missing_chunks(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(4 * CHUNK)
    claim = make_claim(data, CHUNK, file_name="big.iso")
    started = await user.post("/dropbox/v1/files", json=claim)
    assert started.status == 201
    file_id = started.body["file_id"]
    assert await put_chunks(user, file_id, data, CHUNK, [0, 2]) == [200, 200]

    await gateway.restart()  # a crash between chunks; the SQLite file and the store remain

    found = await user.get(f"/dropbox/v1/files?fingerprint={claim['fingerprint']}")
    assert [f["file_id"] for f in found.body["files"]] == [file_id]
    resumed = await user.post("/dropbox/v1/files", json=claim)
    assert resumed.status == 200
    assert resumed.body["file_id"] == file_id
    statuses = {c["index"]: c["status"] for c in resumed.body["chunks"]}
    assert statuses == {0: "uploaded", 1: "pending", 2: "uploaded", 3: "pending"}
    # With no body, upload-urls hands out exactly the missing chunks.
    urls = await user.post(f"/dropbox/v1/files/{file_id}/upload-urls")
    assert [u["index"] for u in urls.body["urls"]] == [1, 3]
    assert await put_chunks(user, file_id, data, CHUNK, [1, 3]) == [200, 200]
    done = await user.post(f"/dropbox/v1/files/{file_id}/complete")
    assert done.status == 200 and done.body["status"] == "uploaded"
    assert hashlib.sha256(await stored_bytes(gateway, claim["fingerprint"])).digest() == hashlib.sha256(data).digest()


async def test_same_user_reupload_moves_no_bytes(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 3)
    first = await upload(user, data, CHUNK, file_name="a.bin")
    again = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK, file_name="a.bin"))
    assert again.status == 200 and again.body["file_id"] == first["file_id"]
    copy = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK, file_name="copy of a.bin"))
    assert copy.status == 201
    assert copy.body["status"] == "uploaded"
    assert copy.body["file_id"] != first["file_id"]
    urls = await user.post(f"/dropbox/v1/files/{copy.body['file_id']}/upload-urls")
    assert urls.status == 409  # nothing to upload


async def test_knowing_a_fingerprint_gives_another_user_nothing(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, thief = await api.signup(), await api.signup()
    data = os.urandom(2 * CHUNK)
    original = await upload(owner, data, CHUNK, file_name="secret.pdf")
    claim = make_claim(data, CHUNK, file_name="stolen.pdf")
    attempt = await thief.post("/dropbox/v1/files", json=claim)
    assert attempt.status == 201
    assert attempt.body["status"] == "uploading"
    assert "download_url" not in attempt.body
    assert all(c["status"] == "pending" for c in attempt.body["chunks"])
    done = await thief.post(f"/dropbox/v1/files/{attempt.body['file_id']}/complete")
    assert done.status == 409 and done.body["error"]["code"] == "chunks_missing"
    assert (await thief.get(f"/dropbox/v1/files/{original['file_id']}")).status == 404
    assert (await thief.get(f"/dropbox/v1/files/{attempt.body['file_id']}/content")).status == 409
    # Uploading the bytes themselves works, and the content is still stored once.
    statuses = await put_chunks(thief, attempt.body["file_id"], data, CHUNK)
    assert statuses == [200, 200]
    done = await thief.post(f"/dropbox/v1/files/{attempt.body['file_id']}/complete")
    assert done.body["status"] == "uploaded"


async def test_expired_upload_urls_are_refused_by_the_store(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, upload_url_ttl=1)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(1000)
    started = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK))
    urls = (await user.post(f"/dropbox/v1/files/{started.body['file_id']}/upload-urls")).body["urls"]
    await asyncio.sleep(2.5)
    async with http.put(urls[0]["url"], data=data, headers=urls[0]["headers"]) as resp:
        assert resp.status == 403
        assert "expired" in (await resp.text()).lower()


async def test_names_are_only_metadata(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    for name in ("..passwd", "名前.txt", "c d.txt", "😀" * 10, "<b>x"):
        data = os.urandom(10)
        file = await upload(user, data, CHUNK, file_name=name)
        assert file["file_name"] == name
        assert file["status"] == "uploaded"
        assert name not in content_key(file["fingerprint"])
    # A name the tree cannot hold (contract v1.2) is refused before anything is stored.
    for name in ("../../etc/passwd", "a/b\\c d.txt", "..", "tab\there"):
        refused = await user.post("/dropbox/v1/files", json=make_claim(os.urandom(10), CHUNK, file_name=name))
        assert refused.status == 400 and refused.body["error"]["code"] == "invalid_name", (name, refused.body)


async def test_inline_upload_with_curl_style_form(make_gateway, http):
    import aiohttp

    gateway = await make_gateway(chunk_size=CHUNK, inline_upload_limit=2 * CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 1234)
    form = aiohttp.FormData()
    form.add_field("file_metadata", '{"file_name": "notes.txt", "file_type": "text/plain"}', content_type="application/json")
    form.add_field("file", data, filename="ignored.txt", content_type="application/octet-stream")
    response = await user.post("/dropbox/v1/files", data=form)
    assert response.status == 201, response.body
    assert response.body["status"] == "uploaded"
    assert response.body["file_name"] == "notes.txt" and response.body["file_type"] == "text/plain"
    assert hashlib.sha256(await stored_bytes(gateway, response.body["fingerprint"])).digest() == hashlib.sha256(data).digest()
    too_big = aiohttp.FormData()
    too_big.add_field("file_metadata", '{"file_name": "big"}')
    too_big.add_field("file", os.urandom(2 * CHUNK + 1), filename="big")
    refused = await user.post("/dropbox/v1/files", data=too_big)
    assert refused.status == 413 and refused.body["error"]["code"] == "inline_upload_too_large"


async def test_a_batch_of_small_files_is_stored_whole_and_checked_by_the_real_store(make_gateway, http):
    """POST /dropbox/v1/files/batch (beyond the contract; its HTTP shape is in tests/test_batches.py): each
    file's bytes are in the store under its content, as one inline upload's are."""
    from tests.test_batches import send

    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    files = [({"file_name": f"small-{i}.bin"}, os.urandom(4096 * (i + 1))) for i in range(6)]
    entries = await send(user, files)
    assert [entry["status"] for entry in entries] == [201] * 6
    for (_, data), entry in zip(files, entries, strict=True):
        assert await stored_bytes(gateway, entry["file"]["fingerprint"]) == data


@pytest.mark.parametrize("header", ["multipart/form-data; boundary=x", "Multipart/Form-Data;boundary=x",
                                    " multipart/form-data ", "application/json", "", "multipart/form-datax",
                                    "multipart/mixed; boundary=x", "application/json; charset=utf-8"])
def test_an_inline_upload_is_told_by_its_media_type_as_aiohttp_reads_it(header):
    from aiohttp.test_utils import make_mocked_request

    from gateway.http.routes.uploads import is_form

    request = make_mocked_request("POST", "/dropbox/v1/files", headers={"Content-Type": header} if header else {})
    assert is_form(request) == (request.content_type == "multipart/form-data")


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)  # what a header line holds


@given(name=HEADER_TEXT, filename=st.none() | HEADER_TEXT, spaces=st.sampled_from(["", " "]),
       quote=st.sampled_from(['"', ""]))
def test_a_form_part_is_named_as_aiohttp_names_it(name, filename, spaces, quote):
    from aiohttp import BodyPartReader
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.http.routes.uploads import part_name

    header = f"form-data;{spaces} name={quote}{name}{quote}" + (
        "" if filename is None else f'; filename="{filename}"')
    headers = CIMultiDictProxy(CIMultiDict({"Content-Disposition": header}))
    part = BodyPartReader(b"--x", headers, None)  # type: ignore[arg-type] - only its headers are read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aiohttp warns of the headers it does not take
        assert part_name(part) == BodyPartReader(b"--x", headers, None).name  # type: ignore[arg-type]


async def test_an_inline_upload_without_a_file_part_is_refused(make_gateway, http):
    import aiohttp

    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    form = aiohttp.FormData()
    form.add_field("file_metadata", '{"file_name": "nothing.txt"}', content_type="application/json")
    form.add_field("other", "x")  # multipart, so aiohttp sends it as form-data
    refused = await user.post("/dropbox/v1/files", data=form)
    assert refused.status == 400 and refused.body["error"]["code"] == "invalid_multipart"
    only_metadata = aiohttp.FormData()
    only_metadata.add_field("file_metadata", '{"file_name": "nothing.txt"}', content_type="application/json")
    only_metadata.add_field("file_metadata", '{"file_name": "nothing.txt"}', content_type="application/json")
    refused = await user.post("/dropbox/v1/files", data=only_metadata)
    assert refused.status == 400 and refused.body["error"]["code"] == "invalid_multipart"
    assert "`file`" in refused.body["error"]["message"]
    assert (await user.get("/dropbox/v1/files")).body["files"] == []  # no empty file was made


async def test_a_malformed_form_part_header_is_a_json_400_with_a_request_id(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    boundary = "form-boundary-1234"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="\x19"\r\n\r\n'
        "x\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    answer = await user.post(
        "/dropbox/v1/files", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert answer.status == 400, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body["error"]["code"] == "invalid_multipart"
    assert answer.headers.get("X-Request-Id")


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_starts_each_see_their_own_new_file(make_gateway, http):
    # Regression: reads once shared a SQLite snapshot pinned by another request's open
    # statement, so a file just created could answer 404 under concurrency.
    gateway = await make_gateway(chunk_size=CHUNK, max_uploads_in_progress=60)
    user = await Api(http, gateway.url).signup()
    claims = [make_claim(os.urandom(64), CHUNK, file_name=f"f{i}") for i in range(60)]
    answers = await asyncio.gather(*(user.post("/dropbox/v1/files", json=claim) for claim in claims))
    assert [a.status for a in answers] == [201] * len(claims)
    assert len({a.body["file_id"] for a in answers}) == len(claims)


async def test_bytes_that_slip_past_the_part_check_fail_the_file_at_completion(make_gateway, http):
    """A part written without its checksum (as a store that skipped the check at PUT would
    hold it) is caught when the store completes with every part's checksum."""
    from tests.harness import BUCKET, raw_s3

    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 10)
    claim = make_claim(data, CHUNK)
    file_id = (await user.post("/dropbox/v1/files", json=claim)).body["file_id"]
    assert await put_chunks(user, file_id, data, CHUNK, [0]) == [200]
    upload_id = await gateway.core.db.fetchval("SELECT upload_id FROM uploads WHERE file_id = :id", {"id": file_id})
    raw = raw_s3(gateway.config.s3_endpoint)
    await asyncio.to_thread(raw.upload_part, Bucket=BUCKET, Key=content_key(claim["fingerprint"]),
                            UploadId=upload_id, PartNumber=2, Body=os.urandom(10))

    done = await user.post(f"/dropbox/v1/files/{file_id}/complete")
    assert done.status == 422
    assert done.body["error"]["code"] == "verification_failed"
    assert "do not match" in done.body["error"]["message"]
    body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
    assert body["status"] == "failed" and "download_url" not in body
    assert await gateway.core.store.stat(content_key(claim["fingerprint"])) is None
    from storage import UploadNotFound

    with pytest.raises(UploadNotFound):  # the partial data is gone from the store
        await gateway.core.store.list_parts(content_key(claim["fingerprint"]), upload_id)


async def test_after_deleting_the_last_copy_the_bytes_must_move_again(make_gateway, http):

    gateway = await make_gateway(chunk_size=CHUNK)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(1000)
    first = await upload(user, data, CHUNK, file_name="only-copy.bin")
    assert (await user.delete(f"/dropbox/v1/files/{first['file_id']}")).status == 204  # to the trash
    assert await gateway.core.store.stat(content_key(first["fingerprint"])) is not None
    assert (await user.delete(f"/dropbox/v1/trash/{first['file_id']}")).status == 204  # deleted for good
    assert await gateway.core.store.stat(content_key(first["fingerprint"])) is None
    again = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK, file_name="new-name.bin"))
    assert again.status == 201 and again.body["status"] == "uploading"
    file = await upload(user, data, CHUNK, file_name="new-name.bin")
    assert file["status"] == "uploaded"
    assert hashlib.sha256(await stored_bytes(gateway, file["fingerprint"])).digest() == hashlib.sha256(data).digest()
