"""Sharing and deleting in the core, on the in-memory store: who may see what, and when content goes."""
from __future__ import annotations

import os

import pytest

from gateway.core.errors import CannotShareWithYourself, FileNotFound, UnknownUsers
from gateway.core.permissions import cache_key
from gateway.db import uploads as uploads_db
from protocol.fingerprints import EMPTY_FINGERPRINT
from storage import UploadNotFound
from tests.core_fixtures import CHUNK, claim_for, new_user, send_chunks, stored, uploaded

pytestmark = pytest.mark.every_engine  # the core's transactions and queries, on both engines


async def test_sharing_is_all_or_nothing_by_name_whatever_its_case(core, memory_store):
    alice, bob, carol = [await new_user(core, name) for name in ("alice", "Bob", "carol")]
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))

    with pytest.raises(UnknownUsers) as unknown:
        await core.sharing.share(alice, file_id, ["bob", "nobody", "carol", "ghost"])
    assert unknown.value.names == ["nobody", "ghost"]
    with pytest.raises(FileNotFound):
        await core.files.readable(bob, file_id)  # nobody got it
    with pytest.raises(CannotShareWithYourself):
        await core.sharing.share(alice, file_id, ["ALICE"])
    with pytest.raises(FileNotFound):
        await core.sharing.share(bob, file_id, ["carol"])  # only the owner shares

    assert await core.sharing.share(alice, file_id, ["BOB"]) == ["Bob"]
    assert await core.sharing.share(alice, file_id, ["bob", "carol"]) == ["Bob", "carol"]  # idempotent, adds carol
    row, _ = await core.files.readable(bob, file_id)
    assert row["owner_name"] == "alice"
    page = await core.files.shared_with_me(carol, 10)
    assert [r["id"] for r in page.rows] == [file_id] and not page.more


async def test_unsharing_takes_effect_at_once_through_the_cache(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    await core.sharing.share(alice, file_id, ["bob"])
    await core.files.readable(bob, file_id)
    assert (await core.permissions.cache.get(cache_key(file_id)))["readers"] == [bob]  # cached, as JSON values
    await core.sharing.unshare(alice, file_id, "BOB")
    with pytest.raises(FileNotFound):
        await core.files.readable(bob, file_id)
    await core.sharing.unshare(alice, file_id, "bob")  # again: nothing to do, no error
    with pytest.raises(UnknownUsers):
        await core.sharing.unshare(alice, file_id, "nobody")


async def test_deleting_is_for_the_owner_and_content_goes_with_its_last_file_deleted_for_good(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    data = os.urandom(CHUNK + 3)
    mine = await uploaded(core, memory_store, alice, data, "a.bin")
    copy = await uploaded(core, memory_store, alice, data, "b.bin")  # deduplicated
    theirs = await uploaded(core, memory_store, bob, data, "c.bin")  # uploaded again by bob
    await core.sharing.share(alice, mine, ["bob"])
    fingerprint = claim_for(data).fingerprint

    with pytest.raises(FileNotFound):
        await core.tree.delete_file(bob, mine)  # shared with bob, still not his to delete
    await core.tree.delete_file(alice, mine)  # to the trash
    with pytest.raises(FileNotFound):
        await core.files.readable(bob, mine)
    with pytest.raises(FileNotFound):
        await core.tree.delete_file(alice, mine)
    await core.tree.delete_file(alice, copy)
    await core.tree.delete_file(bob, theirs)
    assert stored(memory_store, fingerprint) == data  # the trash keeps it
    await core.tree.delete_for_good(alice, mine)
    await core.tree.delete_for_good(alice, copy)
    assert stored(memory_store, fingerprint) == data  # bob's trashed file still refers to it
    await core.tree.delete_for_good(bob, theirs)
    assert stored(memory_store, fingerprint) is None


async def test_deleting_an_upload_aborts_its_own_multipart_upload_only(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    data = os.urandom(CHUNK + 1)
    claim = claim_for(data)
    mine, _ = await core.uploads.start(alice, claim)
    theirs, _ = await core.uploads.start(bob, claim)
    mine_upload = (await uploads_db.get_upload(core.db, mine))["upload_id"]
    await send_chunks(core, memory_store, alice, mine, data, [0])
    await core.deletion.delete(alice, mine)
    with pytest.raises(UploadNotFound):
        await memory_store.list_parts(f"content/{claim.fingerprint}", mine_upload)
    await send_chunks(core, memory_store, bob, theirs, data)
    await core.uploads.finish(bob, theirs)
    assert stored(memory_store, claim.fingerprint) == data


async def test_the_empty_files_content_is_never_removed(core, memory_store):
    alice = await new_user(core, "alice")
    file_id, _ = await core.uploads.start(alice, claim_for(b"", "empty"))
    await core.tree.delete_file(alice, file_id)
    await core.tree.delete_for_good(alice, file_id)
    assert stored(memory_store, EMPTY_FINGERPRINT) == b""
    assert await core.deletion.drop_unreferenced_content(EMPTY_FINGERPRINT) is False
