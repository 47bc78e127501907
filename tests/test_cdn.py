"""The CDN tier: a real nginx in front of the real store, signed URLs from gateway/downloads.py."""
from __future__ import annotations

import asyncio
import hashlib
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

from cdn.nginx import TEMPLATE_PATH, render
from gateway.core.downloads import STORE_URL_GRACE, ascii_fallback, content_type, download_url, rfc5987_name, signature
from protocol.fingerprints import EMPTY_FINGERPRINT
from gateway.core.content import content_key
from tests.cdn_fixtures import put_content
from tests.harness import BUCKET

MIB = 1024 * 1024
SLICE = int(re.search(r"^\s*slice (\d+)m;", TEMPLATE_PATH.read_text(), re.M).group(1)) * MIB
BIG = 2 * SLICE + SLICE // 2  # three slices, three parts in the store


async def fetch(http: aiohttp.ClientSession, url: str, *, exact: bool = True, method: str = "GET", **headers):
    """(status, body, headers). ``exact`` sends the URL byte for byte; otherwise aiohttp re-encodes it."""
    target = yarl.URL(url, encoded=True) if exact else url
    async with http.request(method, target, headers=headers, allow_redirects=False) as response:
        return response.status, await response.read(), response.headers


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
    url, _ = download_url(cdn_config, content_store, fingerprint, "report.txt", "text/plain")
    status, body, headers = await fetch(http, url)
    assert (status, body, headers["X-Cache-Status"]) == (200, data, "MISS")
    return fingerprint, data, url


# --- through nginx -----------------------------------------------------------


async def test_first_download_is_a_miss_then_a_hit_with_the_same_bytes(content_store, cdn_config, http):
    data = os.urandom(300_000)
    fingerprint = await put_content(content_store, data)
    url, expires_at = download_url(cdn_config, content_store, fingerprint, "Quarterly report.pdf", "application/pdf")
    assert expires_at - time.time() == pytest.approx(cdn_config.download_url_ttl, abs=2)

    first = await fetch(http, url)
    second = await fetch(http, url)
    assert first[0] == second[0] == 200
    assert (first[2]["X-Cache-Status"], second[2]["X-Cache-Status"]) == ("MISS", "HIT")
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
    owner_url, _ = download_url(cdn_config, content_store, fingerprint, "holiday.mov", "video/quicktime")
    # Client headers are not forwarded (MinIO and S3 refuse a presigned GET that also carries Authorization).
    status, body, headers = await fetch(http, owner_url, Authorization="Bearer x", Origin="https://a.example")
    assert (status, headers["X-Cache-Status"], body == data) == (200, "MISS", True)

    # Another user's file with the same bytes: another name, type and expiry, the same copy.
    other_url, _ = download_url(
        cdn_config, content_store, fingerprint, "copy.bin", "", now=int(time.time()) + 7
    )
    assert other_url.split("?")[0] != owner_url.split("?")[0]
    status, body, headers = await fetch(http, other_url, Origin="https://elsewhere.example")
    assert (status, headers["X-Cache-Status"], body == data) == (200, "HIT", True)
    assert headers["Content-Type"] == "application/octet-stream"
    assert "filename*=UTF-8''copy.bin" in headers["Content-Disposition"]

    assert await cached_slices(cdn, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}
    assert len(all_cache_files(cdn) - before) == 3  # one file per slice, not per URL


async def test_concurrent_misses_fetch_each_slice_once(content_store, cdn_config, cdn, http):
    data = os.urandom(SLICE + 1000)
    fingerprint = await put_content(content_store, data)
    before = all_cache_files(cdn)
    urls = [download_url(cdn_config, content_store, fingerprint, f"file-{i}.bin", "")[0] for i in range(4)]
    answers = await asyncio.gather(*(fetch(http, url) for url in urls))
    assert all(status == 200 and body == data for status, body, _ in answers)
    assert await cached_slices(cdn, fingerprint, len(data), {0, 1}) == {0, 1}
    assert len(all_cache_files(cdn) - before) == 2


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
        "ascii-name": lambda: replace_arg(url, "ascii_name", "evil.exe"),
        "type": lambda: replace_arg(url, "type", "text/html"),
    }
    return changes[how]()


@pytest.mark.parametrize(
    "how",
    ["other-content", "name", "name-spelling", "path-shape", "sig", "no-sig", "exp", "exp-far", "no-exp",
     "ascii-name", "type"],
)
async def test_tampered_urls_are_refused_even_when_the_content_is_cached(
    how, cached_file, content_store, cdn_config, http
):
    fingerprint, data, url = cached_file
    other_data = os.urandom(1000)
    other = await put_content(content_store, other_data)
    other_url, _ = download_url(cdn_config, content_store, other, "mine.txt", "text/plain")
    assert (await fetch(http, other_url))[0] == 200  # the other content is cached too

    changed = tampered(url, how, other)
    assert changed != url
    for exact in (True, False):
        status, body, headers = await fetch(http, changed, exact=exact)
        assert status == 403, (changed, body)
        assert b"invalid_download_url" in body
        assert data not in body and other_data not in body
        assert "Content-Disposition" not in headers
    # The untouched URL still works: the check refused the change, nothing else.
    assert (await fetch(http, url))[2]["X-Cache-Status"] == "HIT"


async def test_an_expired_url_is_refused_even_when_the_content_is_cached(cached_file, content_store, cdn_config, http):
    fingerprint, data, _ = cached_file
    long_ago = int(time.time()) - cdn_config.download_url_ttl - 5
    expired, expires_at = download_url(cdn_config, content_store, fingerprint, "report.txt", "text/plain", now=long_ago)
    assert expires_at < time.time()
    status, body, _ = await fetch(http, expired)
    assert status == 403
    assert b"download_url_expired" in body and data not in body


async def test_a_download_started_before_expiry_finishes_after_it(content_store, cdn_config, cdn, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    # Valid for two more seconds.
    url, expires_at = download_url(
        cdn_config, content_store, fingerprint, "slow.bin", "", now=int(time.time()) + 2 - cdn_config.download_url_ttl
    )
    async with http.get(yarl.URL(url, encoded=True)) as response:
        assert (response.status, response.headers["X-Cache-Status"]) == (200, "MISS")
        received = await response.content.readexactly(MIB)
        # A slow reader: the URL expires while the response is still being sent.
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 1.5)
        received += await response.read()
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert await cached_slices(cdn, fingerprint, BIG, {0, 1, 2}) == {0, 1, 2}
    # New requests with it are refused, even for what is cached.
    assert (await fetch(http, url))[0] == 403


async def test_range_requests_on_a_miss_fetch_only_their_slices(content_store, cdn_config, cdn, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, content_store, fingerprint, "big.bin", "")

    async def ranged(header: str, first: int, last: int, cache_status: str) -> None:
        status, body, headers = await fetch(http, url, Range=header)
        assert status == 206, body[:200]
        assert headers["Content-Range"] == f"bytes {first}-{last}/{BIG}"
        assert body == data[first : last + 1]
        assert headers["X-Cache-Status"] == cache_status

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
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


async def test_a_range_on_a_cold_open_end_and_past_the_end(content_store, cdn_config, http):
    data = os.urandom(SLICE + 5000)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, content_store, fingerprint, "tail.bin", "")
    status, body, headers = await fetch(http, url, Range=f"bytes={SLICE + 10}-")
    assert (status, headers["X-Cache-Status"], body) == (206, "MISS", data[SLICE + 10 :])
    status, body, headers = await fetch(http, url, Range=f"bytes={4 * SLICE}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"


async def test_a_whole_multi_slice_file_on_a_miss(content_store, cdn_config, http):
    data = os.urandom(BIG)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, content_store, fingerprint, "whole.bin", "")
    status, body, headers = await fetch(http, url, exact=False)
    assert (status, headers["X-Cache-Status"], len(body)) == (200, "MISS", BIG)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    status, body, headers = await fetch(http, url, method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(BIG))


async def test_an_empty_file(content_store, cdn_config, http):
    fingerprint = await put_content(content_store, b"")
    assert fingerprint == EMPTY_FINGERPRINT
    url, _ = download_url(cdn_config, content_store, fingerprint, "empty.txt", "text/plain")
    first = await fetch(http, url)
    second = await fetch(http, url)
    assert [(s, b) for s, b, _ in (first, second)] == [(200, b""), (200, b"")]
    assert second[2]["X-Cache-Status"] == "HIT"
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
    url, _ = download_url(cdn_config, content_store, fingerprint, name, "text/plain")
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


async def test_the_store_sees_only_the_presigned_get(cached_file, content_store, cdn_config, http):
    # A URL whose store part was altered is refused on a miss: nginx has no other access.
    data = os.urandom(2000)
    fingerprint = await put_content(content_store, data)
    url, _ = download_url(cdn_config, content_store, fingerprint, "x.bin", "")
    broken = re.sub(r"X-Amz-Signature=[0-9a-f]", "X-Amz-Signature=g", url)
    status, body, _ = await fetch(http, broken)
    assert status == 403 and b"invalid_download_url" in body and BUCKET.encode() not in body
    # The refusal was not cached: the proper URL is a miss that succeeds.
    status, body, headers = await fetch(http, url)
    assert (status, body, headers["X-Cache-Status"]) == (200, data, "MISS")


async def test_content_missing_from_the_store_is_404(content_store, cdn_config, http):
    url, _ = download_url(cdn_config, content_store, "ab" * 32, "ghost.txt", "")
    status, body, _ = await fetch(http, url)
    assert status == 404 and b"not_found" in body


async def test_only_get_and_head_and_only_download_paths(cached_file, cdn, http):
    _, _, url = cached_file
    for method in ("POST", "PUT", "DELETE"):
        assert (await fetch(http, url, method=method))[0] == 405
    assert (await fetch(http, f"{cdn.url}/"))[0] == 404
    assert (await fetch(http, f"{cdn.url}/{BUCKET}/content/x"))[0] == 404
    assert (await fetch(http, f"{cdn.url}/healthz"))[0] == 200


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


def test_download_url_shape(cdn_config, content_store):
    fingerprint = "ab" * 32
    now = int(time.time())
    url, expires_at = download_url(cdn_config, content_store, fingerprint, "a (1).txt", "Text/Plain; charset=utf-8", now=now)
    assert expires_at == now + cdn_config.download_url_ttl
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == cdn_config.cdn_url
    assert parts.path == f"/c/{fingerprint}/a%2520%25281%2529.txt"
    expected_sig = signature(cdn_config.cdn_secret, expires_at, f"/c/{fingerprint}/a%20%281%29.txt", "a_1.txt", "text/plain")
    ours, _, store_query = parts.query.partition("&X-Amz-")
    assert ours == f"exp={expires_at}&ascii_name=a_1.txt&type=text/plain&sig={expected_sig}"
    # The rest is the store's presigned GET of the content, for nginx to finish late downloads with.
    assert f"X-Amz-Expires={cdn_config.download_url_ttl + STORE_URL_GRACE}" in "X-Amz-" + store_query
    assert "X-Amz-Signature=" in store_query


def test_download_url_refuses_what_is_not_a_fingerprint(cdn_config, content_store):
    for bad in ("AB" * 32, "ab" * 31, "../" + "a" * 61, ""):
        with pytest.raises(ValueError):
            download_url(cdn_config, content_store, bad, "x", "")


def test_signature_depends_on_every_field():
    base = dict(secret="s", expires_at=1, path="/c/x/n", ascii_name="n", mime="a/b")
    reference = signature(**base)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", reference)
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
    "CDN_CACHE_DIR": "/var/cache/nginx/cdn",
    "CDN_CACHE_MAX_SIZE": "10g",
    "GATEWAY_S3_BUCKET": "dropbox-content",
    "GATEWAY_CDN_SECRET": "s3cr3t-Value_x",
}


def test_render_fills_our_settings_and_keeps_nginx_variables():
    rendered = render(SETTINGS)
    assert not re.search(r"\$\{[A-Z]", rendered)
    assert "server minio:9000;" in rendered
    assert '"s3cr3t-Value_x\\n$secure_link_expires' in rendered
    for variable in ("$slice_range", "$uri", "$arg_type", "$fingerprint", "$upstream_cache_status"):
        assert variable in rendered


def test_render_refuses_missing_or_unsafe_settings():
    with pytest.raises(ValueError, match="GATEWAY_CDN_SECRET"):
        render({k: v for k, v in SETTINGS.items() if k != "GATEWAY_CDN_SECRET"})
    for bad in ('a"b', "a$b", "a b", "a;b", "a\\b", "a\nb", "ab\n", "a{b}"):
        with pytest.raises(ValueError):
            render({**SETTINGS, "GATEWAY_CDN_SECRET": bad})


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
    settings = {**SETTINGS, "CDN_STORE_HOST": "127.0.0.1:9", "CDN_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cdn.conf").write_text(render(settings))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    proxy_temp_path {tmp_path}/proxy;\n    client_body_temp_path {tmp_path}/body;\n"
        f"    fastcgi_temp_path {tmp_path}/f;\n    uwsgi_temp_path {tmp_path}/u;\n    scgi_temp_path {tmp_path}/s;\n"
        f"    include {tmp_path}/cdn.conf;\n}}\n"
    )
    result = subprocess.run(
        ["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
