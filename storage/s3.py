"""The ObjectStore for any S3-compatible server, on botocore's public S3 API.

Requests are botocore client calls (UploadPart, ListParts,
CompleteMultipartUpload with per-part ChecksumSHA256, ...). The two requests
every upload makes, CreateMultipartUpload (with ChecksumAlgorithm=SHA256) and
the PutObject of a small file sent whole, are sent from the event loop with
aiohttp instead (:meth:`S3ObjectStore._send`): botocore's request pipeline
(its events, serialising, urllib3, parsing) and the hop to its thread and back
cost about 2 ms of CPU a request on a 2-core VM, more than the gateway's own
work on a small file (issue 26, ``bench control --profile``). Their errors are
mapped by the same rules (:func:`answer_error`). Those two requests, and the
presigned part URLs (one for every chunk of every upload), are signed on the
event loop by storage/sigv4.py: botocore's ``generate_presigned_url`` took
0.4 ms of CPU a URL on a thread of its own and its SigV4 signer 0.15 ms a
request, that module 0.02 ms for either, the very same URL and headers (its
docstring says how, and why it is not botocore's).

Why botocore's blocking client in bounded thread pools rather than aiobotocore:
botocore documents its clients as thread-safe; aiobotocore pins botocore
to a narrow range per release (boto3 in the tests would be pinned with it) and
its clients must be entered as async context managers inside the running loop.
The cost is one thread hop per store request, small beside the request.

Nothing here depends on one S3 server; store quirks are handled by the
contract in storage/base.py, not by special cases.
"""
from __future__ import annotations

import asyncio
import functools
import time
import xml.etree.ElementTree as ET  # noqa: N817, S405 - the store's own answers, as botocore parses them
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from collections.abc import AsyncGenerator, Callable, Sequence

import aiohttp
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from yarl import URL

from storage.sigv4 import UNSIGNED_PAYLOAD, Signer, object_path
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

T = TypeVar("T")

# The store's error codes for bytes or parts that do not match their checksums:
# BadDigest (S3, SeaweedFS), XAmzContentChecksumMismatch (MinIO at PUT),
# InvalidDigest (a malformed checksum), InvalidPart (MinIO and S3 at completion).
CHECKSUM_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "InvalidPart"})
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
# Parts presigned between two turns of the event loop (about 0.35 ms of CPU): a 5,120-part call lets other
# requests in every 16 URLs, and a 3-part one is not queued behind it. With 64 (1.4 ms), /healthz waited
# 12.9 ms at the median during 40 such calls at once (bench/limits.py's load), with 16 3.9 ms.
PRESIGN_BATCH = 16


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    region: str = "us-east-1",
    timeout: float = 30.0,
    max_connections: int = 10,
    attempts: int = 3,
) -> BaseClient:
    """A botocore S3 client for one S3-compatible endpoint.

    Path-style addressing (``endpoint/bucket/key``): the host is the store's, not
    a bucket subdomain. Checksums only where an operation requires one or we
    give one: botocore's default would add its own CRC to every upload and
    presign. Few attempts and short connect timeouts: a store that is down is
    reported quickly.
    """
    config = BotoConfig(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=3.0,
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=max_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return botocore.session.Session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def domain_error(what: str, exc: ClientError | BotoCoreError, endpoint: str) -> StoreError:
    """The mapping from botocore's errors to the store contract's (:func:`answer_error` decides).

    A CompleteMultipartUpload that fails late inside a 200 answer reaches us as
    a ClientError too (botocore turns that answer into a 500 and retries), so
    the error code decides before the status does.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return answer_error(what, code, error.get("Message") or code, status)
    # Connection refused or reset, a timeout, an answer that is not S3's.
    return unreachable(what, endpoint, exc)


def answer_error(what: str, code: str, message: str, status: int) -> StoreError:
    """The one mapping from the store's error answers (its code, message and HTTP status) to the contract's."""
    if code == "NoSuchUpload":
        return UploadNotFound(f"{what}: the store has no such multipart upload")
    if code in CHECKSUM_CODES:
        return ChecksumMismatch(f"{what}: {code}: {message}", code)
    if status >= 500:
        return StoreUnavailable(f"{what}: the store failed ({code}: {message})")
    return StoreError(f"{what}: the store answered {code}: {message}", code)


def unreachable(what: str, endpoint: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"{what}: the store at {endpoint} is unreachable ({exc.__class__.__name__})")


def xml_text(body: bytes, name: str) -> str | None:
    """The text of the first element ``name`` (in any namespace) of an S3 XML answer; None without one."""
    try:
        found = ET.fromstring(body).find(f".//{{*}}{name}")  # noqa: S314 - see the import
    except ET.ParseError:
        return None
    return found.text if found is not None else None


def error_of(what: str, status: int, body: bytes) -> StoreError:
    """The contract's error for an S3 error answer (``<Error><Code>...``), by :func:`answer_error`'s rules."""
    code = xml_text(body, "Code") or str(status)
    return answer_error(what, code, xml_text(body, "Message") or code, status)


class S3ObjectStore:
    """The store contract (storage/base.py) over S3."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str = "us-east-1",
        public_endpoint: str | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
        list_page_size: int = 1000,
    ):
        """``endpoint`` is where the gateway reaches the store; ``public_endpoint``
        is the address clients use for presigned uploads (the two differ behind
        docker-compose, and the host name is part of the signature).

        Store requests run on ``max_connections`` threads, one connection each.
        """
        self.bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self.public_endpoint = (public_endpoint or endpoint).rstrip("/")
        self._list_page_size = list_page_size
        # What _send signs and sends with: the client's credentials and region, its limits.
        self._signer = Signer(self.endpoint, access_key, secret_key, region)
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=timeout)
        self._attempts = 3
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._client = s3_client(self.endpoint, access_key, secret_key, region=region, timeout=timeout,
                                 max_connections=max_connections)
        self._presigner = Signer(self.public_endpoint, access_key, secret_key, region)
        self._requests = ThreadPoolExecutor(max_connections, thread_name_prefix="s3-request")
        # Requests sent, by botocore operation (put_object, upload_part, ...): the gateway's metrics read it.
        self.requests_sent: Counter[str] = Counter()

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking botocore call on the request threads, with errors mapped."""
        loop = asyncio.get_running_loop()
        self.requests_sent[fn.__name__.strip("_").removesuffix("_blocking")] += 1
        try:
            return await loop.run_in_executor(self._requests, functools.partial(fn, *args, **kwargs))
        except ParamValidationError:
            raise  # our bug, not the store's answer
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(what, exc, self.endpoint) from exc

    async def _send(self, what: str, operation: str, method: str, key: str, *, query: str = "",
                    headers: dict[str, str] | None = None, body: bytes = b"", payload_hash: str | None = None) -> bytes:
        """One request on the event loop (see the module docs): signed by storage/sigv4.py, sent with
        aiohttp on this store's own session, its answer's body back. Tried again, as botocore's standard mode
        does, when the store fails or cannot be reached (StoreUnavailable, after the last attempt); any other
        error answer is mapped at once (:func:`error_of`)."""
        url = self.endpoint + object_path(self.bucket, key) + (f"?{query}" if query else "")
        signed = self._signer.sign(method, self.bucket, key, query, headers or {}, body, payload=payload_hash)
        self.requests_sent[operation] += 1
        failure: StoreError = StoreUnavailable(what)
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(0.05 * 2**attempt)
            try:
                async with self._http().request(method, URL(url, encoded=True), headers=signed, data=body) as answer:
                    payload = await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = unreachable(what, self.endpoint, exc)
                continue
            if answer.status < 300:
                return payload
            failure = error_of(what, answer.status, payload)
            if not isinstance(failure, StoreUnavailable):
                break
        raise failure

    def _http(self) -> aiohttp.ClientSession:
        """The session _send uses, made on first use in the running loop (the store may be made outside one),
        and made again in another loop (a session belongs to the loop it was made in)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  skip_auto_headers=("Content-Type",))
        return self._session

    async def check(self) -> None:
        try:
            await self._call("check bucket", self._client.head_bucket, Bucket=self.bucket)
        except StoreError as exc:
            if exc.code in NOT_FOUND_CODES:
                raise StoreError(f"bucket {self.bucket!r} does not exist", "NoSuchBucket") from exc
            raise

    async def ensure_bucket(self) -> None:
        try:
            await self.check()
        except StoreError as exc:
            if exc.code != "NoSuchBucket":
                raise
            try:
                await self._call("create bucket", self._client.create_bucket, Bucket=self.bucket)
            except StoreError as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def start_multipart(self, key: str) -> str:
        answer = await self._send("start multipart upload", "create_multipart_upload", "POST", key, query="uploads",
                                  headers={"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "COMPOSITE"})
        upload_id = xml_text(answer, "UploadId")
        if not upload_id:
            raise StoreUnavailable("start multipart upload: the store's answer has no UploadId")
        return upload_id

    async def presign_upload_parts(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]], expires: int
    ) -> list[PresignedRequest]:
        """Presign on the event loop, PRESIGN_BATCH parts between two of its turns (see the module docs)."""
        presigned: list[PresignedRequest] = []
        for start in range(0, len(parts), PRESIGN_BATCH):
            if start:
                await asyncio.sleep(0)
            presigned += self._presign_batch(key, upload_id, parts[start : start + PRESIGN_BATCH], expires)
        return presigned

    def _presign_batch(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]], expires: int
    ) -> list[PresignedRequest]:
        # One time for the batch: the URLs' expiry (their X-Amz-Date + expires) is exactly expires_at.
        now = int(time.time())
        # The checksum is a signed header: the store takes the part only with this SHA-256.
        return [
            PresignedRequest(
                "PUT",
                self._presigner.presign("PUT", self.bucket, key, (("uploadId", upload_id), ("partNumber", str(number))),
                                        {"x-amz-checksum-sha256": sha256_b64}, expires, now),
                {"x-amz-checksum-sha256": sha256_b64},
                now + expires,
            )
            for number, sha256_b64 in parts
        ]

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, sha256_b64: str
    ) -> str:
        answer = await self._call(
            f"upload part {part_number}",
            self._client.upload_part,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=part_number,
            Body=data,
            ChecksumSHA256=sha256_b64,
        )
        return answer["ETag"].strip('"')

    def _list_parts_blocking(self, key: str, upload_id: str) -> list[StoredPart]:
        pages = self._client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": self._list_page_size}
        )
        parts: dict[int, StoredPart] = {}
        for page in pages:
            for part in page.get("Parts", []):
                # A part sent twice is listed twice by some stores (the same bytes: see the contract).
                parts[part["PartNumber"]] = StoredPart(
                    part_number=part["PartNumber"],
                    size=part["Size"],
                    etag=part["ETag"].strip('"'),
                    sha256_b64=part.get("ChecksumSHA256"),
                )
        return sorted(parts.values(), key=lambda p: p.part_number)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        return await self._call("list parts", self._list_parts_blocking, key, upload_id)

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> str | None:
        answer = await self._call(
            "complete multipart upload",
            self._client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p.part_number, "ETag": f'"{p.etag}"', "ChecksumSHA256": p.sha256_b64}
                    for p in parts
                ]
            },
        )
        return answer.get("ChecksumSHA256")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                "abort multipart upload",
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except UploadNotFound:
            pass  # already gone: aborting is idempotent

    async def put_object(self, key: str, data: bytes, sha256_b64: str) -> None:
        """Signed with ``UNSIGNED-PAYLOAD``: the signed ``x-amz-checksum-sha256`` header already makes the store
        check the bytes (ChecksumMismatch otherwise, tests/test_store_contract.py), and a signed payload hash
        would have the gateway hash each small file a second time and the store check it twice."""
        await self._send("put object", "put_object", "PUT", key, body=data, payload_hash=UNSIGNED_PAYLOAD,
                         headers={"x-amz-checksum-sha256": sha256_b64, "Content-Type": "application/octet-stream"})

    async def stat(self, key: str) -> StoredObject | None:
        try:
            answer = await self._call(
                "stat object", self._client.head_object, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except StoreError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return StoredObject(key=key, size=answer["ContentLength"], sha256_checksum=answer.get("ChecksumSHA256"))

    async def read(self, key: str, piece_size: int) -> AsyncGenerator[bytes, None]:
        answer = await self._call("read object", self._client.get_object, Bucket=self.bucket, Key=key)
        body = answer["Body"]
        try:
            while piece := await self._call("read object", body.read, piece_size):
                yield piece
        finally:
            # An early close (the reader went away) frees the connection for other requests.
            body.close()

    async def get_object(self, key: str) -> bytes | None:
        try:
            return await self._call("get object", self._get_blocking, key)
        except StoreError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise

    def _get_blocking(self, key: str) -> bytes:
        answer = self._client.get_object(Bucket=self.bucket, Key=key)
        with answer["Body"] as body:
            return body.read()

    async def delete(self, key: str) -> None:
        await self._call("delete object", self._client.delete_object, Bucket=self.bucket, Key=key)

    def presign_get(self, key: str, expires: int) -> str:
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )

    async def close(self) -> None:
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            await self._session.close()
        self._requests.shutdown(wait=False, cancel_futures=True)
        self._client.close()
