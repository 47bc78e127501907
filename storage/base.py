"""The object store contract: what the gateway asks of a store, and what each call promises.

Stated the way tusd's ``pkg/handler/datastore.go`` states its DataStore: each
method says what it does, what holds afterwards and which errors it raises.
Two implementations honour it, and ``tests/test_store_contract.py`` runs the
same tests against both:

- :class:`storage.s3.S3ObjectStore`: any S3 server (MinIO in production,
  SeaweedFS in the local stack and the tests), on botocore's public S3 API;
- :class:`storage.memory.InMemoryObjectStore`: in memory, for fast tests of
  the gateway's domain core.

Keys and data. An object lives under a key; the gateway writes content once
under ``content/<fingerprint>`` and never changes it. Checksums are SHA-256
digests in base64 (S3's ``ChecksumSHA256``). A multipart object's checksum is
COMPOSITE: base64 of the SHA-256 of the concatenated part digests, then
``-N`` for N parts (the file fingerprint of the API contract, in base64).

Errors. Any method may raise :class:`StoreUnavailable` (the store did not
answer or failed on its side: try again later) or :class:`StoreError` (the
store refused; ``code`` is its own error code). The other errors are named
where a caller must tell them apart; each is a StoreError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import AsyncGenerator, Sequence


class StoreError(Exception):
    """The store refused a request; ``code`` is the store's own error code."""

    def __init__(self, message: str, code: str = "store_error"):
        super().__init__(message)
        self.code = code


class StoreUnavailable(StoreError):
    """The store could not be reached, timed out or answered with a server error."""

    def __init__(self, message: str):
        super().__init__(message, "store_unavailable")


class UploadNotFound(StoreError):
    """The multipart upload is unknown to the store: completed, aborted or never made."""

    def __init__(self, message: str):
        super().__init__(message, "NoSuchUpload")


class ChecksumMismatch(StoreError):
    """The bytes do not match the checksum given, or the parts named do not match
    the parts the store holds (a different checksum or ETag, or a part it lacks).

    ``code`` is the store's own: ``BadDigest`` (S3, SeaweedFS),
    ``XAmzContentChecksumMismatch`` (MinIO at PUT), ``InvalidPart`` (MinIO and
    S3 at completion).
    """

    def __init__(self, message: str, code: str = "BadDigest"):
        super().__init__(message, code)


@dataclass(frozen=True)
class PresignedRequest:
    """A request anyone can send to the store until ``expires_at`` (unix seconds):
    ``method`` to ``url`` with exactly ``headers``, and the part's bytes as body."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: int = 0


@dataclass(frozen=True)
class StoredPart:
    """One part of a multipart upload as the store lists it."""

    part_number: int
    size: int
    etag: str  # without quotes
    sha256_b64: str | None  # None where the store does not list part checksums (SeaweedFS)


@dataclass(frozen=True)
class CompletedPart:
    """A part to assemble into the object: its number, the ETag the store gave it, its checksum."""

    part_number: int
    etag: str
    sha256_b64: str


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    # The object's SHA-256 checksum as the store reports it: plain base64 for an
    # object put whole, "<base64>-N" (composite) for one assembled from N parts.
    sha256_checksum: str | None


class ObjectStore(Protocol):
    """The store contract. ``bucket`` names the one bucket every key lives in."""

    bucket: str

    async def check(self) -> None:
        """Return when the store answers and the bucket exists.

        Raises StoreUnavailable when the store does not answer, StoreError with
        code ``NoSuchBucket`` when the bucket is missing.
        """

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists. Idempotent."""

    async def start_multipart(self, key: str) -> str:
        """Start a multipart upload of ``key`` and return its upload id.

        The upload is created with SHA-256 part checksums (S3's
        ``ChecksumAlgorithm=SHA256``, composite): the store then checks each
        part's bytes against its checksum at PUT and again at completion, and
        the finished object's checksum is composite. Several uploads of one
        key may be open at once; each is independent of the others and of an
        object already under the key.
        """

    async def presign_upload_parts(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]], expires: int
    ) -> list[PresignedRequest]:
        """One PUT per ``(part number, base64 SHA-256)``, in the order given,
        usable by anyone for ``expires`` seconds.

        The checksum travels as the SIGNED HEADER ``x-amz-checksum-sha256``
        (``X-Amz-SignedHeaders=host;x-amz-checksum-sha256``), never only in the
        query, where MinIO would not check it. The store answers 400 to a body
        that does not hash to it and 403 to a request that drops or changes the
        header. A URL may be used again until it expires (a retry).

        Presigning is local: no request reaches the store, the upload is not
        looked up (a URL for an unknown upload is refused when used, 404
        NoSuchUpload), and the work never blocks the event loop.
        """

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, sha256_b64: str
    ) -> str:
        """Store ``data`` as part ``part_number`` (1..10000) and return its ETag.

        A part number sent again with the same bytes is stored once as far as
        any caller can tell. Sent again with OTHER bytes, stores differ in which
        copy they keep and list (SeaweedFS lists both, in no set order), so
        callers never do that: here a part's checksum is fixed by its chunk's
        fingerprint, and its bytes with it. Raises ChecksumMismatch
        when ``data`` does not hash to ``sha256_b64`` (nothing is stored),
        UploadNotFound when the upload is completed, aborted or unknown.
        """

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """Every part the store holds for the upload, by ascending part number,
        one entry per number (see upload_part for a number sent twice).

        ``sha256_b64`` is the part's checksum where the store lists it (MinIO,
        S3), None where it does not (SeaweedFS). Raises UploadNotFound when the
        upload is completed, aborted or unknown.
        """

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> str | None:
        """Assemble the object ``key`` from exactly ``parts`` and return its
        checksum as the store answered it: composite ``<base64>-N``, or None
        where the answer carries none.

        ``parts`` go in ascending part number, each with the ETag the store gave
        it and its SHA-256; every part but the last must be at least 5 MiB
        (StoreError ``EntityTooSmall``). The store checks every part against
        its checksum. It does NOT know which parts the caller expected: a list
        that leaves parts out completes with fewer, so callers compare with
        list_parts first. Afterwards the upload is gone (UploadNotFound) and the
        object replaces any earlier one under ``key``.

        Raises ChecksumMismatch when a part's checksum or ETag does not match
        what the store holds, or the store lacks a part named; the upload then
        stays open for the caller to abort. S3 (and MinIO before 2023-07) may
        report this late, as an error inside a 200 answer: that is a
        ChecksumMismatch too. Raises UploadNotFound when the upload is
        completed, aborted or unknown.
        """

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard the upload and its parts. Idempotent: an upload already
        completed, aborted or unknown is not an error. An object under ``key``
        is left alone."""

    async def put_object(self, key: str, data: bytes, sha256_b64: str) -> None:
        """Store ``data`` whole under ``key``, replacing any object there.

        Raises ChecksumMismatch when ``data`` does not hash to ``sha256_b64``
        (nothing is stored).
        """

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size and checksum, or None when there is no object under ``key``."""

    def read(self, key: str, piece_size: int) -> AsyncGenerator[bytes, None]:
        """The object's bytes in order, in pieces of at most ``piece_size`` bytes, read from the store
        as they are asked for: a caller holds one piece at a time, however large the object.

        Raises StoreError with code ``NoSuchKey`` when there is no object under ``key`` (at the first
        piece). Closing the iterator early (``aclose``) releases the store connection.
        """

    async def get_object(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no object under ``key``.

        Whole, in memory: for objects the caller knows to be small (the
        thumbnailer reads sources up to its size cap, gateway/core/thumbnails.py).
        """

    async def delete(self, key: str) -> None:
        """Remove the object. Idempotent: a missing object is not an error.
        Open multipart uploads of the key are left alone."""

    def presign_get(self, key: str, expires: int) -> str:
        """A GET URL for the object, signed for the store's internal address
        (the CDN tier's origin). Local and cheap: one signature, no request."""

    async def close(self) -> None:
        """Release connections and worker threads. No call may follow."""
