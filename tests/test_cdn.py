"""The CDN tier: a real nginx in front of the real store, signed URLs from gateway/core/downloads.py.

Whether an answer came from the cache is in the tier's access log only
(contract v1.1, "CDN tier headers"): the tests read it there, by the answer's
X-Request-Id.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest
import yarl

import boto3
from botocore.client import Config as BotoConfig
from botocore.exceptions import ClientError

from cdn.nginx import SECRETS, TEMPLATE_PATH, js_module, main_config, render, secret_environment, start_local_cdn
from gateway.config import Config
from gateway.core.downloads import ascii_fallback, content_type, download_url, rfc5987_name, signature
from protocol.fingerprints import EMPTY_FINGERPRINT
from gateway.core.content import content_key, thumbnail_key
from storage.embedded import free_port
from tests.cdn_fixtures import cdn_environment, put_content
from tests.gates import Gate
from tests.harness import ACCESS_KEY, BUCKET, CDN_ACCESS_KEY, CDN_SECRET_KEY, SECRET_KEY, gateway_config, raw_s3

MIB = 1024 * 1024
SLICE = int(re.search(r"^\s*slice (\d+)m;", TEMPLATE_PATH.read_text(), re.M).group(1)) * MIB
BIG = 2 * SLICE + SLICE // 2  # three slices, three parts in the store


async def fetch(http: aiohttp.ClientSession, url: str, *, exact: bool = True, method: str = "GET", **headers):
    """(status, body, headers). ``exact`` sends the URL byte for byte; otherwise aiohttp re-encodes it."""
    target = yarl.URL(url, encoded=True) if exact else url
    async with http.request(method, target, headers=headers, allow_redirects=False) as response:
        assert "X-Cache-Status" not in response.headers, "the cache status is for the access log only"
        return response.status, await response.read(), response.headers


def cache_status(cdn, headers) -> str:
    """HIT or MISS of one answer, from the tier's access log."""
    return cdn.cache_status(headers["X-Request-Id"])


def replace_arg(url: str, name: str, value: str | None) -> str:
    """The URL with one raw query argument changed (None: removed)."""
    base, _, query = url.partition("?")
    args = []
    for arg in query.split("&"):
        key = arg.split("=", 1)[0]
        if key != name:
            args.append(arg)
        elif value is not None:
            args.append(f"{key}={value}")
    return f"{base}?{'&'.join(args)}"


def cache_file(cdn, fingerprint: str, index: int) -> Path:
    """Where nginx keeps slice ``index`` (levels=1:2, named by the MD5 of the cache key)."""
    key = f"content/{fingerprint} bytes={index * SLICE}-{(index + 1) * SLICE - 1}"
    digest = hashlib.md5(key.encode()).hexdigest()
    return cdn.cache_dir / digest[-1] / digest[-3:-1] / digest


async def cached_slices(cdn, fingerprint: str, size: int, expect: set[int] | None = None) -> set[int]:
    """The slices of this content in nginx's cache (waiting briefly for ``expect``: files land after the bytes)."""
    deadline = time.monotonic() + 3
    while True:
        found = {i for i in range(max(1, -(-size // SLICE))) if cache_file(cdn, fingerprint, i).exists()}
        if expect is None or found == expect or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def all_cache_files(cdn) -> set[Path]:
    return {p for p in cdn.cache_dir.rglob("*") if p.is_file()}


@pytest.fixture
async def cached_file(content_store, cdn_config, cdn, http):
    """A small file already in the CDN's cache, with a fresh URL for it."""
    data = os.urandom(4096)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "report.txt", "text/plain")
    status, body, headers = await fetch(http, url)
    assert (status, body, cache_status(cdn, headers)) == (200, data, "MISS")
    return fingerprint, data, url


# --- through nginx -----------------------------------------------------------


async def test_first_download_is_a_miss_then_a_hit_with_the_same_bytes(content_store, cdn_config, cdn, http):
    data = os.urandom(300_000)
    fingerprint = await put_content(content_store, data)
    url, expires_at = download_url(cdn_config, fingerprint, "Quarterly report.pdf", "application/pdf")
    assert expires_at - time.time() == pytest.approx(cdn_config.download_url_ttl, abs=2)

    first = await fetch(http, url)
    second = await fetch(http, url)
    assert first[0] == second[0] == 200
    assert (cache_status(cdn, first[2]), cache_status(cdn, second[2])) == ("MISS", "HIT")
    assert hashlib.sha256(first[1]).digest() == hashlib.sha256(second[1]).digest() == hashlib.sha256(data).digest()

    headers = second[2]
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Length"] == str(len(data))
    assert headers["ETag"] == f'"{fingerprint}"'
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"Quarterly_report.pdf\"; filename*=UTF-8''Quarterly%20report.pdf"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Nothing of the store's own answer reaches the client, hit or miss.
    for response in (first, second):
        names = {name.lower() for name in response[2]}
        assert not {n for n in names if n.startswith(("x-amz", "seaweed"))}
        assert not names & {"last-modified", "vary"}
        assert response[2].getall("Content-Type") == ["application/pdf"]
        assert response[2]["Server"] == "nginx"


async def test_another_users_url_for_the_same_content_is_a_hit_on_one_cached_copy(
    content_store, cdn_config, cdn, http
):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    before = all_cache_files(cdn)
    owner_url, _ = download_url(cdn_config, fingerprint, "holiday.mov", "video/quicktime")
    # Client headers are not forwarded (the store would take a client's Authorization for the tier's).
    status, body, headers = await fetch(http, owner_url, Authorization="Bearer x", Origin="https://a.example")
    assert (status, cache_status(cdn, headers), body == data) == (200, "MISS", True)

    # Another user's file with the same bytes: another name, type and expiry, the same copy.
    other_url, _ = download_url(cdn_config, fingerprint, "copy.bin", "", now=int(time.time()) + 7)
    assert other_url.split("?")[0] != owner_url.split("?")[0]
    status, body, headers = await fetch(http, other_url, Origin="https://elsewhere.example")
    assert (status, cache_status(cdn, headers), body == data) == (200, "HIT", True)
    assert headers["Content-Type"] == "application/octet-stream"
    assert "filename*=UTF-8''copy.bin" in headers["Content-Disposition"]

    assert await cached_slices(cdn, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}
    assert len(all_cache_files(cdn) - before) == 3  # one file per slice, not per URL


@contextlib.asynccontextmanager
async def gated_cdn_tier(store, cdn_config, tmp_path, template: str | None = None):
    """Another CDN tier (from ``template``, if given), reading the store through a gate
    (tests/gates.py): the test holds its store requests and counts every one that reaches the store."""
    gate = await Gate(store.endpoint, methods=("GET",)).start()
    env = cdn_environment(store, cdn_config.cdn_secret, GATEWAY_S3_ENDPOINT=gate.url)
    try:
        gated = start_local_cdn(tmp_path / "cdn", env, free_port(), workers="2", template=template)
        try:
            yield gated, gate
        finally:
            gated.stop()
    finally:
        await gate.stop()


async def send_get(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a GET of ``url`` whole (it is in the server's socket on return); read the answer with read_answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()
    return reader, writer


async def read_answer(sent: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> tuple[int, bytes, str]:
    """(status, body, X-Request-Id) of a GET sent by send_get (the server closes the connection after it)."""
    reader, writer = sent
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    request_id = re.search(rb"\r\nX-Request-Id: ([0-9a-f]+)", head, re.I)
    return int(head.split()[1]), body, request_id[1].decode() if request_id else ""


async def test_concurrent_misses_fetch_each_slice_from_the_store_once(content_store, cdn_config, store, tmp_path):
    async with gated_cdn_tier(store, cdn_config, tmp_path) as (gated, gate):
        await concurrent_misses(content_store, cdn_config, gated, gate)


async def concurrent_misses(content_store, cdn_config, gated, gate) -> None:
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    urls = [download_url(cdn_config, fingerprint, f"file-{i}.bin", "")[0].replace(cdn_config.cdn_url, gated.url)
            for i in range(4)]
    before = all_cache_files(gated)
    # The first download's first slice waits at the store until the other three are asked for too:
    # without the cache lock each of them would ask the store for that slice as well.
    gate.hold_after(0)
    downloads = [await send_get(urls[0])]
    await gate.holding(1)
    downloads += [await send_get(url) for url in urls[1:]]
    gate.open()
    answers = [await read_answer(sent) for sent in downloads]
    assert all(status == 200 and body == data for status, body, _ in answers)
    key = f"/{BUCKET}/{content_key(fingerprint)}"
    slices = [f"bytes={i * SLICE}-{(i + 1) * SLICE - 1}" for i in range(3)]
    assert sorted(gate.forwarded) == sorted(("GET", key, r) for r in slices)  # each slice once, nothing else
    assert await cached_slices(gated, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}
    assert len(all_cache_files(gated) - before) == 3


def tampered(url: str, how: str, other_fingerprint: str) -> str:
    fingerprint = urlsplit(url).path.split("/")[2]
    sig = re.search(r"[?&]sig=([^&]+)", url)[1]
    exp = int(re.search(r"[?&]exp=(\d+)", url)[1])
    changes = {
        "other-content": lambda: url.replace(f"/c/{fingerprint}/", f"/c/{other_fingerprint}/"),
        "name": lambda: url.replace("/report.txt?", "/secret.txt?"),
        "name-spelling": lambda: url.replace("/report.txt?", "/report%252Etxt?"),  # the same name, %-encoded
        "path-shape": lambda: url.replace("/c/", "/c/x/"),
        "sig": lambda: replace_arg(url, "sig", ("B" if sig[0] == "A" else "A") + sig[1:]),
        "no-sig": lambda: replace_arg(url, "sig", None),
        "exp": lambda: replace_arg(url, "exp", str(exp + 1)),
        "exp-far": lambda: replace_arg(url, "exp", "9999999999"),
        "no-exp": lambda: replace_arg(url, "exp", None),
        "exp-spelling": lambda: replace_arg(url, "exp", f"0{exp}"),
        "ascii-name": lambda: replace_arg(url, "ascii_name", "evil.exe"),
        "no-ascii-name": lambda: replace_arg(url, "ascii_name", None),
        "type": lambda: replace_arg(url, "type", "text/html"),
        "no-type": lambda: replace_arg(url, "type", None),
        "sig-of-other-fields": lambda: replace_arg(
            replace_arg(url, "type", "text/html"), "sig", signature("guessed-secret", exp, "/c/x", "report.txt", "text/html")
        ),
        "sig-truncated": lambda: replace_arg(url, "sig", sig[:-1]),
    }
    return changes[how]()


TAMPERINGS = ["other-content", "name", "name-spelling", "path-shape", "sig", "no-sig", "exp", "exp-far", "no-exp",
              "exp-spelling", "ascii-name", "no-ascii-name", "type", "no-type", "sig-of-other-fields", "sig-truncated"]


@pytest.mark.parametrize("how", TAMPERINGS)
async def test_tampered_urls_are_refused_even_when_the_content_is_cached(
    how, cached_file, content_store, cdn_config, cdn, http
):
    fingerprint, data, url = cached_file
    other_data = os.urandom(1000)
    other = await put_content(content_store, other_data)
    other_url, _ = download_url(cdn_config, other, "mine.txt", "text/plain")
    assert (await fetch(http, other_url))[0] == 200  # the other content is cached too

    changed = tampered(url, how, other)
    assert changed != url
    for exact in (True, False):
        status, body, headers = await fetch(http, changed, exact=exact)
        assert status == 403, (changed, body)
        assert json.loads(body)["error"]["code"] == "invalid_download_url"
        assert data not in body and other_data not in body
        assert "Content-Disposition" not in headers
        # Refused before the cache is looked at: nothing was served or fetched for it.
        assert cdn.log_entries(headers["X-Request-Id"])[-1]["cache"] == ""
        assert not cdn.log_entries(headers["X-Request-Id"], kind="store_fetch", timeout=0)
    # The untouched URL still works: the check refused the change, nothing else.
    status, _, headers = await fetch(http, url)
    assert (status, cache_status(cdn, headers)) == (200, "HIT")


async def test_an_expired_url_is_refused_even_when_the_content_is_cached(cached_file, cdn_config, http):
    fingerprint, data, _ = cached_file
    long_ago = int(time.time()) - cdn_config.download_url_ttl - 5
    expired, expires_at = download_url(cdn_config, fingerprint, "report.txt", "text/plain", now=long_ago)
    assert expires_at < time.time()
    status, body, _ = await fetch(http, expired)
    assert status == 403
    assert json.loads(body)["error"]["code"] == "download_url_expired" and data not in body
    # A URL that only looks expired is a forgery, and is told so.
    status, body, _ = await fetch(http, replace_arg(expired, "sig", "A" * 43))
    assert (status, json.loads(body)["error"]["code"]) == (403, "invalid_download_url")


async def test_a_download_started_before_expiry_finishes_after_it(content_store, cdn_config, cdn, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    # Valid for two more seconds.
    url, expires_at = download_url(cdn_config, fingerprint, "slow.bin", "", now=int(time.time()) + 2 - cdn_config.download_url_ttl)
    async with http.get(yarl.URL(url, encoded=True)) as response:
        assert response.status == 200
        request_id = response.headers["X-Request-Id"]
        received = b""
        # A slow reader: the URL expires while the response is still being sent.
        while chunk := await response.content.read(512 * 1024):
            received += chunk
            await asyncio.sleep(0.1)
    assert time.time() > expires_at + 1
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert cdn.cache_status(request_id) == "MISS"
    assert await cached_slices(cdn, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}
    # New requests with it are refused, even for what is cached.
    assert (await fetch(http, url))[0] == 403


def store_fetches(cdn, request_id: str) -> list[dict]:
    """The store requests of one download, by the first byte they asked for."""
    fetches = cdn.log_entries(request_id, kind="store_fetch")
    return sorted(fetches, key=lambda f: int(f["range"].removeprefix("bytes=").split("-")[0] or 0))


async def test_each_slice_of_a_miss_is_a_store_request_of_its_own_signed_when_the_download_began(
    content_store, cdn_config, cdn, http
):
    """Within its first 10 minutes a download's slices go to the store straight from the edge,
    under the signature made when the download began (SigV4 allows 15 minutes)."""
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "sliced.bin", "")
    before = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 1))
    status, body, headers = await fetch(http, url)
    after = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 1))
    assert (status, body == data) == (200, True)
    fetches = store_fetches(cdn, headers["X-Request-Id"])
    assert [(f["via"], f["range"], f["store_status"]) for f in fetches] == [
        ("edge", f"bytes={i * SLICE}-{min((i + 1) * SLICE, BIG) - 1}", "206") for i in range(3)
    ]
    assert len({f["fetch_id"] for f in fetches}) == 3
    assert len({f["signed_at"] for f in fetches}) == 1 and before <= fetches[0]["signed_at"] <= after
    # A hit asks the store nothing.
    status, _, headers = await fetch(http, url)
    assert (status, cache_status(cdn, headers)) == (200, "HIT")
    assert not cdn.log_entries(headers["X-Request-Id"], kind="store_fetch", timeout=0.3)


async def test_a_download_past_its_signing_window_gets_its_later_slices_through_the_fetcher(
    content_store, cdn_config, store, tmp_path
):
    """The store refuses a signature more than 15 minutes old, and a download can take longer:
    a slice asked for after the edge's window goes through the store fetcher, signed as it goes out.
    Here the window is 0 seconds, and the store holds the first slice until the clock has left it."""
    template = TEMPLATE_PATH.read_text().replace("set $edge_signing_seconds 600;", "set $edge_signing_seconds 0;")
    assert template != TEMPLATE_PATH.read_text()
    async with gated_cdn_tier(store, cdn_config, tmp_path, template) as (short, gate):
        data = os.urandom(4 * SLICE + 1000)
        fingerprint = await put_content(content_store, data)
        url = download_url(cdn_config, fingerprint, "long.bin", "")[0].replace(cdn_config.cdn_url, short.url)
        gate.hold_after(0)
        download = await send_get(url)
        await gate.holding(1)  # the first slice's store request: signed by now
        signed_by = int(time.time())
        while int(time.time()) <= signed_by + 1:
            await asyncio.sleep(0.1)  # waiting for the clock itself, not for the machine
        gate.open()
        status, body, request_id = await read_answer(download)
        assert (status, hashlib.sha256(body).digest()) == (200, hashlib.sha256(data).digest())
        fetches = store_fetches(short, request_id)
    assert [(f["via"], f["range"], f["store_status"]) for f in fetches] == [
        ("edge" if i == 0 else "fetcher", f"bytes={i * SLICE}-{(i + 1) * SLICE - 1}", "206") for i in range(5)
    ]
    later = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed_by + 2))
    assert fetches[0]["signed_at"] <= time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed_by))
    assert all(f["signed_at"] >= later for f in fetches[1:])  # each signed as it went out
    assert len({f["fetch_id"] for f in fetches}) == 5


async def test_range_requests_on_a_miss_fetch_only_their_slices(content_store, cdn_config, cdn, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "big.bin", "")

    async def ranged(header: str, first: int, last: int, cached: str) -> None:
        status, body, headers = await fetch(http, url, Range=header)
        assert status == 206, body[:200]
        assert headers["Content-Range"] == f"bytes {first}-{last}/{BIG}"
        assert body == data[first : last + 1]
        assert cache_status(cdn, headers) == cached

    middle = SLICE + 12345
    await ranged(f"bytes={middle}-{middle + 999}", middle, middle + 999, "MISS")
    assert await cached_slices(cdn, fingerprint, BIG, {1}) == {1}  # not the whole file

    await ranged("bytes=0-99", 0, 99, "MISS")
    await ranged(f"bytes={BIG - 100}-{BIG - 1}", BIG - 100, BIG - 1, "MISS")
    assert await cached_slices(cdn, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}

    # Across slice (and store part) boundaries, from the cache.
    await ranged(f"bytes={SLICE - 10}-{2 * SLICE + 9}", SLICE - 10, 2 * SLICE + 9, "HIT")
    await ranged(f"bytes={BIG - 5}-", BIG - 5, BIG - 1, "HIT")
    await ranged("bytes=-100", BIG - 100, BIG - 1, "HIT")
    status, body, headers = await fetch(http, url)
    assert (status, cache_status(cdn, headers)) == (200, "HIT")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


async def test_a_range_on_a_cold_open_end_and_past_the_end(content_store, cdn_config, cdn, http):
    data = os.urandom(SLICE + 5000)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "tail.bin", "")
    status, body, headers = await fetch(http, url, Range=f"bytes={SLICE + 10}-")
    assert (status, cache_status(cdn, headers), body) == (206, "MISS", data[SLICE + 10 :])
    status, body, headers = await fetch(http, url, Range=f"bytes={4 * SLICE}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"


async def test_a_whole_multi_slice_file_on_a_miss(content_store, cdn_config, cdn, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "whole.bin", "")
    status, body, headers = await fetch(http, url, exact=False)
    assert (status, cache_status(cdn, headers), len(body)) == (200, "MISS", BIG)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    status, body, headers = await fetch(http, url, method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(BIG))


async def test_a_head_on_a_miss_is_signed_as_the_get_the_cache_sends(content_store, cdn_config, cdn, http):
    data = os.urandom(SLICE + 10)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, fingerprint, "head.bin", "")
    status, body, headers = await fetch(http, url, method="HEAD")
    assert (status, body, headers["Content-Length"], cache_status(cdn, headers)) == (200, b"", str(len(data)), "MISS")
    assert {f["store_status"] for f in store_fetches(cdn, headers["X-Request-Id"])} == {"206"}


async def test_an_empty_file(content_store, cdn_config, cdn, http):
    fingerprint = await put_content(content_store, b"")
    assert fingerprint == EMPTY_FINGERPRINT
    url, _ = download_url(cdn_config, fingerprint, "empty.txt", "text/plain")
    first = await fetch(http, url)
    second = await fetch(http, url)
    assert [(s, b) for s, b, _ in (first, second)] == [(200, b""), (200, b"")]
    assert cache_status(cdn, second[2]) == "HIT"
    assert second[2]["Content-Type"] == "text/plain"


@pytest.mark.parametrize(
    "name",
    [
        "résumé.pdf",
        "report (1).pdf",
        "John's \"final\"; v2.txt",
        "line\r\nSet-Cookie: x=1.txt",
        "报告.pdf",
        "party 🎉.bin",
        "100% done & more+x=y?.txt",
        "a/b\\c.txt",
        "..",
        "~tilde.txt",
    ],
)
async def test_any_unicode_name_arrives_intact_and_cannot_inject_headers(name, cached_file, content_store, cdn_config, http):
    fingerprint, data, _ = cached_file
    url, _ = download_url(cdn_config, fingerprint, name, "text/plain")
    # Clients re-encode URLs their own way (aiohttp does): both must pass the check.
    for exact in (True, False):
        status, body, headers = await fetch(http, url, exact=exact)
        assert (status, body) == (200, data)
        assert "Set-Cookie" not in headers
        disposition = headers["Content-Disposition"]
        match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"; filename\*=UTF-8\'\'([A-Za-z0-9%._~-]+)', disposition)
        assert match, disposition
        assert match[1] == ascii_fallback(name)
        assert unquote(match[2], errors="strict") == name
    # And a browser-like client that sends the URL as it is given.
    with urllib.request.urlopen(url) as response:
        assert response.read() == data


def test_a_download_url_holds_nothing_but_the_edge_signature(cdn_config):
    url, expires_at = download_url(cdn_config, "ab" * 32, "report.pdf", "application/pdf")
    query = urlsplit(url).query
    assert [arg.split("=", 1)[0] for arg in query.split("&")] == ["exp", "ascii_name", "type", "sig"]
    assert "amz" not in url.lower() and "credential" not in url.lower()
    for secret in (ACCESS_KEY, SECRET_KEY, CDN_ACCESS_KEY, CDN_SECRET_KEY, cdn_config.cdn_secret):
        assert secret not in url
    assert urlsplit(url).netloc == urlsplit(cdn_config.cdn_url).netloc


async def test_the_access_log_has_the_cache_status_and_request_id_but_no_query(cached_file, cdn, http):
    fingerprint, _, url = cached_file
    status, _, headers = await fetch(http, url, Range="bytes=0-9")
    assert status == 206
    entry = cdn.log_entries(headers["X-Request-Id"])[-1]
    assert entry["cache"] == "HIT" and entry["status"] == 206 and entry["range"] == "bytes=0-9"
    assert entry["path"] == urlsplit(url).path.replace("%25", "%")  # decoded once, as nginx sees it
    assert re.fullmatch(r"[0-9a-f]{32}", entry["request_id"])
    # Nothing of a URL's query (exp and sig are live credentials) in any line.
    text = cdn.access_log_path.read_text()
    assert "sig=" not in text and "exp=" not in text and "ascii_name" not in text
    assert re.search(r"sig=([^&]+)", url)[1] not in text


async def test_a_cdn_whose_store_key_is_wrong_answers_502_and_caches_nothing(
    cached_file, content_store, cdn_config, store, tmp_path, http
):
    data = os.urandom(3000)
    fingerprint = await put_content(content_store, data)
    env = cdn_environment(store, cdn_config.cdn_secret, CDN_S3_SECRET_KEY="not-the-key")
    wrong = start_local_cdn(tmp_path / "cdn", env, free_port(), workers="1")
    try:
        url, _ = download_url(cdn_config, fingerprint, "x.bin", "")
        moved = url.replace(cdn_config.cdn_url, wrong.url)
        status, body, headers = await fetch(http, moved)
        assert (status, json.loads(body)["error"]["code"]) == (502, "store_refused")
        assert BUCKET.encode() not in body and b"<" not in body
        assert [f["store_status"] for f in wrong.log_entries(headers["X-Request-Id"], kind="store_fetch")] == ["403"]
        assert not [p for p in wrong.cache_dir.rglob("*") if p.is_file()]
    finally:
        wrong.stop()
    # The URL was fine: the tier with the right key serves it.
    status, body, _ = await fetch(http, url)
    assert (status, body) == (200, data)


async def test_content_missing_from_the_store_is_404(cdn_config, http):
    url, _ = download_url(cdn_config, "ab" * 32, "ghost.txt", "")
    status, body, _ = await fetch(http, url)
    assert status == 404 and b"not_found" in body


async def test_only_get_and_head_and_only_download_paths(cached_file, cdn, http):
    _, _, url = cached_file
    for method in ("POST", "PUT", "DELETE"):
        assert (await fetch(http, url, method=method))[0] == 405
    assert (await fetch(http, f"{cdn.url}/"))[0] == 404
    assert (await fetch(http, f"{cdn.url}/{BUCKET}/content/x"))[0] == 404
    assert (await fetch(http, f"{cdn.url}/healthz"))[0] == 200


async def test_the_store_refuses_the_cdn_key_everything_but_reading_objects(cached_file, store):
    """The tier's key reads content and thumbnails; it cannot write, delete, list, read elsewhere or reach
    another bucket."""
    fingerprint, data, _ = cached_file
    key = content_key(fingerprint)
    reader = boto3.client(
        "s3", endpoint_url=store.endpoint, aws_access_key_id=CDN_ACCESS_KEY, aws_secret_access_key=CDN_SECRET_KEY,
        region_name="us-east-1", config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert reader.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    writer = raw_s3(store.endpoint)  # the gateway's key
    upload_key = content_key(hashlib.sha256(os.urandom(16)).hexdigest())
    upload_id = writer.create_multipart_upload(Bucket=BUCKET, Key=upload_key)["UploadId"]
    thumbnail, elsewhere = thumbnail_key(fingerprint), f"elsewhere/{fingerprint}"
    for other in (thumbnail, elsewhere):
        writer.put_object(Bucket=BUCKET, Key=other, Body=b"small")
    assert reader.get_object(Bucket=BUCKET, Key=thumbnail)["Body"].read() == b"small"
    writer.upload_part(Bucket=BUCKET, Key=upload_key, UploadId=upload_id, PartNumber=1, Body=b"in progress")
    attempts = {
        "overwrite": lambda: reader.put_object(Bucket=BUCKET, Key=key, Body=b"evil"),
        "put": lambda: reader.put_object(Bucket=BUCKET, Key="content/new", Body=b"evil"),
        "put a thumbnail": lambda: reader.put_object(Bucket=BUCKET, Key=thumbnail, Body=b"evil"),
        "read elsewhere": lambda: reader.get_object(Bucket=BUCKET, Key=elsewhere),
        "delete": lambda: reader.delete_object(Bucket=BUCKET, Key=key),
        "list": lambda: reader.list_objects_v2(Bucket=BUCKET, Prefix="content/"),
        "make bucket": lambda: reader.create_bucket(Bucket="cdn-made-this"),
        "bucket policy": lambda: reader.put_bucket_policy(Bucket=BUCKET, Policy='{"Version": "2012-10-17", "Statement": []}'),
        # Uploads in progress name the fingerprints being uploaded, and their parts' sizes: not the tier's business.
        "list uploads": lambda: reader.list_multipart_uploads(Bucket=BUCKET),
        "list parts": lambda: reader.list_parts(Bucket=BUCKET, Key=upload_key, UploadId=upload_id),
        "start upload": lambda: reader.create_multipart_upload(Bucket=BUCKET, Key="content/new"),
        "abort upload": lambda: reader.abort_multipart_upload(Bucket=BUCKET, Key=upload_key, UploadId=upload_id),
        "read the bucket policy": lambda: reader.get_bucket_policy(Bucket=BUCKET),
    }
    for name, attempt in attempts.items():
        with pytest.raises(ClientError) as refused:
            attempt()
        error = refused.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403), name
    assert reader.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data  # neither the delete nor the overwrite happened
    assert [part["PartNumber"] for part in writer.list_parts(Bucket=BUCKET, Key=upload_key, UploadId=upload_id)["Parts"]] == [1]
    writer.abort_multipart_upload(Bucket=BUCKET, Key=upload_key, UploadId=upload_id)
    for other in (thumbnail, elsewhere):
        writer.delete_object(Bucket=BUCKET, Key=other)


async def test_the_store_refuses_anonymous_reads(cached_file, content_store, store, http):
    fingerprint, _, _ = cached_file
    object_url = f"{store.endpoint}/{BUCKET}/{content_key(fingerprint)}"
    assert (await fetch(http, object_url))[0] == 403
    assert (await fetch(http, f"{store.endpoint}/{BUCKET}/"))[0] == 403  # no listing either
    presigned = content_store.presign_get(content_key(fingerprint), 60)
    unsigned = re.sub(r"&X-Amz-Signature=[0-9a-f]+", "", presigned)
    assert (await fetch(http, unsigned))[0] in (400, 403)
    wrong = re.sub(r"X-Amz-Signature=[0-9a-f]", "X-Amz-Signature=0", presigned)
    wrong = wrong if wrong != presigned else re.sub(r"X-Amz-Signature=0", "X-Amz-Signature=1", presigned)
    assert (await fetch(http, wrong))[0] == 403
    assert (await fetch(http, presigned))[0] == 200  # the signed GET nginx forwards works


# --- URL building, no nginx ----------------------------------------------------


def test_download_url_shape(cdn_config):
    fingerprint = "ab" * 32
    now = int(time.time())
    url, expires_at = download_url(cdn_config, fingerprint, "a (1).txt", "Text/Plain; charset=utf-8", now=now)
    assert expires_at == now + cdn_config.download_url_ttl
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == cdn_config.cdn_url
    assert parts.path == f"/c/{fingerprint}/a%2520%25281%2529.txt"
    expected_sig = signature(cdn_config.cdn_secret, expires_at, f"/c/{fingerprint}/a%20%281%29.txt", "a_1.txt", "text/plain")
    assert parts.query == f"exp={expires_at}&ascii_name=a_1.txt&type=text/plain&sig={expected_sig}"


def test_download_url_refuses_what_is_not_a_fingerprint(cdn_config):
    for bad in ("AB" * 32, "ab" * 31, "../" + "a" * 61, ""):
        with pytest.raises(ValueError):
            download_url(cdn_config, bad, "x", "")


def test_signature_is_an_hmac_sha256_over_every_field():
    base = dict(secret="s", expires_at=1, path="/c/x/n", ascii_name="n", mime="a/b")
    reference = signature(**base)
    digest = hmac.new(b"s", b"dropbox-cdn-download-v1\n1\n/c/x/n\nn\na/b", hashlib.sha256).digest()
    assert reference == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", reference)
    for field, value in [("secret", "t"), ("expires_at", 2), ("path", "/c/x/m"), ("ascii_name", "m"), ("mime", "a/c")]:
        assert signature(**{**base, field: value}) != reference
    # Fields cannot slide into each other.
    assert signature(**{**base, "path": "/c/x/nn", "ascii_name": ""}) != signature(**{**base, "path": "/c/x/n", "ascii_name": "n"})


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("résumé.pdf", "resume.pdf"),
        ("report (1).pdf", "report_1.pdf"),
        ("报告.pdf", "download.pdf"),
        ("日本語", "download"),
        (".bashrc", "bashrc"),
        ("a\"b\r\nc.txt", "a_b_c.txt"),
        ("archive.tar.gz", "archive.tar.gz"),
        ("weird.ext with space", "weird.ext_with_space"),
        ("x" * 300 + ".txt", "x" * 196 + ".txt"),
    ],
)
def test_ascii_fallback(name, fallback):
    assert ascii_fallback(name) == fallback


@pytest.mark.parametrize(
    ("file_type", "header"),
    [
        ("image/svg+xml", "image/svg+xml"),
        ("Text/HTML; charset=utf-8", "text/html"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("", "application/octet-stream"),
        (None, "application/octet-stream"),
        ("not a type", "application/octet-stream"),
        ("text/plain\r\nX-Evil: 1", "application/octet-stream"),
        ("text/x&y", "application/octet-stream"),
    ],
)
def test_content_type(file_type, header):
    assert content_type(file_type) == header


def test_rfc5987_name():
    assert rfc5987_name("a b/ü.txt") == "a%20b%2F%C3%BC.txt"
    assert rfc5987_name("..") == "%2E%2E"
    assert rfc5987_name("") == "download"


# --- the template ---------------------------------------------------------------

SETTINGS = {
    "CDN_LISTEN": "8081",
    "CDN_STORE_HOST": "minio:9000",
    "CDN_STORE_REGION": "us-east-1",
    "CDN_STORE_FETCHER": "unix:/run/cdn/store-fetcher.sock",
    "CDN_NJS_DIR": "/etc/nginx/njs",
    "CDN_CACHE_DIR": "/var/cache/nginx/cdn",
    "CDN_CACHE_MAX_SIZE": "10g",
    "CDN_ACCESS_LOG": "/dev/stdout",
    "GATEWAY_S3_BUCKET": "dropbox-content",
}


def test_a_slice_is_one_chunk_of_an_uploaded_file():
    """dbx fetches a file one chunk per Range request, several at once (client/download.py). In slices larger
    than a chunk, requests for one slice's chunks wait on its cache lock, which nginx looks at every 500 ms:
    a new 32 MiB file came at a third of the speed of 8 MiB slices. Smaller slices would pay the store's
    cost per request more often (README, "CDN tier and control path")."""
    assert SLICE == Config.chunk_size


def test_render_fills_our_settings_and_keeps_nginx_variables():
    rendered = render(SETTINGS)
    assert not re.search(r"\$\{[A-Z]", rendered)
    assert "server minio:9000;" in rendered
    assert "listen unix:/run/cdn/store-fetcher.sock;" in rendered
    assert "set $store_path /dropbox-content/content/$fingerprint;" in rendered
    for variable in ("$slice_range", "$uri", "$arg_type", "$fingerprint", "$upstream_cache_status", "$request_id"):
        assert variable in rendered


def test_the_template_holds_no_secret_and_sends_no_cache_status():
    template = TEMPLATE_PATH.read_text()
    code = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("#"))
    for name in SECRETS:
        assert name not in code, f"{name} belongs in nginx's environment, not its configuration"
    assert "X-Cache-Status" not in code and "secure_link" not in code
    # The cache status goes to the log, and only there.
    assert re.search(r'"cache":"\$upstream_cache_status"', code)
    # What signing.js reads from the environment is what the main configurations pass on.
    njs = (TEMPLATE_PATH.parent / "signing.js").read_text()
    assert set(re.findall(r"process\.env\.([A-Z0-9_]+)", njs)) == set(SECRETS)
    compose_main = (TEMPLATE_PATH.parent / "nginx.main.conf").read_text()
    assert set(re.findall(r"^env ([A-Z0-9_]+);", compose_main, re.M)) == set(SECRETS)
    assert set(re.findall(r"^env ([A-Z0-9_]+);", main_config(Path("/x"), "1", "/m.so"), re.M)) == set(SECRETS)


def test_render_refuses_missing_or_unsafe_settings():
    with pytest.raises(ValueError, match="GATEWAY_S3_BUCKET"):
        render({k: v for k, v in SETTINGS.items() if k != "GATEWAY_S3_BUCKET"})
    for bad in ('a"b', "a$b", "a b", "a;b", "a\\b", "a\nb", "ab\n", "a{b}"):
        with pytest.raises(ValueError):
            render({**SETTINGS, "GATEWAY_S3_BUCKET": bad})


def test_the_local_cdn_needs_its_secrets_and_keeps_them_out_of_its_files(cdn, store, tmp_path):
    env = cdn_environment(store, "x")
    for name in SECRETS:
        with pytest.raises(ValueError, match=name):
            start_local_cdn(tmp_path / name, {**env, name: ""}, free_port())
    written = {path.name: path.read_text() for path in cdn.state_dir.glob("*.conf")}
    assert set(written) == {"cdn.conf", "nginx.conf"}
    for secret in (gateway_config(store, Path(os.devnull), 0).cdn_secret, CDN_SECRET_KEY):
        assert not [name for name, text in written.items() if secret in text]
    assert (cdn.state_dir.stat().st_mode & 0o777) == 0o700
    # nginx's environment is the three secrets and nothing else (its master process writes its
    # title over /proc/<pid>/environ, so this is checked where the environment is made).
    assert secret_environment({**env, "GATEWAY_S3_SECRET_KEY": "s", "PATH": "/bin"}) == {n: env[n] for n in SECRETS}


def test_the_nginx_images_envsubst_renders_it_the_same():
    """docker-compose mounts the template into /etc/nginx/templates; the image runs envsubst on it."""
    if not Path("/usr/bin/envsubst").exists():
        pytest.skip("envsubst (gettext-base) is not installed")
    # Like the image's 20-envsubst-on-templates.sh: every defined variable is substituted.
    env = {**{k: v for k, v in os.environ.items() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)}, **SETTINGS}
    names = " ".join(f"${{{name}}}" for name in env)
    result = subprocess.run(
        ["/usr/bin/envsubst", names], input=TEMPLATE_PATH.read_text(), env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout == render(SETTINGS)


def test_nginx_accepts_the_rendered_configuration(tmp_path):
    settings = {
        **SETTINGS,
        "CDN_STORE_HOST": "127.0.0.1:9",
        "CDN_STORE_FETCHER": f"unix:{tmp_path}/fetcher.sock",
        "CDN_NJS_DIR": str(TEMPLATE_PATH.parent),
        "CDN_CACHE_DIR": str(tmp_path / "cache"),
        "CDN_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    (tmp_path / "cdn.conf").write_text(render(settings))
    (tmp_path / "nginx.conf").write_text(main_config(tmp_path, "1", js_module()))
    (tmp_path / "temp").mkdir()
    result = subprocess.run(
        ["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
