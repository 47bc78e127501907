"""The S3 store against MinIO's recorded answers (tests/fixtures/minio/README.md says where each is from).

MinIO cannot run here. A small HTTP server on 127.0.0.1 replays its bytes to the
real S3ObjectStore, so botocore parses what MinIO sends: a replay of recorded
payloads, not a stand-in for our code. The server also keeps what it was asked,
to check what we send MinIO.
"""
from __future__ import annotations

import base64
import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from protocol.fingerprints import composite_checksum, file_fingerprint
from storage import ChecksumMismatch, CompletedPart, StoredPart, StoreUnavailable, UploadNotFound
from storage.embedded import free_port
from storage.s3 import S3ObjectStore

FIXTURES = Path(__file__).parent / "fixtures" / "minio"
RECORDED = json.loads((FIXTURES / "recorded.json").read_text())
BUCKET = "dropbox-content"
# The recorded file (see the README): two parts, their digests give the key and every checksum.
PARTS = [bytes(range(256)) * (5 * 1024 * 1024 // 256), b"the last part of the recorded file\n"]
DIGESTS = [hashlib.sha256(p).hexdigest() for p in PARTS]
FINGERPRINT = file_fingerprint(DIGESTS)
KEY = f"content/{FINGERPRINT}"
UPLOAD_ID = (
    "NmYwYTFjNGUtMmE5Yi00ZDhlLTlhNDMtNWUxZDJiNmM3ZjgwLjNiMWYzYTBlLThjMWQtNGY3YS05ZTU1LTJkNmMwYjlhNGU3MXgxNzU3NDkyMDQzNTEyODc2NTQz"
)
MINIO_HEADERS = {
    "Server": "MinIO",
    "Accept-Ranges": "bytes",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Vary": "Origin, Accept-Encoding",
    "X-Amz-Id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
    "X-Amz-Request-Id": "1863DDB3B5290DFF",
    "X-Content-Type-Options": "nosniff",
    "X-Xss-Protection": "1; mode=block",
}


def b64(digest_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(digest_hex)).decode()


@dataclass
class Asked:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordedMinio:
    """Answers each S3 operation with the recording named in ``answers``: MinIO's success by default."""

    answers: dict[str, str] = field(
        default_factory=lambda: {"create": "initiate_multipart_upload", "complete": "complete_multipart_upload_result"}
    )
    asked: list[Asked] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def operation(request: web.Request) -> str:
        query = request.query
        if request.method == "POST":
            return "create" if "uploads" in query else "complete"
        if request.method == "PUT" and "partNumber" in query:
            return "upload_part"
        if request.method == "GET" and "uploadId" in query:
            return "list_parts_page_2" if int(query.get("part-number-marker", "0")) else "list_parts_page_1"
        if request.method == "DELETE" and "uploadId" in query:
            return "abort"
        return f"{request.method} {request.path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.asked.append(Asked(request.method, request.path, dict(request.query), dict(request.headers), await request.read()))
        operation = self.operation(request)
        name = self.answers.get(operation, operation)
        recording = RECORDED[name]
        body = (FIXTURES / recording["body"]).read_bytes() if recording["body"] else b""
        headers = {**MINIO_HEADERS, **({"Content-Type": "application/xml"} if body else {}), **recording.get("headers", {})}
        if not recording.get("chunked"):
            return web.Response(status=recording["status"], body=body, headers=headers)
        # The old MinIO's late error: the 200 and the first bytes go out before the error is known.
        response = web.StreamResponse(status=recording["status"], headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        split = body.index(b"<Error>")
        await response.write(body[:split])
        await response.write(body[split:])
        await response.write_eof()
        return response


@pytest.fixture
async def minio():
    replay = RecordedMinio()
    app = web.Application(client_max_size=8 * 1024 * 1024)  # a 5 MiB part
    app.router.add_route("*", "/{tail:.*}", replay.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", replay.port).start()
    yield replay
    await runner.cleanup()


@pytest.fixture
async def s3(minio):
    """The real S3 store, listing one part per page as the recorded pages were asked for."""
    s3 = S3ObjectStore(minio.url, "minioadmin", "minioadmin-secret", BUCKET, list_page_size=1)
    yield s3
    await s3.close()


def completed_parts() -> list[CompletedPart]:
    etags = [hashlib.md5(p).hexdigest() for p in PARTS]  # noqa: S324 - S3's part ETag
    return [CompletedPart(n, etag, b64(d)) for n, (etag, d) in enumerate(zip(etags, DIGESTS, strict=True), start=1)]


async def test_starting_an_upload_asks_for_composite_sha256_checksums(s3, minio):
    assert await s3.start_multipart(KEY) == UPLOAD_ID
    [asked] = minio.asked
    assert (asked.method, asked.path, "uploads" in asked.query) == ("POST", f"/{BUCKET}/{KEY}", True)
    assert asked.headers["x-amz-checksum-algorithm"] == "SHA256"
    assert asked.headers["x-amz-checksum-type"] == "COMPOSITE"


async def test_list_parts_reads_every_parts_checksum_across_pages(s3, minio):
    parts = await s3.list_parts(KEY, UPLOAD_ID)
    assert parts == [
        StoredPart(1, len(PARTS[0]), hashlib.md5(PARTS[0]).hexdigest(), b64(DIGESTS[0])),  # noqa: S324
        StoredPart(2, len(PARTS[1]), hashlib.md5(PARTS[1]).hexdigest(), b64(DIGESTS[1])),  # noqa: S324
    ]
    assert [(a.query.get("max-parts"), a.query.get("part-number-marker")) for a in minio.asked] == [("1", None), ("1", "1")]


async def test_completion_sends_each_parts_checksum_and_returns_the_composite(s3, minio):
    checksum = await s3.complete_multipart(KEY, UPLOAD_ID, completed_parts())
    # MinIO's composite checksum is the file fingerprint of the API contract, in base64.
    assert checksum == composite_checksum(FINGERPRINT, 2)
    [asked] = minio.asked
    assert asked.query["uploadId"] == UPLOAD_ID
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    sent = [
        (p.findtext("s3:PartNumber", namespaces=ns), p.findtext("s3:ETag", namespaces=ns), p.findtext("s3:ChecksumSHA256", namespaces=ns))
        for p in ET.fromstring(asked.body).findall("s3:Part", ns)
    ]
    assert sent == [(str(p.part_number), f'"{p.etag}"', p.sha256_b64) for p in completed_parts()]


@pytest.mark.parametrize("recording", ["complete_invalid_part", "complete_invalid_part_in_200"])
async def test_a_completion_minio_refuses_is_a_checksum_mismatch(s3, minio, recording):
    """Today's MinIO answers 400 InvalidPart; before 2023-07 (and S3 still) the error came inside a 200."""
    minio.answers["complete"] = recording
    with pytest.raises(ChecksumMismatch) as refused:
        await s3.complete_multipart(KEY, UPLOAD_ID, completed_parts())
    assert refused.value.code == "InvalidPart"


async def test_a_part_minio_refuses_for_its_checksum_is_a_mismatch(s3, minio):
    minio.answers["upload_part"] = "upload_part_checksum_mismatch"
    with pytest.raises(ChecksumMismatch) as refused:
        await s3.upload_part(KEY, UPLOAD_ID, 2, b"not the recorded part", b64(DIGESTS[1]))
    assert refused.value.code == "XAmzContentChecksumMismatch"
    [asked] = minio.asked
    # The checksum we gave, and no checksum of botocore's own.
    assert asked.headers["x-amz-checksum-sha256"] == b64(DIGESTS[1])
    assert not [h for h in asked.headers if h.lower().startswith(("x-amz-sdk-checksum", "x-amz-checksum-crc"))]


async def test_a_part_minio_accepts_returns_its_etag(s3, minio):
    assert await s3.upload_part(KEY, UPLOAD_ID, 1, PARTS[0], b64(DIGESTS[0])) == hashlib.md5(PARTS[0]).hexdigest()  # noqa: S324


async def test_an_upload_minio_does_not_know_is_not_found(s3, minio):
    minio.answers["list_parts_page_1"] = "no_such_upload"
    minio.answers["abort"] = "no_such_upload"
    with pytest.raises(UploadNotFound):
        await s3.list_parts(KEY, UPLOAD_ID)
    await s3.abort_multipart(KEY, UPLOAD_ID)  # aborting is idempotent


async def test_minio_slowing_down_is_unavailable(s3, minio):
    minio.answers["upload_part"] = "slow_down_write"
    with pytest.raises(StoreUnavailable):
        await s3.upload_part(KEY, UPLOAD_ID, 1, PARTS[0], b64(DIGESTS[0]))
