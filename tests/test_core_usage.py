"""Each user's usage counters (revision 0013) against a full recount of their files, on both engines.

``users.used_bytes`` and ``users.file_count`` are changed in the transaction of every change that
adds, frees or deletes a file row (gateway/db/files.py). What must hold after any sequence of
changes, and after changes committing at once on two gateways: each counter equals the recount
(the sizes of the user's ``uploading`` and ``uploaded`` files, versions and the trash included; the
number of their file rows), and the quota check and ``GET /dropbox/v1/users/me`` answer the counter.
"""
from __future__ import annotations

import asyncio
import io
import os
import random

import pytest

from gateway.core.errors import FileNotFound, NameTaken, NodeNotFound, NotUploaded, QuotaExceeded
from gateway.core.uploads import Target
from gateway.db.nodes import FILE
from tests.core_fixtures import claim_for, send_chunks
from tests.test_core_tree import gateways  # noqa: F401 (a fixture: two cores on one database)
from tests.test_db import database_at, empty_database, upgrade_to_head  # noqa: F401 (empty_database: a fixture)

pytestmark = pytest.mark.every_engine  # concurrent transactions and RETURNING, on both engines

RECOUNT = (
    "SELECT users.id AS id, users.used_bytes AS used_bytes, users.file_count AS file_count,"
    " (SELECT coalesce(sum(file_size), 0) FROM files WHERE owner_id = users.id"
    "   AND status IN ('uploading', 'uploaded')) AS recounted_bytes,"
    " (SELECT count(*) FROM files WHERE owner_id = users.id) AS recounted_files"
    " FROM users ORDER BY users.id"
)


async def check_counters(core) -> None:
    """Every user's counters equal the recount of their files, and the API's usage is the counter."""
    for row in await core.db.fetchall(RECOUNT):
        assert (row["used_bytes"], row["file_count"]) == (row["recounted_bytes"], row["recounted_files"]), row
        assert (await core.limits.usage(row["id"]))["used_bytes"] == row["used_bytes"]


async def new_user(core, name: str) -> int:
    return (await core.accounts.sign_up(name, f"{name}@example.com", "correct horse battery"))["user_id"]


class Player:
    """One user's random changes: every way a file row is added, freed or deleted."""

    def __init__(self, core, store, clock, rng: random.Random, users: list[int]):
        self.core, self.store, self.clock, self.rng, self.users = core, store, clock, rng, users
        self.contents = [os.urandom(self.rng.randrange(1, 40)) for _ in range(6)]  # few: content is shared
        self.sent: dict[str, bytes] = {}  # the bytes of each upload started

    def data(self) -> bytes:
        return self.rng.choice(self.contents) if self.rng.random() < 0.5 else os.urandom(self.rng.randrange(0, 60))

    async def files_of(self, user: int, where: str = "1 = 1") -> list[dict]:
        query = ("SELECT files.id, files.status, nodes.replaced_by, nodes.deleted_at, nodes.trashed_with"
                 f" FROM files LEFT JOIN nodes ON nodes.id = files.id WHERE files.owner_id = :o AND {where}")
        return await self.core.db.fetchall(query, {"o": user})

    async def step(self) -> str:
        user = self.rng.choice(self.users)
        action = self.rng.choice(["inline", "inline", "start", "finish", "abandon", "delete", "copy", "share_copy",
                                  "trash", "restore", "purge", "restore_version", "retention"])
        name = self.rng.choice(["a.txt", "b.txt", "c.txt"])
        mode = self.rng.choice(["add", "overwrite"])
        core = self.core
        if action == "inline":
            data = self.data()
            await core.uploads.upload_inline(user, claim_for(data, name), io.BytesIO(data), Target(mode=mode))
        elif action == "start":
            data = os.urandom(self.rng.randrange(1, 60))
            file_id, _ = await core.uploads.start(user, claim_for(data, name), Target(mode=mode))
            self.sent[file_id] = data
        elif action in ("finish", "abandon"):
            uploading = await self.files_of(user, "files.status = 'uploading'")
            if uploading:
                file_id = self.rng.choice(uploading)["id"]
                if action == "abandon":
                    await core.uploads.abandon(file_id)
                else:  # the client sends its bytes, or other bytes the store refuses, or nothing
                    data = self.rng.choice([self.sent[file_id], os.urandom(1), b""])
                    if data:
                        await send_chunks(core, self.store, user, file_id, data)
                    await core.uploads.complete(file_id, strict=False)
        elif action == "delete":  # the v1 delete: an upload in progress or failed goes, a file to the trash
            rows = await self.files_of(user, "(nodes.deleted_at IS NULL)")
            if rows:
                await core.tree.delete_file(user, self.rng.choice(rows)["id"])
        elif action in ("copy", "share_copy"):
            owner = user if action == "copy" else self.rng.choice(self.users)
            live = await self.files_of(owner, "nodes.id IS NOT NULL AND nodes.deleted_at IS NULL AND nodes.replaced_by IS NULL")
            if live:
                file_id = self.rng.choice(live)["id"]
                if owner != user:
                    await core.sharing.share(owner, file_id, [f"user{self.users.index(user)}"])
                await core.tree.copy(user, file_id, parent_id=None, name=None, autorename=True)
        elif action in ("trash", "restore", "purge"):
            if action == "trash":
                live = await self.files_of(user, "nodes.id IS NOT NULL AND nodes.deleted_at IS NULL AND nodes.replaced_by IS NULL")
                if live:
                    await core.tree.trash(user, self.rng.choice(live)["id"], FILE)
            else:
                entries = await self.files_of(user, "nodes.trashed_with = nodes.id")
                if entries:
                    entry = self.rng.choice(entries)["id"]
                    await (core.tree.restore(user, entry) if action == "restore" else core.tree.delete_for_good(user, entry))
        elif action == "restore_version":
            versions = await self.files_of(user, "nodes.replaced_by IS NOT NULL AND nodes.deleted_at IS NULL")
            if versions:
                await core.tree.restore_version(user, self.rng.choice(versions)["id"])
        elif action == "retention":  # the background round: expired trash and versions deleted for good
            self.clock.advance(self.rng.choice([60, core.config.trash_retention // 2, core.config.trash_retention]))
            await core.housekeeping()
        return action


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_the_counters_equal_a_recount_after_random_changes(core, memory_store, clock, seed):
    """A seeded run of random changes by three users (shared content, versions, the trash, copies of
    shared files, uploads that fail or are deleted, retention rounds), the counters checked after each."""
    rng = random.Random(seed)
    users = [await new_user(core, f"user{n}") for n in range(3)]
    player = Player(core, memory_store, clock, rng, users)
    done = set()
    for _ in range(80):
        try:
            done.add(await player.step())
        except (NameTaken, NodeNotFound, FileNotFound, NotUploaded):
            pass
        await check_counters(core)
    assert {"inline", "start", "finish", "abandon", "trash", "purge", "copy"} <= done, done  # all exercised


async def test_the_counters_add_up_when_two_gateways_commit_at_once(gateways, memory_store):
    """Uploads, copies and deletions of one user committing at once on two gateways: no change is lost
    (``used_bytes = used_bytes + :delta`` under the row's lock), and the quota check reads the counter."""
    first, second = gateways
    alice = await new_user(first, "alice")

    async def inline(core, n: int) -> str:
        data = os.urandom(100 + n)
        return await core.uploads.upload_inline(alice, claim_for(data, f"f{n}.txt"), io.BytesIO(data))

    ids = await asyncio.gather(*(inline(first if n % 2 else second, n) for n in range(16)))
    await check_counters(first)
    assert (await first.limits.usage(alice))["used_bytes"] == sum(100 + n for n in range(16))
    await asyncio.gather(*(
        (first if n % 2 else second).tree.copy(alice, file_id, parent_id=None, name=None, autorename=True)
        for n, file_id in enumerate(ids)), *(inline(second if n % 2 else first, n) for n in range(16, 24)))
    await check_counters(first)
    for file_id in ids[:8]:
        await first.tree.delete_file(alice, file_id)
    entries = [row["id"] for row in await first.db.fetchall("SELECT id FROM nodes WHERE trashed_with = id")]
    await asyncio.gather(*((first if n % 2 else second).tree.delete_for_good(alice, entry)
                           for n, entry in enumerate(entries)))
    await check_counters(first)

    # The quota is checked against the counter: room for exactly what is left.
    used = (await first.limits.usage(alice))["used_bytes"]
    await first.db.execute("UPDATE users SET quota_bytes = :q WHERE id = :id", {"q": used + 150, "id": alice})
    answers = await asyncio.gather(*(inline(first if n % 2 else second, 50 + n) for n in range(4)),
                                   return_exceptions=True)
    assert sorted(type(answer).__name__ for answer in answers) == ["QuotaExceeded"] * 3 + ["str"], answers
    assert all(isinstance(answer, (str, QuotaExceeded)) for answer in answers)
    await check_counters(first)


async def test_the_migration_counts_what_each_user_has(empty_database):
    """Revision 0013 on a database at 0012: each user's counters are filled from their files (uploading and
    uploaded ones count their size, failed ones only as a file; a user without files has zeros)."""
    db = await database_at(empty_database, "0012")
    try:
        for name in ("ann", "bob", "cid"):
            await db.execute("INSERT INTO users (username, email, password_hash, created_at)"
                             " VALUES (:n, 'x@x.io', 'h', '2026-01-01T00:00:00.000000Z')", {"n": name})
        ann, bob, cid = [row["id"] for row in await db.fetchall("SELECT id FROM users ORDER BY id")]
        files = [("1", ann, 10, "uploaded"), ("2", ann, 20, "uploading"), ("3", ann, 40, "failed"),
                 ("4", bob, 7, "uploaded"), ("5", bob, 0, "uploaded")]
        for file_id, owner, size, status in files:
            await db.execute(
                "INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size, total_chunks,"
                " status, created_at, updated_at) VALUES (:id, :owner, 'f', :size, 'text/plain', :fp, 8, 1, :status,"
                " 't', 't')", {"id": file_id * 32, "owner": owner, "size": size, "fp": file_id * 64, "status": status})
        await upgrade_to_head(db)
        counted = await db.fetchall("SELECT id, used_bytes, file_count FROM users ORDER BY id")
        assert [(row["id"], row["used_bytes"], row["file_count"]) for row in counted] == [
            (ann, 30, 3), (bob, 7, 2), (cid, 0, 0)]
    finally:
        await db.close()
