"""What the gateway asks of an S3 store, independent of which server is behind it.

The gateway only talks to :class:`ObjectStore`; each backend lives behind it (the
tusd way). Every S3-compatible server (MinIO in production, SeaweedFS locally) is
served by :class:`storage.s3.S3ObjectStore`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class StoreError(Exception):
    """The store refused a request; ``code`` is the store's own error code."""

    def __init__(self, message: str, code: str = "store_error"):
        super().__init__(message)
        self.code = code


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with a server error."""

    def __init__(self, message: str):
        super().__init__(message, "store_unavailable")


class UploadNotFound(StoreError):
    """The multipart upload is unknown to the store (completed, aborted or never made)."""

    def __init__(self, message: str):
        super().__init__(message, "NoSuchUpload")


class ChecksumMismatch(StoreError):
    """The store's bytes do not match the checksum we gave it."""

    def __init__(self, message: str):
        super().__init__(message, "BadDigest")


@dataclass(frozen=True)
class PresignedRequest:
    """A request anyone can send to the store, exactly as given, until ``expires_at``."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: int = 0  # unix seconds


@dataclass(frozen=True)
class StoredPart:
    part_number: int
    size: int
    etag: str
    sha256_b64: str | None  # MinIO lists part checksums; some stores do not


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str
    sha256_b64: str


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    # The object's SHA-256 checksum as the store reports it: for a multipart
    # upload the COMPOSITE form "base64(sha256(part digests))-N".
    sha256_checksum: str | None


class ObjectStore(Protocol):
    bucket: str

    async def check(self) -> None:
        """Raise StoreUnavailable unless the store answers and the bucket exists."""

    async def ensure_bucket(self) -> None: ...

    async def start_multipart(self, key: str) -> str:
        """Start a multipart upload whose parts carry SHA-256 checksums; return its id."""

    def presign_upload_part(
        self, key: str, upload_id: str, part_number: int, sha256_b64: str, expires: int
    ) -> PresignedRequest:
        """A PUT for one part that the store refuses unless the bytes hash to ``sha256_b64``."""

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, sha256_b64: str
    ) -> str:
        """Upload one part ourselves (inline uploads); return its ETag."""

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]: ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> None:
        """Finish the upload; the store checks every part against its checksum."""

    async def abort_multipart(self, key: str, upload_id: str) -> None: ...

    async def put_object(self, key: str, data: bytes, sha256_b64: str) -> None: ...

    async def stat(self, key: str) -> StoredObject | None: ...

    async def delete(self, key: str) -> None: ...

    def presign_get(self, key: str, expires: int) -> str:
        """A GET URL for the object, signed for the store's internal address (the CDN origin)."""
