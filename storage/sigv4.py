"""AWS Signature Version 4 query presigning with signed headers.

minio-py presigns with only ``host`` signed. To make the store itself enforce a
chunk's SHA-256 we must sign ``x-amz-checksum-sha256`` as a *header*: S3 and
MinIO ignore checksums hoisted into the query string, but a signed header
cannot be dropped or changed by the client without breaking the signature.
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit


def _uri_encode(value: str, safe: str = "-_.~") -> str:
    return quote(value, safe=safe)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def presign(
    method: str,
    url: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    expires: int,
    query: dict[str, str] | None = None,
    signed_headers: dict[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """Return ``url`` with a SigV4 query signature valid for ``expires`` seconds.

    ``url`` is ``scheme://host[:port]/bucket/key`` with the key not yet encoded.
    ``signed_headers`` must be sent verbatim by whoever uses the URL.
    """
    now = now or datetime.now(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now:%Y%m%d}/{region}/s3/aws4_request"
    parts = urlsplit(url)
    headers = {"host": parts.netloc}
    headers.update({k.lower(): v.strip() for k, v in (signed_headers or {}).items()})
    header_names = ";".join(sorted(headers))
    params = dict(query or {})
    params.update(
        {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": header_names,
        }
    )
    canonical_query = "&".join(
        f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(params.items())
    )
    canonical_path = _uri_encode(parts.path, safe="/-_.~")
    canonical_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canonical_request = "\n".join(
        [method, canonical_path, canonical_query, canonical_headers, header_names, "UNSIGNED-PAYLOAD"]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret_key).encode(), f"{now:%Y%m%d}")
    for step in (region, "s3", "aws4_request"):
        key = _hmac(key, step)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{parts.netloc}{canonical_path}?{canonical_query}&X-Amz-Signature={signature}"
