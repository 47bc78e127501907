"""The store contract (storage/base.py) in memory, for fast tests of the gateway's core.

It keeps the same promises as a real store, checked by the same tests
(tests/test_store_contract.py): parts and objects are refused unless their
bytes hash to the checksum given, completion checks every part again and
answers a composite ``<base64>-N`` checksum, an upload is gone
(UploadNotFound) after completion or abort, a completion takes exactly the
parts it names. Where real stores differ it behaves as MinIO and S3 do: part
checksums are listed, a part number sent again replaces the earlier part.

Its presigned URLs cannot travel over HTTP; :meth:`InMemoryObjectStore.send_presigned`
is the request a client would send, answered with the status a store would
give: the URL is signed (HMAC over method, path, query and the signed header),
so dropping or changing the checksum header is refused as S3 refuses it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from storage.base import (
    ChecksumMismatch,
    CompletedPart,
    PresignedRequest,
    StoredObject,
    StoredPart,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's and MinIO's floor for every part but the last
MAX_PART_NUMBER = 10_000
SIGNED_HEADERS = "host;x-amz-checksum-sha256"
CHECKSUM_HEADER = "x-amz-checksum-sha256"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite_checksum(part_checksums: Sequence[str]) -> str:
    """S3's composite checksum: SHA-256 over the parts' raw digests, base64, then ``-N``."""
    joined = b"".join(base64.b64decode(c) for c in part_checksums)
    return f"{sha256_b64(joined)}-{len(part_checksums)}"


@dataclass(frozen=True)
class _Blob:
    data: bytes
    sha256_b64: str

    @property
    def etag(self) -> str:
        return hashlib.md5(self.data).hexdigest()  # noqa: S324 - S3's ETag of a part


@dataclass
class _Upload:
    key: str
    parts: dict[int, _Blob] = field(default_factory=dict)


@dataclass
class InMemoryObjectStore:
    """One bucket in memory. ``available = False`` makes every call raise StoreUnavailable."""

    bucket: str = "memory"
    endpoint: str = "memory://store"
    clock: Callable[[], float] = time.time
    available: bool = True
    _objects: dict[str, _Blob] = field(default_factory=dict, repr=False)
    _uploads: dict[str, _Upload] = field(default_factory=dict, repr=False)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def _answer(self) -> None:
        if not self.available:
            raise StoreUnavailable(f"the store at {self.endpoint} is unreachable (available=False)")

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self._uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise UploadNotFound(f"{key}: the store has no such multipart upload")
        return upload

    @staticmethod
    def _checked(data: bytes, checksum: str, what: str) -> _Blob:
        if sha256_b64(data) != checksum:
            raise ChecksumMismatch(f"{what}: the bytes do not hash to the checksum given", "BadDigest")
        return _Blob(bytes(data), checksum)

    async def check(self) -> None:
        self._answer()

    async def ensure_bucket(self) -> None:
        self._answer()

    async def start_multipart(self, key: str) -> str:
        self._answer()
        upload_id = secrets.token_urlsafe(24)
        self._uploads[upload_id] = _Upload(key)
        return upload_id

    async def presign_upload_parts(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]], expires: int
    ) -> list[PresignedRequest]:
        now = int(self.clock())
        return [self._presign(key, upload_id, number, checksum, now, expires) for number, checksum in parts]

    def _presign(self, key: str, upload_id: str, number: int, checksum: str, now: int, expires: int) -> PresignedRequest:
        path = f"/{self.bucket}/{quote(key, safe='/')}"
        query = {
            "uploadId": upload_id,
            "partNumber": str(number),
            "X-Amz-Algorithm": "MEMORY-HMAC-SHA256",
            "X-Amz-Date": str(now),
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": SIGNED_HEADERS,
        }
        signature = self._signature("PUT", path, query, checksum)
        url = f"{self.endpoint}{path}?{urlencode(query)}&X-Amz-Signature={signature}"
        return PresignedRequest("PUT", url, {CHECKSUM_HEADER: checksum}, now + expires)

    def _signature(self, method: str, path: str, query: Mapping[str, str], checksum: str) -> str:
        canonical = "\n".join([method, path, urlencode(sorted(query.items())), f"{CHECKSUM_HEADER}:{checksum}"])
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def send_presigned(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> int:
        """Send ``body`` with a URL of :meth:`presign_upload_parts`, as a client would
        over HTTP; return the status a store answers: 200 stored, 400 the bytes do
        not match the signed checksum, 403 a signature that does not hold (a header
        dropped or changed, another URL, expired), 404 no such upload."""
        if not self.available:
            return 503
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        signature = query.pop("X-Amz-Signature", "")
        checksum = {k.lower(): v for k, v in headers.items()}.get(CHECKSUM_HEADER, "")
        expected = self._signature(method.upper(), parts.path, query, checksum)
        expired = int(query.get("X-Amz-Date", "0")) + int(query.get("X-Amz-Expires", "0")) < self.clock()
        if not hmac.compare_digest(signature, expected) or expired:
            return 403
        key = parts.path.split("/", 2)[2]
        upload = self._uploads.get(query["uploadId"])
        if upload is None or quote(upload.key, safe="/") != key:
            return 404
        if sha256_b64(body) != checksum:
            return 400
        upload.parts[int(query["partNumber"])] = _Blob(bytes(body), checksum)
        return 200

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, sha256_b64: str
    ) -> str:
        self._answer()
        upload = self._upload(key, upload_id)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise StoreError(f"part number {part_number} is outside 1..{MAX_PART_NUMBER}", "InvalidArgument")
        blob = self._checked(data, sha256_b64, f"upload part {part_number}")
        upload.parts[part_number] = blob
        return blob.etag

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        self._answer()
        upload = self._upload(key, upload_id)
        return [
            StoredPart(number, len(blob.data), blob.etag, blob.sha256_b64)
            for number, blob in sorted(upload.parts.items())
        ]

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> str | None:
        self._answer()
        upload = self._upload(key, upload_id)
        numbers = [p.part_number for p in parts]
        if not parts:
            raise StoreError("complete multipart upload: no parts given", "MalformedXML")
        if numbers != sorted(set(numbers)):
            raise StoreError("complete multipart upload: parts not in ascending order", "InvalidPartOrder")
        blobs = []
        for part in parts:
            blob = upload.parts.get(part.part_number)
            if blob is None or blob.etag != part.etag.strip('"'):
                raise ChecksumMismatch(f"part {part.part_number}: no such part, or another ETag", "InvalidPart")
            if blob.sha256_b64 != part.sha256_b64:
                raise ChecksumMismatch(f"part {part.part_number}: the checksum given is not the part's", "BadDigest")
            blobs.append(blob)
        if any(len(blob.data) < MIN_PART_SIZE for blob in blobs[:-1]):
            raise StoreError("complete multipart upload: a part before the last is under 5 MiB", "EntityTooSmall")
        checksum = composite_checksum([blob.sha256_b64 for blob in blobs])
        self._objects[key] = _Blob(b"".join(blob.data for blob in blobs), checksum)
        del self._uploads[upload_id]
        return checksum

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self._answer()
        upload = self._uploads.get(upload_id)
        if upload is not None and upload.key == key:
            del self._uploads[upload_id]

    async def put_object(self, key: str, data: bytes, sha256_b64: str) -> None:
        self._answer()
        self._objects[key] = self._checked(data, sha256_b64, "put object")

    async def stat(self, key: str) -> StoredObject | None:
        self._answer()
        blob = self._objects.get(key)
        return None if blob is None else StoredObject(key, len(blob.data), blob.sha256_b64)

    async def read(self, key: str, piece_size: int) -> AsyncGenerator[bytes, None]:
        self._answer()
        blob = self._objects.get(key)
        if blob is None:
            raise StoreError(f"read object: the store answered NoSuchKey: {key}", "NoSuchKey")
        for start in range(0, len(blob.data), piece_size):
            yield blob.data[start:start + piece_size]
            self._answer()

    async def get_object(self, key: str) -> bytes | None:
        self._answer()
        return self.read_object(key)

    async def delete(self, key: str) -> None:
        self._answer()
        self._objects.pop(key, None)

    def presign_get(self, key: str, expires: int) -> str:
        query = {"X-Amz-Date": str(int(self.clock())), "X-Amz-Expires": str(expires)}
        path = f"/{self.bucket}/{quote(key, safe='/')}"
        signature = self._signature("GET", path, query, "")
        return f"{self.endpoint}{path}?{urlencode(query)}&X-Amz-Signature={signature}"

    def read_object(self, key: str) -> bytes | None:
        """The object's bytes (a real store's GET); tests use it to see what was stored."""
        blob = self._objects.get(key)
        return None if blob is None else blob.data

    async def close(self) -> None:
        """Nothing to release."""
