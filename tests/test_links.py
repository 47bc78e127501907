"""Shared links end to end: the real store, the real nginx CDN tier, gateways on both database engines.

A link's visitor has no account: every call they make here goes without an
access token. Errors are checked for the contract's JSON shape; the page
``/s/{token}`` for what a person (or a plain HTTP client, no script) sees.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import fields
from datetime import datetime, UTC
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.config import Config
from storage.embedded import free_port
from tests.core_fixtures import FakeClock
from tests.harness import Api, make_claim, upload

CHUNK = 5 * 1024 * 1024
FILES = "/dropbox/v1/files"
LINKS = "/dropbox/v1/links"
LINK_FIELDS = {"link_id", "file_id", "url", "expires_at", "has_password", "created_at", "download_count"}


def assert_error(response, status: int, code: str) -> dict:
    """The contract's error body: exactly ``{"error": {"code", "message", ...}}``."""
    assert response.status == status, (response.status, response.body)
    assert isinstance(response.body, dict) and set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"], error
    return error


def token_of(link: dict) -> str:
    return link["url"].rsplit("/s/", 1)[1]


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, dict]:
    async with http.get(url) as response:
        return response.status, await response.read(), response.headers.copy()


async def stack(make_gateway, cdn, http, **overrides):
    """A gateway on the real store and nginx, its clock moved by the test; an anonymous client; a user."""
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, clock=FakeClock(datetime.now(UTC)), **overrides)
    api = Api(http, gateway.url)
    return gateway, api.as_user(None), await api.signup()


async def test_anyone_with_the_link_downloads_the_same_bytes_through_the_cdn(make_gateway, cdn, http):
    gateway, anonymous, owner = await stack(make_gateway, cdn, http)
    data = os.urandom(CHUNK + 4321)
    file = await upload(owner, data, CHUNK, file_name="holiday 名前.mov", file_type="video/quicktime")

    created = await owner.post(f"{FILES}/{file['file_id']}/links")  # no body: no expiry, no password
    assert created.status == 201, created.body
    link = created.body
    assert set(link) == LINK_FIELDS
    assert link["file_id"] == file["file_id"] and link["expires_at"] is None and link["has_password"] is False
    assert link["download_count"] == 0 and link["created_at"].endswith("Z")
    token = token_of(link)
    assert link["url"] == f"{gateway.url}/s/{token}" and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert token not in str(await gateway.core.db.fetchall("SELECT * FROM links"))  # only its hash is stored

    info = await anonymous.get(f"{LINKS}/{token}")
    assert info.status == 200
    assert info.body == {"file_name": "holiday 名前.mov", "file_size": len(data), "file_type": "video/quicktime",
                         "expires_at": None, "has_password": False}

    # The owner downloads first (a cache MISS); the link's URL names the same content: a HIT.
    status, _, headers = await fetch(http, file["download_url"])
    assert (status, cdn.cache_status(headers["X-Request-Id"])) == (200, "MISS")
    download = await anonymous.post(f"{LINKS}/{token}/download")
    assert download.status == 200 and set(download.body) == {"download_url", "expires_at"}
    assert download.body["download_url"].startswith(cdn.url)
    assert 0 < download.body["expires_at"] - time.time() <= gateway.config.download_url_ttl + 1
    status, body, headers = await fetch(http, download.body["download_url"])
    assert (status, cdn.cache_status(headers["X-Request-Id"])) == (200, "HIT")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert "filename*=UTF-8''holiday%20%E5%90%8D%E5%89%8D.mov" in headers["Content-Disposition"]

    assert (await anonymous.post(f"{LINKS}/{token}/download", json={})).status == 200
    listed = await owner.get(f"{FILES}/{file['file_id']}/links")
    assert listed.status == 200
    assert listed.body == {"links": [{**link, "download_count": 2}]}  # the same URL, counted twice


async def test_passwords_required_wrong_and_right(make_gateway, cdn, http):
    _, anonymous, owner = await stack(make_gateway, cdn, http)
    data = os.urandom(3000)
    file = await upload(owner, data, CHUNK)
    link = (await owner.post(f"{FILES}/{file['file_id']}/links", json={"password": "open sesame"})).body
    assert link["has_password"] is True
    token = token_of(link)
    assert (await anonymous.get(f"{LINKS}/{token}")).body["has_password"] is True

    required = await anonymous.post(f"{LINKS}/{token}/download")
    assert_error(required, 401, "password_required")
    assert "WWW-Authenticate" not in required.headers  # not an access token matter
    assert_error(await anonymous.post(f"{LINKS}/{token}/download", json={"password": None}), 401, "password_required")
    assert_error(await anonymous.post(f"{LINKS}/{token}/download", json={"password": "open sesam"}), 403, "wrong_password")
    error = assert_error(await anonymous.post(f"{LINKS}/{token}/download", json={"password": ""}), 400, "invalid_field")
    assert error["field"] == "password"
    right = await anonymous.post(f"{LINKS}/{token}/download", json={"password": "open sesame"})
    assert right.status == 200
    assert (await fetch(http, right.body["download_url"]))[:2] == (200, data)
    assert (await owner.get(f"{FILES}/{file['file_id']}/links")).body["links"][0]["download_count"] == 1


def gateway_process(config: Config, log_path: Path) -> subprocess.Popen:
    """The gateway as its own process (``python -m gateway``), configured as ``config`` through GATEWAY_*."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env.update({f"GATEWAY_{f.name.upper()}": str(getattr(config, f.name)) for f in fields(config)})
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(http: aiohttp.ClientSession, url: str, process: subprocess.Popen, log_path: Path) -> None:
    for _ in range(300):
        assert process.poll() is None, log_path.read_text()
        try:
            async with http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway process did not start: {log_path.read_text()}")


@pytest.fixture
async def second_process(make_gateway, cdn, http, tmp_path):
    """A started gateway app and a second gateway *process* on the same database, with a small throttle."""
    throttle = dict(link_password_attempts=3, link_password_window=120)
    first = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, **throttle)
    port = free_port()
    config = Config(**{**{f.name: getattr(first.config, f.name) for f in fields(first.config)},
                       "port": port, "public_url": f"http://127.0.0.1:{port}"})
    log_path = tmp_path / "second-gateway.log"
    process = gateway_process(config, log_path)
    try:
        await wait_ready(http, f"http://127.0.0.1:{port}", process, log_path)
        yield first, f"http://127.0.0.1:{port}", log_path
    finally:
        process.terminate()
        process.wait(15)


async def test_wrong_passwords_are_throttled_across_gateway_processes(second_process, http):
    first, second_url, log_path = second_process
    owner = await Api(http, first.url).signup()
    file = await upload(owner, os.urandom(100), CHUNK)
    token = token_of((await owner.post(f"{FILES}/{file['file_id']}/links", json={"password": "right one"})).body)
    on_first, on_second = Api(http, first.url), Api(http, second_url)
    path = f"{LINKS}/{token}/download"

    # Three wrong guesses, spread over both processes, use up the window's allowance...
    for api in (on_first, on_second, on_first):
        assert_error(await api.post(path, json={"password": "guess"}), 403, "wrong_password")
    # ...so the next attempt on either is refused, the right password too, until the window ends.
    for api, password in ((on_second, "guess"), (on_first, "right one"), (on_second, "right one")):
        refused = await api.post(path, json={"password": password})
        error = assert_error(refused, 429, "too_many_attempts")
        assert 1 <= int(refused.headers["Retry-After"]) <= 120 and error["retry_after"] == int(refused.headers["Retry-After"])
    # The page says so too, with the status and Retry-After.
    async with http.post(f"{second_url}/s/{token}", data={"password": "right one"}, allow_redirects=False) as page:
        assert page.status == 429 and 1 <= int(page.headers["Retry-After"]) <= 120
        assert "Too many wrong passwords" in await page.text()
    # No password at all is no attempt: it still says what is needed.
    assert_error(await on_second.post(path), 401, "password_required")

    # The window ends (moved back in the database, as time would): the right password works on both.
    await first.core.db.execute("UPDATE throttle SET window_ends_at = '2000-01-01T00:00:00.000000Z', blocked_until = NULL")
    assert (await on_second.post(path, json={"password": "right one"})).status == 200
    assert (await on_first.post(path, json={"password": "right one"})).status == 200

    # The second process logged every request, none with the token in it.
    log = log_path.read_text()
    assert '"path": "/s/[redacted]"' in log and f'"path": "{LINKS}/[redacted]/download"' in log
    assert token not in log


async def test_expired_revoked_and_deleted_links(make_gateway, cdn, http):
    gateway, anonymous, owner = await stack(make_gateway, cdn, http)
    file = await upload(owner, os.urandom(100), CHUNK)
    links_path = f"{FILES}/{file['file_id']}/links"
    short, revoked, of_deleted = [
        (await owner.post(links_path, json=body)).body for body in ({"expires_in": 1}, {}, {"expires_in": 3600})
    ]
    assert short["expires_at"] > short["created_at"]
    assert (await anonymous.get(f"{LINKS}/{token_of(short)}")).status == 200

    # Revoking: the file's owner only, at once, again is fine.
    stranger = await Api(http, owner.base_url).signup()
    assert_error(await stranger.delete(f"{LINKS}/{revoked['link_id']}"), 404, "link_not_found")
    assert_error(await anonymous.delete(f"{LINKS}/{revoked['link_id']}"), 401, "missing_token")
    assert (await owner.delete(f"{LINKS}/{revoked['link_id']}")).status == 204
    assert (await owner.delete(f"{LINKS}/{revoked['link_id']}")).status == 204
    assert_error(await owner.delete(f"{LINKS}/no-such-link"), 404, "link_not_found")
    token = token_of(revoked)
    assert_error(await anonymous.get(f"{LINKS}/{token}"), 404, "link_revoked")
    assert_error(await anonymous.post(f"{LINKS}/{token}/download"), 404, "link_revoked")
    listed = (await owner.get(links_path)).body["links"]
    assert {link["link_id"] for link in listed} == {short["link_id"], of_deleted["link_id"]}

    gateway.clock.advance(1.2)  # the one-second link has expired
    token = token_of(short)
    error = assert_error(await anonymous.get(f"{LINKS}/{token}"), 410, "link_expired")
    assert error["expired_at"] == short["expires_at"]
    assert_error(await anonymous.post(f"{LINKS}/{token}/download"), 410, "link_expired")

    # Deleting the file revokes its links, at once.
    token = token_of(of_deleted)
    assert (await anonymous.post(f"{LINKS}/{token}/download")).status == 200
    assert (await owner.delete(f"{FILES}/{file['file_id']}")).status == 204
    assert_error(await anonymous.get(f"{LINKS}/{token}"), 404, "link_not_found")
    assert_error(await anonymous.post(f"{LINKS}/{token}/download"), 404, "link_not_found")
    assert_error(await owner.delete(f"{LINKS}/{of_deleted['link_id']}"), 404, "link_not_found")
    for unknown in ("A" * 43, "short", "x" * 300):
        assert_error(await anonymous.get(f"{LINKS}/{unknown}"), 404, "link_not_found")


async def test_only_the_owner_makes_and_lists_links_of_an_uploaded_file(make_gateway, cdn, http):
    _, anonymous, owner = await stack(make_gateway, cdn, http)
    friend, stranger = await Api(http, owner.base_url).signup(), await Api(http, owner.base_url).signup()
    file = await upload(owner, os.urandom(100), CHUNK)
    await owner.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": [friend.username]})
    path = f"{FILES}/{file['file_id']}/links"
    for who in (friend, stranger):
        assert_error(await who.post(path), 404, "not_found")
        assert_error(await who.get(path), 404, "not_found")
    assert_error(await anonymous.post(path), 401, "missing_token")
    assert_error(await anonymous.get(path), 401, "missing_token")
    assert_error(await owner.post(f"{FILES}/{'0' * 32}/links"), 404, "not_found")

    pending = (await owner.post(FILES, json=make_claim(os.urandom(2000), CHUNK, file_name="pending.bin"))).body
    assert_error(await owner.post(f"{FILES}/{pending['file_id']}/links"), 409, "not_uploaded")

    for body, field in (({"expires_in": 0}, "expires_in"), ({"expires_in": "7d"}, "expires_in"),
                        ({"expires_in": True}, "expires_in"), ({"expires_in": 10**12}, "expires_in"),
                        ({"password": ""}, "password"), ({"password": 1234}, "password")):
        error = assert_error(await owner.post(path, json=body), 400, "invalid_field")
        assert error["field"] == field
    assert_error(await owner.post(path, data=b"not json", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert (await owner.get(path)).body == {"links": []}  # nothing was made by any of that


async def test_the_page_downloads_without_script(make_gateway, cdn, http):
    gateway, _, owner = await stack(make_gateway, cdn, http)
    data = os.urandom(2500)
    name = '<script>alert("x")</script> & <b>report</b>.txt'
    # A name the tree refuses since v1.2 (it holds `/`), as a file from v1.1 may still have it.
    file = await upload(owner, data, CHUNK, file_name="report.txt", file_type="text/plain")
    await gateway.core.db.execute("UPDATE nodes SET name = :name WHERE id = :id", {"name": name, "id": file["file_id"]})
    open_link = (await owner.post(f"{FILES}/{file['file_id']}/links")).body
    guarded = (await owner.post(f"{FILES}/{file['file_id']}/links", json={"password": "pa ss"})).body

    async with http.get(open_link["url"]) as page:
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        headers = page.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert f"form-action 'self' {cdn.url}" in csp and "script-src" not in csp
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;report&lt;/b&gt;.txt" in html
    assert "2500 bytes" in html.replace(",", "") and 'type="password"' not in html
    token = token_of(open_link)
    assert f'<form method="post" action="/s/{token}"' in html
    async with http.get(f"{gateway.url}/static/style.css") as css:  # the web app's, whose classes the page uses
        assert css.status == 200 and css.content_type == "text/css"

    # The form's POST, followed as any HTTP client follows a 303: the file's bytes from the CDN tier.
    async with http.post(open_link["url"], allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"].startswith(cdn.url)
    async with http.post(open_link["url"]) as downloaded:
        assert downloaded.status == 200 and str(downloaded.url).startswith(cdn.url)
        assert await downloaded.read() == data

    # A link with a password: the field, then a message for a wrong one, the file for the right one.
    async with http.get(guarded["url"]) as page:
        assert page.status == 200 and 'type="password"' in await page.text()
    for form, status, words in (({}, 401, "Enter the password"), ({"password": ""}, 401, "Enter the password"),
                                ({"password": "wrong"}, 403, "not right")):
        async with http.post(guarded["url"], data=form, allow_redirects=False) as page:
            text = await page.text()
            assert page.status == status and words in text and 'type="password"' in text
            assert page.headers["Content-Security-Policy"] == csp and "<script" not in text
    async with http.post(guarded["url"], data={"password": "pa ss"}) as downloaded:
        assert downloaded.status == 200 and await downloaded.read() == data

    # Revoked, expired and unknown links: pages with words that say which, and the contract's statuses.
    assert (await owner.delete(f"{LINKS}/{open_link['link_id']}")).status == 204
    short = (await owner.post(f"{FILES}/{file['file_id']}/links", json={"expires_in": 1})).body
    gateway.clock.advance(1.2)  # the one-second link has expired
    for url, method, status, words in (
        (open_link["url"], "GET", 404, "revoked"), (open_link["url"], "POST", 404, "revoked"),
        (short["url"], "GET", 410, "expired"), (short["url"], "POST", 410, "expired"),
        (f"{gateway.url}/s/{'B' * 43}", "GET", 404, "does not work"),
    ):
        async with http.request(method, url, allow_redirects=False) as page:
            text = await page.text()
            assert (page.status, page.content_type) == (status, "text/html") and words in text, (url, method)
            assert "Content-Security-Policy" in page.headers and "<script" not in text
    listed = (await owner.get(f"{FILES}/{file['file_id']}/links")).body["links"]
    assert {link["link_id"]: link["download_count"] for link in listed}[guarded["link_id"]] == 1
    assert urlsplit(open_link["url"]).netloc == urlsplit(gateway.url).netloc
