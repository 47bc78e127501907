"""The store contract (storage/base.py), run against the in-memory store and the real embedded SeaweedFS.

Every test takes ``subject``: the store under test and ``send``, which sends a
presigned request the way a client does (a real HTTP PUT to SeaweedFS; the
memory store's ``send_presigned`` where no HTTP server exists) and returns the
store's status.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from yarl import URL

from storage import ChecksumMismatch, CompletedPart, StoreError, StoreUnavailable, UploadNotFound
from storage.base import ObjectStore, PresignedRequest
from storage.embedded import free_port
from storage.memory import InMemoryObjectStore
from storage.s3 import S3ObjectStore
from tests.harness import ACCESS_KEY, BUCKET, SECRET_KEY

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part allowed before the last

Send = Callable[[PresignedRequest, bytes, dict], Awaitable[int]]


@dataclass
class Subject:
    store: ObjectStore
    send: Send


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite(*parts: bytes) -> str:
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(parts)}"


def new_key() -> str:
    return f"contract/{secrets.token_hex(8)}"


@pytest.fixture(params=["memory", pytest.param("seaweedfs", marks=pytest.mark.real)])
async def subject(request, http) -> Subject:
    if request.param == "memory":
        memory = InMemoryObjectStore(BUCKET)

        async def send_to_memory(presigned: PresignedRequest, body: bytes, headers: dict) -> int:
            return memory.send_presigned(presigned.method, presigned.url, headers, body)

        yield Subject(memory, send_to_memory)
        return
    embedded = request.getfixturevalue("store")
    # Pages of two parts: every listing of more than two parts follows the store's pagination.
    s3 = S3ObjectStore(embedded.endpoint, ACCESS_KEY, SECRET_KEY, BUCKET, list_page_size=2)

    async def send_over_http(presigned: PresignedRequest, body: bytes, headers: dict) -> int:
        async with http.request(presigned.method, URL(presigned.url, encoded=True), data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    yield Subject(s3, send_over_http)
    await s3.close()


async def upload_parts(store: ObjectStore, key: str, *datas: bytes) -> tuple[str, list[CompletedPart]]:
    upload_id = await store.start_multipart(key)
    parts = []
    for number, data in enumerate(datas, start=1):
        etag = await store.upload_part(key, upload_id, number, data, b64sha(data))
        parts.append(CompletedPart(number, etag, b64sha(data)))
    return upload_id, parts


# --- parts ------------------------------------------------------------------------------------------------------

async def test_a_stored_part_is_listed_with_its_size_etag_and_checksum_where_listed(subject):
    store, key, data = subject.store, new_key(), os.urandom(1000)
    upload_id = await store.start_multipart(key)
    etag = await store.upload_part(key, upload_id, 1, data, b64sha(data))
    [part] = await store.list_parts(key, upload_id)
    assert (part.part_number, part.size, part.etag) == (1, 1000, etag)
    assert part.sha256_b64 in (None, b64sha(data))  # SeaweedFS lists no part checksums
    await store.abort_multipart(key, upload_id)


async def test_a_part_whose_bytes_differ_from_its_checksum_is_refused_and_not_kept(subject):
    store, key = subject.store, new_key()
    upload_id = await store.start_multipart(key)
    with pytest.raises(ChecksumMismatch):
        await store.upload_part(key, upload_id, 1, b"these bytes", b64sha(b"other bytes"))
    assert await store.list_parts(key, upload_id) == []
    await store.abort_multipart(key, upload_id)


async def test_a_part_sent_again_with_the_same_bytes_is_listed_once(subject):
    """A retried chunk: the same part number, the same bytes (its checksum is fixed)."""
    store, key, data = subject.store, new_key(), b"the same chunk"
    upload_id = await store.start_multipart(key)
    etag = await store.upload_part(key, upload_id, 1, data, b64sha(data))
    assert await store.upload_part(key, upload_id, 1, data, b64sha(data)) == etag
    assert [(p.part_number, p.size, p.etag) for p in await store.list_parts(key, upload_id)] == [(1, len(data), etag)]
    await store.abort_multipart(key, upload_id)


async def test_parts_are_listed_in_order_across_pages(subject):
    store, key = subject.store, new_key()
    upload_id = await store.start_multipart(key)
    for number in (5, 1, 4, 2, 3):
        data = f"part {number}".encode()
        await store.upload_part(key, upload_id, number, data, b64sha(data))
    assert [p.part_number for p in await store.list_parts(key, upload_id)] == [1, 2, 3, 4, 5]
    await store.abort_multipart(key, upload_id)


async def test_an_unknown_upload_is_not_found(subject):
    store, key = subject.store, new_key()
    with pytest.raises(UploadNotFound):
        await store.list_parts(key, "no-such-upload")
    with pytest.raises(UploadNotFound):
        await store.upload_part(key, "no-such-upload", 1, b"x", b64sha(b"x"))
    await store.abort_multipart(key, "no-such-upload")  # idempotent


# --- completion --------------------------------------------------------------------------------------------------

async def test_completion_answers_the_composite_checksum_and_ends_the_upload(subject):
    store, key = subject.store, new_key()
    first, last = os.urandom(PART), os.urandom(100)
    upload_id, parts = await upload_parts(store, key, first, last)
    assert await store.complete_multipart(key, upload_id, parts) == composite(first, last)
    stored = await store.stat(key)
    assert (stored.size, stored.sha256_checksum) == (PART + 100, composite(first, last))
    with pytest.raises(UploadNotFound):
        await store.list_parts(key, upload_id)
    with pytest.raises(UploadNotFound):
        await store.upload_part(key, upload_id, 3, b"late", b64sha(b"late"))
    await store.abort_multipart(key, upload_id)  # idempotent after completion too
    assert (await store.stat(key)).sha256_checksum == composite(first, last)  # ... and leaves the object alone
    await store.delete(key)


async def test_a_wrong_part_checksum_at_completion_is_a_mismatch_and_the_upload_stays_open(subject):
    store, key = subject.store, new_key()
    upload_id, parts = await upload_parts(store, key, os.urandom(PART), os.urandom(10))
    wrong = [parts[0], CompletedPart(2, parts[1].etag, b64sha(b"not part two"))]
    with pytest.raises(ChecksumMismatch):
        await store.complete_multipart(key, upload_id, wrong)
    assert len(await store.list_parts(key, upload_id)) == 2
    assert await store.stat(key) is None
    await store.abort_multipart(key, upload_id)
    with pytest.raises(UploadNotFound):
        await store.list_parts(key, upload_id)


async def test_a_part_the_store_lacks_or_another_etag_at_completion_is_a_mismatch(subject):
    store, key = subject.store, new_key()
    data = os.urandom(PART)
    upload_id, [part] = await upload_parts(store, key, data)
    for named in ([part, CompletedPart(2, part.etag, b64sha(b"never sent"))], [CompletedPart(1, "0" * 32, part.sha256_b64)]):
        with pytest.raises(ChecksumMismatch):
            await store.complete_multipart(key, upload_id, named)
    await store.abort_multipart(key, upload_id)


async def test_completion_takes_exactly_the_parts_named(subject):
    """The store cannot know a part is missing: the caller compares with list_parts first."""
    store, key = subject.store, new_key()
    one, two, three = os.urandom(PART), os.urandom(PART), os.urandom(10)
    upload_id, parts = await upload_parts(store, key, one, two, three)
    assert await store.complete_multipart(key, upload_id, [parts[0], parts[2]]) == composite(one, three)
    assert (await store.stat(key)).size == PART + 10
    await store.delete(key)


async def test_parts_out_of_order_or_too_small_are_refused(subject):
    store, key = subject.store, new_key()
    small, last = b"small", os.urandom(10)
    upload_id, parts = await upload_parts(store, key, small, last)
    with pytest.raises(StoreError) as refused:
        await store.complete_multipart(key, upload_id, parts[::-1])
    assert refused.value.code == "InvalidPartOrder"
    with pytest.raises(StoreError) as refused:
        await store.complete_multipart(key, upload_id, parts)
    assert refused.value.code == "EntityTooSmall"
    await store.abort_multipart(key, upload_id)


async def test_aborting_one_upload_leaves_the_object_and_other_uploads_alone(subject):
    store, key, data = subject.store, new_key(), os.urandom(100)
    upload_id, parts = await upload_parts(store, key, data)
    other, _ = await upload_parts(store, key, b"other")
    await store.complete_multipart(key, upload_id, parts)
    aborted, _ = await upload_parts(store, key, b"aborted")
    await store.abort_multipart(key, aborted)
    assert (await store.stat(key)).sha256_checksum == composite(data)
    assert [p.size for p in await store.list_parts(key, other)] == [5]
    await store.abort_multipart(key, other)
    await store.delete(key)


# --- whole objects -----------------------------------------------------------------------------------------------

async def test_put_stat_and_delete_a_whole_object(subject):
    store, key, data = subject.store, new_key(), os.urandom(300)
    assert await store.stat(key) is None
    await store.put_object(key, data, b64sha(data))
    stored = await store.stat(key)
    assert (stored.key, stored.size, stored.sha256_checksum) == (key, 300, b64sha(data))
    with pytest.raises(ChecksumMismatch):
        await store.put_object(key, b"replacement", b64sha(b"something else"))
    assert (await store.stat(key)).sha256_checksum == b64sha(data)  # nothing was stored
    await store.delete(key)
    assert await store.stat(key) is None
    await store.delete(key)  # idempotent


async def test_an_object_is_read_in_pieces_in_order_and_a_missing_one_is_no_such_key(subject):
    store, key = subject.store, new_key()
    data = os.urandom(2 * MIB + 17)
    await store.put_object(key, data, b64sha(data))
    pieces = [piece async for piece in store.read(key, MIB)]
    assert [len(piece) for piece in pieces] == [MIB, MIB, 17] and b"".join(pieces) == data
    early = store.read(key, 1000)
    assert await anext(early) == data[:1000]
    await early.aclose()  # a reader that goes away early frees what it held
    with pytest.raises(StoreError) as missing:
        [piece async for piece in store.read(new_key(), MIB)]
    assert missing.value.code == "NoSuchKey"
    await store.delete(key)

async def test_a_whole_object_reads_back_as_stored_and_a_missing_one_is_none(subject):
    store, key, data = subject.store, new_key(), os.urandom(70_000)
    assert await store.get_object(key) is None
    await store.put_object(key, data, b64sha(data))
    assert await store.get_object(key) == data
    await store.delete(key)
    assert await store.get_object(key) is None


async def test_the_bucket_is_there(subject):
    await subject.store.ensure_bucket()
    await subject.store.check()


# --- presigned parts ---------------------------------------------------------------------------------------------

async def test_presigned_parts_sign_the_checksum_as_a_header(subject):
    store, key = subject.store, new_key()
    datas = [os.urandom(64) for _ in range(3)]
    upload_id = await store.start_multipart(key)
    asked = [(3, b64sha(datas[2])), (1, b64sha(datas[0])), (2, b64sha(datas[1]))]
    before = int(time.time())
    presigned = await store.presign_upload_parts(key, upload_id, asked, expires=300)
    assert len(presigned) == 3
    for (number, checksum), request in zip(asked, presigned, strict=True):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        assert request.method == "PUT"
        assert request.headers == {"x-amz-checksum-sha256": checksum}
        assert query["X-Amz-SignedHeaders"] == "host;x-amz-checksum-sha256"
        assert (query["partNumber"], query["uploadId"], query["X-Amz-Expires"]) == (str(number), upload_id, "300")
        assert not any(name.lower().startswith("x-amz-checksum") or name.lower().startswith("x-amz-sdk") for name in query)
        assert before + 300 <= request.expires_at <= int(time.time()) + 300
    await store.abort_multipart(key, upload_id)


async def test_a_presigned_part_takes_only_its_own_bytes_with_its_header(subject):
    store, send, key = subject.store, subject.send, new_key()
    data = os.urandom(4096)
    upload_id = await store.start_multipart(key)
    [request] = await store.presign_upload_parts(key, upload_id, [(1, b64sha(data))], expires=300)
    other = os.urandom(4096)
    assert await send(request, other, request.headers) == 400  # other bytes
    assert await send(request, data, {}) == 403  # the signed header dropped
    assert await send(request, other, {"x-amz-checksum-sha256": b64sha(other)}) == 403  # ... or changed
    assert await store.list_parts(key, upload_id) == []
    assert await send(request, data, request.headers) == 200
    [part] = await store.list_parts(key, upload_id)
    assert (part.part_number, part.size) == (1, 4096)
    assert await store.complete_multipart(key, upload_id, [CompletedPart(1, part.etag, b64sha(data))]) == composite(data)
    await store.delete(key)


async def test_a_presigned_part_of_an_unknown_upload_is_refused_when_used(subject):
    store, send, key = subject.store, subject.send, new_key()
    [request] = await store.presign_upload_parts(key, "no-such-upload", [(1, b64sha(b"x"))], expires=300)
    assert await send(request, b"x", request.headers) == 404


# --- an unreachable store ----------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "s3"])
async def unreachable(request) -> ObjectStore:
    if request.param == "memory":
        yield InMemoryObjectStore(BUCKET, available=False)
        return
    closed = S3ObjectStore(f"http://127.0.0.1:{free_port()}", ACCESS_KEY, SECRET_KEY, BUCKET)
    yield closed
    await closed.close()


async def test_a_store_that_does_not_answer_is_unavailable(unreachable):
    for call in (
        unreachable.check(),
        unreachable.start_multipart("k"),
        unreachable.list_parts("k", "u"),
        unreachable.stat("k"),
        unreachable.put_object("k", b"", b64sha(b"")),
    ):
        with pytest.raises(StoreUnavailable):
            await call
