"""The ObjectStore for any S3-compatible server, built on the minio SDK.

minio-py keeps the multipart calls private and cannot sign extra headers or
send part checksums on completion, so those few requests are built here on
its request executor. Nothing in this module depends on one S3 server.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from storage import sigv4
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
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _text(element: ET.Element, name: str) -> str | None:
    found = element.find(S3_NS + name)
    if found is None:
        found = element.find(name)
    return None if found is None else found.text


class S3ObjectStore:
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
    ):
        """``endpoint`` is where the gateway reaches the store; ``public_endpoint``
        is the address clients use for presigned uploads (the two differ behind
        docker-compose, and the host name is part of the signature)."""
        internal = urlsplit(endpoint)
        self.bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self.public_endpoint = (public_endpoint or endpoint).rstrip("/")
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        http = urllib3.PoolManager(
            maxsize=32,
            timeout=urllib3.Timeout(connect=3.0, read=timeout),
            # A store that is down should be reported quickly, not after minutes of retries.
            retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=[502, 503, 504]),
        )
        self._client = Minio(
            internal.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=internal.scheme == "https",
            region=region,
            http_client=http,
        )

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except S3Error as exc:
            if exc.code == "NoSuchUpload":
                raise UploadNotFound(f"{what}: the store has no such multipart upload") from exc
            if exc.code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"):
                raise ChecksumMismatch(f"{what}: {exc.message}") from exc
            raise StoreError(f"{what}: the store answered {exc.code}: {exc.message}", exc.code) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise StoreUnavailable(f"{what}: the store failed ({exc})") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{what}: the store at {self.endpoint} is unreachable ({exc.__class__.__name__})") from exc

    async def check(self) -> None:
        exists = await self._run("check bucket", self._client.bucket_exists, self.bucket)
        if not exists:
            raise StoreError(f"bucket {self.bucket!r} does not exist", "NoSuchBucket")

    async def ensure_bucket(self) -> None:
        if not await self._run("check bucket", self._client.bucket_exists, self.bucket):
            await self._run("create bucket", self._client.make_bucket, self.bucket)

    async def start_multipart(self, key: str) -> str:
        headers = {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "COMPOSITE"}
        return await self._run(
            "start multipart upload",
            self._client._create_multipart_upload,  # noqa: SLF001 - not public in minio-py
            self.bucket,
            key,
            headers,
        )

    def presign_upload_part(
        self, key: str, upload_id: str, part_number: int, sha256_b64: str, expires: int
    ) -> PresignedRequest:
        headers = {"x-amz-checksum-sha256": sha256_b64}
        url = sigv4.presign(
            "PUT",
            f"{self.public_endpoint}/{self.bucket}/{key}",
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self._region,
            expires=expires,
            query={"partNumber": str(part_number), "uploadId": upload_id},
            signed_headers=headers,
        )
        return PresignedRequest("PUT", url, headers, int(time.time()) + expires)

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, sha256_b64: str
    ) -> str:
        return await self._run(
            f"upload part {part_number}",
            self._client._upload_part,  # noqa: SLF001
            self.bucket,
            key,
            data,
            {"x-amz-checksum-sha256": sha256_b64},
            upload_id,
            part_number,
        )

    def _list_parts_sync(self, key: str, upload_id: str) -> list[StoredPart]:
        parts: dict[int, StoredPart] = {}
        marker = None
        while True:
            query = {"uploadId": upload_id, "max-parts": "1000"}
            if marker:
                query["part-number-marker"] = marker
            response = self._client._execute("GET", self.bucket, key, query_params=query)  # noqa: SLF001
            root = ET.fromstring(response.data)
            for element in root.iter(S3_NS + "Part"):
                number = int(_text(element, "PartNumber") or 0)
                # A part sent twice is listed twice by some stores; the last one wins.
                parts[number] = StoredPart(
                    part_number=number,
                    size=int(_text(element, "Size") or 0),
                    etag=(_text(element, "ETag") or "").strip('"'),
                    sha256_b64=_text(element, "ChecksumSHA256"),
                )
            if _text(root, "IsTruncated") != "true":
                return sorted(parts.values(), key=lambda p: p.part_number)
            marker = _text(root, "NextPartNumberMarker")

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        return await self._run("list parts", self._list_parts_sync, key, upload_id)

    def _complete_sync(self, key: str, upload_id: str, parts: list[CompletedPart]) -> None:
        root = ET.Element("CompleteMultipartUpload", xmlns=S3_NS.strip("{}"))
        for part in parts:
            element = ET.SubElement(root, "Part")
            ET.SubElement(element, "PartNumber").text = str(part.part_number)
            ET.SubElement(element, "ETag").text = f'"{part.etag}"'
            ET.SubElement(element, "ChecksumSHA256").text = part.sha256_b64
        body = ET.tostring(root)
        response = self._client._execute(  # noqa: SLF001
            "POST",
            self.bucket,
            key,
            body=body,
            headers={
                "Content-Type": "application/xml",
                "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
            },
            query_params={"uploadId": upload_id},
        )
        # S3 may answer 200 with an <Error> body when completion fails late.
        answer = ET.fromstring(response.data)
        if answer.tag.endswith("Error"):
            raise S3Error(
                _text(answer, "Code") or "InternalError",
                _text(answer, "Message") or "completion failed",
                key,
                None,
                None,
                response,
                self.bucket,
                key,
            )

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> None:
        await self._run("complete multipart upload", self._complete_sync, key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._run(
                "abort multipart upload",
                self._client._abort_multipart_upload,  # noqa: SLF001
                self.bucket,
                key,
                upload_id,
            )
        except UploadNotFound:
            pass  # already gone: aborting is idempotent

    async def put_object(self, key: str, data: bytes, sha256_b64: str) -> None:
        await self._run(
            "put object",
            self._client._put_object,  # noqa: SLF001 - the public one cannot send a checksum
            self.bucket,
            key,
            data,
            {"x-amz-checksum-sha256": sha256_b64, "Content-Type": "application/octet-stream"},
        )

    async def stat(self, key: str) -> StoredObject | None:
        try:
            info = await self._run(
                "stat object",
                self._client.stat_object,
                self.bucket,
                key,
                extra_headers={"x-amz-checksum-mode": "ENABLED"},
            )
        except StoreError as exc:
            if exc.code in ("NoSuchKey", "ResponseCode.NoSuchKey", "NoSuchObject"):
                return None
            raise
        headers = {k.lower(): v for k, v in (info.metadata or {}).items()}
        return StoredObject(key=key, size=info.size or 0, sha256_checksum=headers.get("x-amz-checksum-sha256"))

    async def delete(self, key: str) -> None:
        await self._run("delete object", self._client.remove_object, self.bucket, key)

    def presign_get(self, key: str, expires: int) -> str:
        return self._client.get_presigned_url(
            "GET", self.bucket, key, expires=timedelta(seconds=expires)
        )
