"""Signed download and thumbnail URLs on the CDN tier (cdn/signing.js checks them).

``<cdn_url>/c/<fingerprint>/<name>?exp=..&ascii_name=..&type=..&sig=..``

The URL names the content, not the file. nginx recomputes ``sig`` (an
HMAC-SHA256 with the secret the gateway and the tier share) on every request,
so the URL cannot be altered to reach other content, to rename it, or to live
longer. It carries no store credential: on a cache miss nginx signs its own
request to the store with a read-only key of its own, so the URL is worth
nothing anywhere but at the tier, and nothing after ``exp``. The cache keys on
the content alone, so every URL for the same bytes shares one copy.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
import unicodedata
from urllib.parse import quote

from gateway.config import Config
from protocol.fingerprints import is_fingerprint

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Only characters every HTTP client leaves alone in a query string and that are
# harmless in a header: nginx copies the argument into Content-Type as it is.
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+_-]{0,63}/[a-z0-9][a-z0-9.+_-]{0,126}")
UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ASCII_NAME = 200
# Domain separation for the shared key; cdn/signing.js's EDGE_LABEL is the same string.
SIGNATURE_LABEL = "dropbox-cdn-download-v1"
THUMBNAIL_URL_STEP = 600


def download_url(
    config: Config, fingerprint: str, file_name: str, file_type: str, *, now: int | None = None
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
    # Clients re-encode URLs differently; nginx decodes the path once, so the
    # name is encoded twice there and the check sees the same bytes whatever a client did.
    url = f"{config.cdn_url.rstrip('/')}{quote(path)}?exp={expires_at}&ascii_name={ascii_name}&type={mime}&sig={sig}"
    return url, expires_at


def thumbnail_url(config: Config, fingerprint: str, *, page: bool = False, now: int | None = None) -> tuple[str, int]:
    """Return (url, expires_at): a content's thumbnail on the CDN tier, ``<cdn_url>/t/<fingerprint>?exp=..&sig=..``,
    or with ``page`` a PDF's first page for the preview, ``<cdn_url>/t/<fingerprint>-page?...``.

    Signed as a download URL is (the path, hence the kind, is in what is signed, so neither URL
    can be turned into the other), with no name and no type: the tier answers a WebP image inline.
    The expiry is at least ``download_url_ttl`` away, rounded up to a multiple of
    THUMBNAIL_URL_STEP, so a page listed again within that step gets the same URLs and the
    browser's cache keeps the images.
    """
    if not is_fingerprint(fingerprint):
        raise ValueError(f"not a fingerprint: {fingerprint!r}")
    now = int(time.time()) if now is None else now
    expires_at = -(-(now + config.download_url_ttl) // THUMBNAIL_URL_STEP) * THUMBNAIL_URL_STEP
    path = f"/t/{fingerprint}-page" if page else f"/t/{fingerprint}"
    sig = signature(config.cdn_secret, expires_at, path, "", "")
    return f"{config.cdn_url.rstrip('/')}{path}?exp={expires_at}&sig={sig}", expires_at


def signature(secret: str, expires_at: int, path: str, ascii_name: str, mime: str) -> str:
    """cdn/signing.js's edgeSignature: base64url HMAC-SHA256 over the fields, one per line.

    ``path`` is the decoded path nginx sees as $uri: /c/<fingerprint>/<RFC 5987 name>.
    No field holds a newline, so fields cannot slide into each other.
    """
    message = "\n".join([SIGNATURE_LABEL, str(expires_at), path, ascii_name, mime])
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
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
