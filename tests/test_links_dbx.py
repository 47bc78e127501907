"""Shared links through the command-line client: `dbx link`, `dbx links`, `dbx unlink` against the real stack.

The link's visitor is a plain HTTP client with no account, as anyone given the URL would be.
"""
from __future__ import annotations

import os
from datetime import datetime

from tests.harness import Api, make_claim
from tests.test_client import CHUNK, logged_in, no_traceback, write_random

LINKS = "/dropbox/v1/links"


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


async def test_dbx_makes_lists_and_revokes_links_anyone_can_download_with(make_gateway, cdn, http, tmp_path):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    dbx = await logged_in(gateway.url, http, tmp_path / "alice")
    source = write_random(tmp_path / "report.bin", CHUNK + 1234)
    uploaded = await dbx("upload", str(source), "--json")
    assert uploaded.rc == 0, uploaded
    file_id = uploaded.json()["file_id"]
    data = source.read_bytes()

    week = await dbx("link", file_id, "--expires", "7d", "--json")
    assert week.rc == 0, week
    link = week.json()
    assert link["file_id"] == file_id and link["has_password"] is False
    assert seconds_between(link["created_at"], link["expires_at"]) == 7 * 24 * 3600
    # A visitor with the URL only: the page's form, followed as any HTTP client follows its 303.
    async with http.post(link["url"]) as download:
        assert download.status == 200 and str(download.url).startswith(cdn.url)
        assert await download.read() == data

    guarded = await dbx("link", file_id, "--password-stdin", stdin=b"open sesame\n")
    assert guarded.rc == 0, guarded
    url = guarded.stdout.strip()  # the URL alone on stdout, for scripts
    assert url.startswith(f"{gateway.url}/s/") and "\n" not in url
    assert "with a password" in guarded.stderr and "never expires" in guarded.stderr
    visitor = Api(http, gateway.url)
    token = url.rsplit("/", 1)[1]
    assert (await visitor.post(f"{LINKS}/{token}/download")).body["error"]["code"] == "password_required"
    right = await visitor.post(f"{LINKS}/{token}/download", json={"password": "open sesame"})
    assert right.status == 200
    async with http.get(right.body["download_url"]) as download:
        assert await download.read() == data

    listed = await dbx("links", file_id, "--json")
    assert listed.rc == 0, listed
    by_url = {entry["url"]: entry for entry in listed.json()["links"]}
    assert set(by_url) == {link["url"], url}
    assert by_url[link["url"]]["download_count"] == 1 and by_url[url]["has_password"] is True
    table = await dbx("links", file_id)
    assert table.rc == 0 and link["url"] in table.stdout and url in table.stdout, table

    revoked = await dbx("unlink", link["link_id"])
    assert revoked.rc == 0 and link["link_id"] in revoked.stdout, revoked
    async with http.get(link["url"]) as page:
        assert page.status == 404 and "revoked" in await page.text()
    assert [entry["url"] for entry in (await dbx("links", file_id, "--json")).json()["links"]] == [url]


async def test_dbx_link_refusals_have_their_exit_codes(make_gateway, cdn, http, tmp_path):
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    alice = await logged_in(gateway.url, http, tmp_path / "alice")
    bob = await logged_in(gateway.url, http, tmp_path / "bob")
    source = write_random(tmp_path / "a.bin", 1000)
    file_id = (await alice("upload", str(source), "--json")).json()["file_id"]
    link_id = (await alice("link", file_id, "--json")).json()["link_id"]

    for run in (await bob("link", file_id), await bob("links", file_id), await bob("unlink", link_id),
                await alice("unlink", "no-such-link")):
        assert run.rc == 6, run  # not found: a file or link of someone else's is as good as none
        no_traceback(run)
    pending = (await alice.api.post("/dropbox/v1/files", json=make_claim(os.urandom(2000), CHUNK))).body
    refused = await alice("link", pending["file_id"])
    assert refused.rc == 7 and "not uploaded" in refused.stderr, refused
    usage = await alice("link", file_id, "--expires", "0")
    assert usage.rc == 2, usage
    assert (await alice("links", file_id, "--json")).json()["links"][0]["link_id"] == link_id  # nothing else made
