"""Presigned store URLs (AWS Signature Version 4, query-string authentication), signed here.

What AWS specifies (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html,
and the general process at https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html):

1. The canonical request: the method, the URI path as sent (S3 neither normalises nor encodes it
   again), the query parameters (``X-Amz-Signature`` aside) URI-encoded and sorted by name, then
   by value, the signed headers as ``name:value`` lines (names in lower case, sorted; runs of
   spaces in a value made one), their names joined by ``;``, and ``UNSIGNED-PAYLOAD``: a presigned
   URL's body is not known when it is signed.
2. The string to sign: ``AWS4-HMAC-SHA256``, the time (``YYYYMMDDTHHMMSSZ``), the credential
   scope (``date/region/service/aws4_request``) and the canonical request's SHA-256, one a line.
3. The signing key: HMAC-SHA256 of the date with ``"AWS4" + secret``, of the region with that, of
   the service, of ``aws4_request``. It depends on the date, not on the request: derived once a
   day here, not for each URL.
4. The signature: the string to sign's HMAC-SHA256 with the signing key, in hex, appended to the
   URL as ``X-Amz-Signature``.

Why not botocore's ``generate_presigned_url``, which every presigned part URL came from before:
it resolves the endpoint's rule set, serialises the operation, runs its event hooks, builds a
request, parses its query string back and encodes it again, and derives the signing key (four
HMACs) for every URL: about 0.4 ms of CPU a URL on a 2-core VM, a third of the gateway's work for
an ``upload-urls`` call of 3 chunks (issue 26, ``bench control --profile``). This is one
canonical request, one SHA-256 and one HMAC a URL (about 0.02 ms). The URLs are the very bytes
botocore makes for the same inputs at the same time, parameters in its order (the operation's,
then ``X-Amz-Algorithm``, ``-Credential``, ``-Date``, ``-Expires``, ``-SignedHeaders``, then
``-Signature``): tests/test_sigv4.py checks that with hypothesis against botocore itself, and the
real store's tests upload through these URLs.
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


class QuerySigner:
    """Presigned URLs for one endpoint, credentials, region and service; safe to share between threads."""

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
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        date = stamp[:8]
        signed = {"host": self._host, **{name.lower(): " ".join(value.split()) for name, value in headers.items()}}
        names = sorted(signed)
        signed_names = ";".join(names)
        auth = (
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{self._access_key}/{date}/{self._region}/{self._service}/aws4_request"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", signed_names),
        )
        query = [(encoded(name), encoded(value)) for name, value in (*params, *auth)]
        path = f"/{encoded(bucket)}/{encoded_key(key)}"
        canonical = "\n".join((
            method.upper(),
            self._path + path,
            "&".join(f"{name}={value}" for name, value in sorted(query)),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            signed_names,
            UNSIGNED_PAYLOAD,
        ))
        to_sign = "\n".join((ALGORITHM, stamp, f"{date}/{self._region}/{self._service}/aws4_request",
                             hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.digest(self.signing_key(date), to_sign.encode(), "sha256").hex()
        query_string = "&".join(f"{name}={value}" for name, value in query)
        return f"{self._endpoint}{path}?{query_string}&X-Amz-Signature={signature}"
