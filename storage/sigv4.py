"""Requests to the store signed here (AWS Signature Version 4): presigned URLs, and signed headers.

What AWS specifies (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html for
presigned URLs, https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html for
headers, the general process at https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html):

1. The canonical request: the method, the URI path as sent (S3 neither normalises nor encodes it
   again), the query parameters (``X-Amz-Signature`` aside) URI-encoded and sorted by name, then
   by value, the signed headers as ``name:value`` lines (names in lower case, sorted; runs of
   spaces in a value made one), their names joined by ``;``, and the payload's hash: the body's
   SHA-256 in hex (``X-Amz-Content-SHA256``, signed too) for a request signed in its headers,
   ``UNSIGNED-PAYLOAD`` for a presigned URL, whose body is not known when it is signed.
2. The string to sign: ``AWS4-HMAC-SHA256``, the time (``YYYYMMDDTHHMMSSZ``, also ``X-Amz-Date``),
   the credential scope (``date/region/service/aws4_request``) and the canonical request's SHA-256,
   one a line.
3. The signing key: HMAC-SHA256 of the date with ``"AWS4" + secret``, of the region with that, of
   the service, of ``aws4_request``. It depends on the date, not on the request: derived once a
   day here, not for each request.
4. The signature: the string to sign's HMAC-SHA256 with the signing key, in hex, appended to a
   presigned URL as ``X-Amz-Signature``, or in the ``Authorization`` header with the scope and the
   signed headers' names.

Why not botocore's ``generate_presigned_url`` and SigV4 signer, which signed all of these before:
for every URL it resolves the endpoint's rule set, serialises the operation, runs its event hooks,
builds a request, parses its query string back and encodes it again, and derives the signing key
(four HMACs): about 0.4 ms of CPU a URL on a 2-core VM, a third of the gateway's work for an
``upload-urls`` call of 3 chunks (issue 26, ``bench control --profile``); its signer took 0.15 ms a
request. This is one canonical request, one SHA-256 and one HMAC (about 0.02 ms). The URLs and
headers are the very bytes botocore makes for the same inputs at the same time, in its order (a
URL's operation parameters, then ``X-Amz-Algorithm``, ``-Credential``, ``-Date``, ``-Expires``,
``-SignedHeaders``, then ``-Signature``; the caller's headers, then ``X-Amz-Date``,
``X-Amz-Content-SHA256``, ``Authorization``): tests/test_sigv4.py checks that with hypothesis
against botocore itself, and the real store's tests send them.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# What S3 leaves unencoded in a query parameter (RFC 3986's unreserved characters) and in an object key's path.
QUERY_SAFE = "-_.~"
KEY_SAFE = "/~"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_KEY_UNRESERVED = re.compile(r"[A-Za-z0-9_.~/-]*")


@functools.lru_cache(maxsize=64)
def encoded(text: str) -> str:
    """``text`` URI-encoded as a query parameter's name or value (UTF-8, RFC 3986's unreserved characters
    kept). Most come back as they are; the few that repeat with something to encode (the credential, the
    signed headers' names) are encoded once."""
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe=QUERY_SAFE)


def encoded_key(key: str) -> str:
    """An object key URI-encoded as a path, its ``/`` kept."""
    return key if _KEY_UNRESERVED.fullmatch(key) else quote(key, safe=KEY_SAFE)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode(), "sha256")


def object_path(bucket: str, key: str) -> str:
    """The path of ``key`` in ``bucket`` (path-style addressing), encoded as it is sent and signed."""
    return f"/{encoded(bucket)}/{encoded_key(key)}"


def host_of(endpoint: str) -> str:
    """The ``Host`` header a client sends to ``endpoint`` (signed): the host in lower case, its port unless the
    scheme's default, an IPv6 address in brackets."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class Signer:
    """Presigned URLs, and signed requests, for one endpoint, credentials, region and service; safe to share
    between threads."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str, service: str = "s3"):
        self._endpoint = endpoint.rstrip("/")
        self._path = urlsplit(self._endpoint).path  # a prefix the endpoint's own URL may have
        self._host = host_of(self._endpoint)
        self._access_key = access_key
        self._secret = secret_key
        self._region = region
        self._service = service
        self._key: tuple[str, bytes] = ("", b"")  # the signing key of one date (step 3), replaced as a whole
        self._key_lock = threading.Lock()

    def signing_key(self, date: str) -> bytes:
        """The signing key of ``date`` (``YYYYMMDD``), derived on the date's first URL."""
        known_date, key = self._key
        if known_date == date:
            return key
        with self._key_lock:
            key = _hmac(f"AWS4{self._secret}".encode(), date)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._key = (date, key)
        return key

    def presign(self, method: str, bucket: str, key: str, params: Sequence[tuple[str, str]],
                headers: Mapping[str, str], expires: int, now: float | None = None) -> str:
        """The URL that lets anyone send ``method`` to ``bucket``/``key`` with the operation's query ``params`` (in
        order) and exactly ``headers`` (signed, with ``Host``), for ``expires`` seconds from ``now`` (unix
        seconds; the clock's by default, whole seconds count)."""
        stamp = _stamp(now)
        signed = self._headers_to_sign(headers)
        signed_names = ";".join(sorted(signed))
        auth = (
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{self._access_key}/{self._scope(stamp)}"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", signed_names),
        )
        query = [(encoded(name), encoded(value)) for name, value in (*params, *auth)]
        path = object_path(bucket, key)
        signature = self._signature(stamp, method, path, sorted(query), signed, UNSIGNED_PAYLOAD)
        query_string = "&".join(f"{name}={value}" for name, value in query)
        return f"{self._endpoint}{path}?{query_string}&X-Amz-Signature={signature}"

    def sign(self, method: str, bucket: str, key: str, query: str, headers: Mapping[str, str], body: bytes,
             now: float | None = None, *, payload: str | None = None) -> dict[str, str]:
        """``headers`` and the ones that sign a request sent now (``X-Amz-Date``, ``X-Amz-Content-SHA256``: the
        body's SHA-256, and ``Authorization``), in botocore's order: the request to ``bucket``/``key`` with the
        query string ``query`` (encoded already, e.g. ``uploads``) and ``body``. ``payload``: what
        ``X-Amz-Content-SHA256`` says instead of the body's SHA-256 (UNSIGNED_PAYLOAD: a body whose bytes a
        signed checksum header guards already)."""
        stamp = _stamp(now)
        payload = payload or hashlib.sha256(body).hexdigest()
        sent = {**headers, "X-Amz-Date": stamp, "X-Amz-Content-SHA256": payload}
        signed = self._headers_to_sign(sent)
        pairs = sorted(pair.partition("=")[::2] for pair in query.split("&")) if query else []
        path = object_path(bucket, key)
        signature = self._signature(stamp, method, path, pairs, signed, payload)
        sent["Authorization"] = (f"{ALGORITHM} Credential={self._access_key}/{self._scope(stamp)}, "
                                 f"SignedHeaders={';'.join(sorted(signed))}, Signature={signature}")
        return sent

    def _headers_to_sign(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Names in lower case, runs of white space in a value made one space, and ``host``."""
        return {"host": self._host, **{name.lower(): " ".join(value.split()) for name, value in headers.items()}}

    def _scope(self, stamp: str) -> str:
        return f"{stamp[:8]}/{self._region}/{self._service}/aws4_request"

    def _signature(self, stamp: str, method: str, path: str, query: Sequence[tuple[str, str]],
                   signed: Mapping[str, str], payload: str) -> str:
        """Steps 1 to 4 of the module's docs: ``query`` sorted and encoded, ``signed`` as _headers_to_sign gives."""
        names = sorted(signed)
        canonical = "\n".join((
            method.upper(),
            self._path + path,
            "&".join(f"{name}={value}" for name, value in query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload,
        ))
        to_sign = "\n".join((ALGORITHM, stamp, self._scope(stamp), hashlib.sha256(canonical.encode()).hexdigest()))
        return hmac.digest(self.signing_key(stamp[:8]), to_sign.encode(), "sha256").hex()


def _stamp(now: float | None) -> str:
    """SigV4's time (``YYYYMMDDTHHMMSSZ``) of ``now`` (unix seconds), or of the clock's now."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
