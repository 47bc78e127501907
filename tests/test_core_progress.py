"""What upload progress costs the store: part events read one part list per burst; the reconciler's rounds are bounded.

The core on the in-memory store, counting its ListParts calls, with a clock the
test moves. Nothing here depends on a process's memory: the marks and the
reconciler's last looks are in the database.
"""
from __future__ import annotations

import os

import pytest

from gateway.cache import make_cache
from gateway.core import build_core
from gateway.core.content import content_key
from gateway.db import files as files_db
from gateway.db import uploads as uploads_db
from storage import StoredPart
from storage.events import StoreEvent
from storage.memory import InMemoryObjectStore
from tests.core_fixtures import CHUNK, claim_for, core_config, new_user, send_chunks

pytestmark = pytest.mark.every_engine  # the core's transactions and queries, on both engines


class CountingStore(InMemoryObjectStore):
    """The in-memory store, counting the part lists it is asked for."""

    def __init__(self, bucket: str):
        super().__init__(bucket=bucket)
        self.list_parts_calls = 0

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        self.list_parts_calls += 1
        return await super().list_parts(key, upload_id)


@pytest.fixture
def memory_store() -> CountingStore:
    return CountingStore(bucket="memory")


@pytest.fixture
async def make_core(core_database, memory_store, clock):
    """Cores with settings of the test's choosing, on one database (as several gateways would be)."""
    db = core_database
    caches = []

    def make(**overrides):
        config = core_config(**overrides)
        caches.append(make_cache(config))
        return build_core(config, db, memory_store, caches[-1], clock)

    yield make
    for cache in caches:
        await cache.close()


def part_event(core, upload_id: str, number: int) -> StoreEvent:
    return StoreEvent("part_uploaded", core.config.s3_bucket, upload_id=upload_id, part_number=number, size=CHUNK)


async def test_a_burst_of_part_events_costs_one_part_list_whichever_gateway_reads_it(make_core, memory_store, clock):
    first, second = make_core(part_events_delay=1), make_core(part_events_delay=1)
    alice = await new_user(first, "alice")
    data = os.urandom(3 * CHUNK + 5)
    file_id, _ = await first.uploads.start(alice, claim_for(data))
    upload_id = (await uploads_db.get_upload(first.db, file_id))["upload_id"]
    await send_chunks(first, memory_store, alice, file_id, data, [0, 1, 2])
    outcomes = [await first.events.handle(part_event(first, upload_id, n)) for n in (1, 2, 3, 2, 1)]
    assert outcomes == ["part_list_due"] + ["part_list_already_due"] * 4
    # The events alone changed nothing, and nothing is read before the delay.
    assert [c["status"] for c in await files_db.get_chunks(first.db, file_id)] == ["pending"] * 4
    assert await second.refresh_progress_once() == {"read": 0, "completed": 0, "errors": 0}

    clock.advance(1)
    calls = memory_store.list_parts_calls
    assert await second.refresh_progress_once() == {"read": 1, "completed": 0, "errors": 0}
    assert await first.refresh_progress_once() == {"read": 0, "completed": 0, "errors": 0}  # the mark is taken
    assert memory_store.list_parts_calls == calls + 1
    assert [c["status"] for c in await files_db.get_chunks(first.db, file_id)] == ["uploaded"] * 3 + ["pending"]

    # The last part and its event: the next read finds every chunk and completes the upload.
    await send_chunks(first, memory_store, alice, file_id, data, [3])
    assert await second.events.handle(part_event(second, upload_id, 4)) == "part_list_due"
    clock.advance(1)
    assert (await first.refresh_progress_once())["completed"] == 1
    assert (await files_db.get_file(first.db, file_id))["status"] == "uploaded"


async def test_a_part_event_for_parts_the_store_does_not_hold_changes_nothing(make_core, memory_store, clock):
    core = make_core(part_events_delay=0)
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    data = os.urandom(CHUNK + 1)
    theirs, _ = await core.uploads.start(alice, claim_for(data, "a.bin"))
    await send_chunks(core, memory_store, alice, theirs, data)
    await core.uploads.finish(alice, theirs)

    mine, _ = await core.uploads.start(bob, claim_for(data, "b.bin"))
    upload_id = (await uploads_db.get_upload(core.db, mine))["upload_id"]
    for number in (1, 2):
        await core.events.handle(part_event(core, upload_id, number))
    assert (await core.refresh_progress_once())["read"] == 1
    assert await files_db.unverified_chunks(core.db, mine) == 2
    # Even chunks marked without the store's word (as the old event handling did) settle nothing:
    # only chunks the store listed in this upload, with their ETags, count.
    await core.db.execute("UPDATE chunks SET status = 'uploaded' WHERE file_id = :id", {"id": mine})
    assert await core.uploads.abandon(mine) is True
    assert (await files_db.get_file(core.db, mine))["status"] == "failed"


async def test_an_object_written_whole_settles_no_upload_and_costs_no_statement(make_core, memory_store):
    """The event of an object the store says was written whole (a PutObject: an inline upload's, one a small
    file) is no upload's completion: answered without a look in the database. A completion's event, or one
    that does not say, settles the uploads of the content as before."""
    core = make_core()
    alice = await new_user(core, "alice")
    data = os.urandom(CHUNK + 1)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    await send_chunks(core, memory_store, alice, file_id, data)  # every part in the store, nobody completed it
    key = content_key(claim_for(data).fingerprint)

    def created(completion: bool | None) -> StoreEvent:
        return StoreEvent("object_created", core.config.s3_bucket, key=key, size=len(data), completion=completion)

    statements = core.db.work.statements
    assert await core.events.handle(created(False)) == "written_whole"
    assert core.db.work.statements == statements
    assert (await files_db.get_file(core.db, file_id))["status"] == "uploading"
    assert await core.events.handle(created(True)) == "uploads:uploaded"  # a look, which finds every part
    assert (await files_db.get_file(core.db, file_id))["status"] == "uploaded"
    assert await core.events.handle(created(None)) == "nothing_uploading"  # a look too
    assert core.db.work.statements > statements


async def test_the_reconciler_looks_at_a_batch_per_round_oldest_first_and_not_every_round(make_core, memory_store, clock):
    core = make_core(reconcile_batch=2, reconcile_grace=30, reconcile_recheck=600, abandon_after=24 * 3600)
    alice = await new_user(core, "alice")
    ids = []
    for n in range(5):
        file_id, _ = await core.uploads.start(alice, claim_for(os.urandom(CHUNK + n), f"{n}.bin"))
        ids.append(file_id)
        clock.advance(1)
    clock.advance(30)

    def checked_in(round_calls: int) -> int:
        return memory_store.list_parts_calls - round_calls

    seen = []
    for _ in range(4):
        before = memory_store.list_parts_calls
        counts = await core.reconcile_once()
        assert counts["checked"] == checked_in(before) <= 2  # one part list per upload, a batch per round
        seen.append(counts["checked"])
    assert seen == [2, 2, 1, 0]  # every upload once, then none: nothing changed since
    checked = await core.db.fetchall("SELECT file_id AS id, checked_at FROM uploads JOIN files ON files.id = file_id ORDER BY checked_at, seq")
    assert [row["id"] for row in checked] == ids  # the oldest first

    # New activity makes an upload due again at once (after the grace), the others after the recheck time.
    data = os.urandom(CHUNK + 1)
    active, _ = await core.uploads.start(alice, claim_for(data, "active.bin"))
    clock.advance(31)
    assert (await core.reconcile_once())["checked"] == 1
    await send_chunks(core, memory_store, alice, active, data, [0])
    clock.advance(1)
    await core.uploads.refresh_from_store(active)  # a look that found progress: activity
    clock.advance(31)
    assert (await core.reconcile_once())["checked"] == 1
    clock.advance(600)
    assert sum([(await core.reconcile_once())["checked"] for _ in range(3)]) == 6
    assert all(row["status"] == "uploading" for row in await core.db.fetchall("SELECT status FROM files"))
