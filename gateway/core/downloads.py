"""Signed download URLs on the CDN tier (cdn/nginx.conf.template checks them).

``<cdn_url>/c/<fingerprint>/<name>?exp=..&ascii_name=..&type=..&sig=..&X-Amz-...``

The URL names the content, not the file. nginx recomputes ``sig``
(secure_link_md5) on every request, so the URL cannot be altered to reach other
content, to rename it, or to live longer; on a cache miss nginx forwards the
presigned store GET in the X-Amz-* tail, so the store stays private. The cache
keys on the content alone, so every URL for the same bytes shares one copy.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import unicodedata
from urllib.parse import quote, urlsplit

from gateway.config import Config
from protocol.fingerprints import is_fingerprint
from gateway.core.content import content_key
from storage.base import ObjectStore

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Only characters every HTTP client leaves alone in a query string and that are
# harmless in a header: nginx copies the argument into Content-Type as it is.
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+_-]{0,63}/[a-z0-9][a-z0-9.+_-]{0,126}")
UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ASCII_NAME = 200
# On a cold cache nginx fetches a file slice after slice; for a large file that
# can outlast what is left of the URL, so the store's part of the URL outlives
# ours by this much. nginx refuses new requests at ``exp`` regardless, and the
# store's part is of no use without the store's internal address.
STORE_URL_GRACE = 3600


def download_url(
    config: Config, store: ObjectStore, fingerprint: str, file_name: str, file_type: str, *, now: int | None = None
) -> tuple[str, int]:
    """Return (url, expires_at): a URL on the CDN tier valid for ``download_url_ttl`` seconds."""
    if not is_fingerprint(fingerprint):
        raise ValueError(f"not a fingerprint: {fingerprint!r}")
    now = int(time.time()) if now is None else now
    expires_at = now + config.download_url_ttl
    path = f"/c/{fingerprint}/{rfc5987_name(file_name)}"
    ascii_name = ascii_fallback(file_name)
    mime = content_type(file_type)
    sig = signature(config.cdn_secret, expires_at, path, ascii_name, mime)
    store_ttl = max(1, expires_at - int(time.time()) + STORE_URL_GRACE)
    store_query = urlsplit(store.presign_get(content_key(fingerprint), store_ttl)).query
    # Clients re-encode URLs differently; nginx decodes the path once, so the
    # name is encoded twice there and the check sees the same bytes whatever a
    # client did. The X-Amz-* part goes last: nginx forwards it from the first X-Amz- on.
    url = (
        f"{config.cdn_url.rstrip('/')}{quote(path)}"
        f"?exp={expires_at}&ascii_name={ascii_name}&type={mime}&sig={sig}&{store_query}"
    )
    return url, expires_at


def signature(secret: str, expires_at: int, path: str, ascii_name: str, mime: str) -> str:
    """nginx's secure_link_md5 over the same fields, in the same order, as the template.

    ``path`` is the decoded path nginx sees as $uri: /c/<fingerprint>/<RFC 5987 name>.
    """
    message = "\n".join([secret, str(expires_at), path, ascii_name, mime, secret])
    digest = hashlib.md5(message.encode()).digest()  # noqa: S324 - what secure_link checks
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def rfc5987_name(file_name: str) -> str:
    """The name as an RFC 5987 ext-value: UTF-8, %-encoded but for unreserved characters."""
    encoded = quote(file_name or "download", safe="")
    # "." and ".." would be path steps to nginx and to clients.
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def content_type(file_type: str | None) -> str:
    """The file's media type without parameters, or application/octet-stream when unusable."""
    essence = (file_type or "").split(";", 1)[0].strip().lower()
    return essence if CONTENT_TYPE.fullmatch(essence) else DEFAULT_CONTENT_TYPE


def ascii_fallback(file_name: str) -> str:
    """A plain ASCII name for clients that ignore filename* (``résumé.pdf`` -> ``resume.pdf``)."""
    stem, extension = os.path.splitext(file_name)

    def clean(text: str) -> str:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return UNSAFE_ASCII.sub("_", text)

    extension = clean(extension)
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,16}", extension):
        stem, extension = file_name, ""
    # No leading dot (a hidden file) and no empty stem: "报告.pdf" -> "download.pdf".
    stem = clean(stem).strip("._") or "download"
    return stem[: MAX_ASCII_NAME - len(extension)] + extension
