"""Shared links and throttling in the core, on the in-memory store, with a clock the tests move."""
from __future__ import annotations

import asyncio
import hashlib
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.core.errors import (
    FileNotFound, LinkExpired, LinkNotFound, LinkRevoked, NotUploaded, PasswordRequired, TooManyAttempts,
    WrongLinkPassword,
)
from gateway.core.links import Links, token_hash
from gateway.core.throttle import Limit
from tests.core_fixtures import claim_for, core_config, new_user, uploaded

pytestmark = pytest.mark.every_engine  # the core's transactions and queries, on both engines


def token_of(link: dict) -> str:
    return link["token"]


async def test_only_the_owner_makes_lists_and_revokes_links_of_an_uploaded_file(core, memory_store, clock):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    await core.sharing.share(alice, file_id, ["bob"])
    with pytest.raises(FileNotFound):
        await core.links.create(bob, file_id, None, None)  # shared with bob, still not his to link
    with pytest.raises(FileNotFound):
        await core.links.of_file(bob, file_id)
    pending, _ = await core.uploads.start(alice, claim_for(os.urandom(200), "pending.bin"))
    with pytest.raises(NotUploaded):
        await core.links.create(alice, pending, None, None)

    first = await core.links.create(alice, file_id, None, None)
    clock.advance(1)
    second = await core.links.create(alice, file_id, 3600, "open sesame")
    assert [link["id"] for link in await core.links.of_file(alice, file_id)] == [second["id"], first["id"]]
    assert second["expires_at"] > second["created_at"] and first["expires_at"] is None

    with pytest.raises(LinkNotFound):
        await core.links.revoke(bob, first["id"])
    await core.links.revoke(alice, first["id"])
    await core.links.revoke(alice, first["id"])  # again: nothing to do, no error
    assert [link["id"] for link in await core.links.of_file(alice, file_id)] == [second["id"]]
    with pytest.raises(LinkRevoked):
        await core.links.open(token_of(first))
    with pytest.raises(LinkNotFound):
        await core.links.revoke(alice, "no-such-link")


async def test_the_database_holds_no_token_only_its_hash(core, memory_store):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    link = await core.links.create(alice, file_id, None, "pw")
    token = token_of(link)
    assert len(token) == 43  # 256 bits, base64url
    rows = await core.db.fetchall("SELECT * FROM links")
    assert rows and all(token not in str(value) for row in rows for value in row.values())
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert rows[0]["password_hash"].startswith("scrypt$")
    # The listing computes the same token again: its URL works.
    listed = (await core.links.of_file(alice, file_id))[0]
    assert token_of(listed) == token
    assert (await core.links.open(token))["file_id"] == file_id


async def test_a_new_key_ends_every_link(core, memory_store, clock):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    token = token_of(await core.links.create(alice, file_id, None, None))
    rotated = Links(core_config(jwt_secret="another-jwt-secret-" + "y" * 32), core.db, core.permissions, clock, core.thumbnails)
    with pytest.raises(LinkNotFound):
        await rotated.open(token)
    assert token_of((await rotated.of_file(alice, file_id))[0]) != token


async def test_unknown_expired_and_deleted(core, memory_store, clock):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    for token in ("", "x", "A" * 43, "../../etc/passwd", "A" * 4000):
        with pytest.raises(LinkNotFound):
            await core.links.open(token)
    token = token_of(await core.links.create(alice, file_id, 60, None))
    await core.links.open(token)
    clock.advance(59)
    await core.links.download(token, None)
    clock.advance(1)
    with pytest.raises(LinkExpired) as expired:
        await core.links.download(token, None)
    assert expired.value.expired_at == (await core.links.of_file(alice, file_id))[0]["expires_at"]

    forever = token_of(await core.links.create(alice, file_id, None, None))
    await core.tree.delete_file(alice, file_id)  # to the trash: its links end
    with pytest.raises(LinkNotFound):
        await core.links.open(forever)
    assert await core.db.fetchval("SELECT count(*) FROM links") == 0


async def test_download_gives_the_files_cdn_url_and_counts(core, memory_store):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100), "report <b>.pdf")
    token = token_of(await core.links.create(alice, file_id, None, None))
    url, expires_at = await core.links.download(token, None)
    owners = await core.files.content_url(alice, file_id)
    # The same content path and name as the owner's URL: one cached copy at the CDN for both.
    assert urlsplit(url).path == urlsplit(owners).path
    assert parse_qs(urlsplit(url).query)["exp"] == [str(expires_at)]
    await asyncio.gather(*(core.links.download(token, None) for _ in range(5)))
    assert (await core.links.of_file(alice, file_id))[0]["download_count"] == 6


async def test_passwords_and_their_throttle(core, memory_store, clock):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    token = token_of(await core.links.create(alice, file_id, None, "correct horse"))
    limit = core.links.guesses.limit
    assert limit == Limit(5, 900)

    with pytest.raises(PasswordRequired):
        await core.links.download(token, None)
    for _ in range(3):  # the right password, many times: successes never count
        await core.links.download(token, "correct horse")
    for _ in range(limit.failures - 1):
        with pytest.raises(WrongLinkPassword):
            await core.links.download(token, "wrong")
    await core.links.download(token, "correct horse")  # a visitor's success does not wipe out a guesser's count
    with pytest.raises(WrongLinkPassword):
        await core.links.download(token, "wrong")
    clock.advance(100)
    with pytest.raises(TooManyAttempts) as throttled:
        await core.links.download(token, "correct horse")  # refused too: the answer tells a guesser nothing
    assert throttled.value.retry_after == limit.window
    with pytest.raises(PasswordRequired):
        await core.links.download(token, None)  # no password is no attempt
    clock.advance(limit.window - 1)
    with pytest.raises(TooManyAttempts):
        await core.links.download(token, "correct horse")
    clock.advance(1)
    await core.links.download(token, "correct horse")  # the block is over
    assert (await core.links.of_file(alice, file_id))[0]["download_count"] == 5


async def test_concurrent_guesses_meet_one_count(core, memory_store):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    token = token_of(await core.links.create(alice, file_id, None, "correct horse"))
    outcomes = await asyncio.gather(*(core.links.download(token, f"guess {i}") for i in range(12)),
                                    return_exceptions=True)
    kinds = sorted(type(outcome).__name__ for outcome in outcomes)
    assert kinds == ["TooManyAttempts"] * 7 + ["WrongLinkPassword"] * 5
