"""The upload state machine on the in-memory store: start, resume, complete, fail, abandon, dedup."""
from __future__ import annotations

import asyncio
import io
import os

import pytest

from gateway.core.clock import stamp_now
from gateway.core.content import content_key
from gateway.core.uploads import TOUCH_AFTER
from gateway.core.errors import ChunksMissing, FileNotFound, NotUploading, QuotaExceeded, UploadGone, VerificationFailed
from gateway.db import in_background
from gateway.db import uploads as uploads_db
from gateway.db import users as users_db
from protocol.fingerprints import EMPTY_FINGERPRINT
from storage import StoredPart, UploadNotFound
from storage.memory import InMemoryObjectStore, sha256_b64
from tests.core_fixtures import CHUNK, chunks_of, claim_for, new_user, send_chunks, stored

pytestmark = pytest.mark.every_engine  # the core's transactions and queries, on both engines


async def test_an_upload_turns_uploaded_once_the_store_holds_every_verified_chunk(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(2 * CHUNK + 10)
    file_id, created = await core.uploads.start(alice, claim_for(data))
    assert created
    row, chunks = await core.files.readable(alice, file_id)
    assert row["status"] == "uploading" and [c["status"] for c in chunks] == ["pending"] * 3
    assert await send_chunks(core, memory_store, alice, file_id, data) == [200, 200, 200]
    await core.uploads.finish(alice, file_id)
    row, chunks = await core.files.readable(alice, file_id)
    assert row["status"] == "uploaded" and not await uploads_db.exists_upload(core.db, row["id"]) and row["completed_at"]
    assert [c["status"] for c in chunks] == ["uploaded"] * 3
    assert stored(memory_store, row["fingerprint"]) == data
    assert core.files.download(row) is not None


async def test_completing_with_chunks_missing_names_them_and_changes_nothing(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(3 * CHUNK)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    assert await send_chunks(core, memory_store, alice, file_id, data, [1]) == [200]
    with pytest.raises(ChunksMissing) as missing:
        await core.uploads.finish(alice, file_id)
    assert missing.value.missing == [0, 2]
    assert await core.uploads.complete(file_id, strict=False) == "uploading"
    row, chunks = await core.files.readable(alice, file_id)
    assert row["status"] == "uploading" and [c["status"] for c in chunks] == ["pending", "uploaded", "pending"]


async def test_starting_again_resumes_with_what_the_store_holds(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(2 * CHUNK)
    claim = claim_for(data)
    file_id, _ = await core.uploads.start(alice, claim)
    # The parts arrive but nothing tells the gateway (no events): resuming asks the store.
    assert await send_chunks(core, memory_store, alice, file_id, data, [0]) == [200]
    again, created = await core.uploads.start(alice, claim)
    assert (again, created) == (file_id, False)
    _, chunks = await core.files.readable(alice, file_id)
    assert [c["status"] for c in chunks] == ["uploaded", "pending"]
    assert [i for i, _ in await core.uploads.upload_urls(alice, file_id, None)] == [1]


async def test_an_upload_the_store_forgot_starts_over_on_resume_and_is_gone_on_complete(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(CHUNK + 1)
    claim = claim_for(data)
    file_id, _ = await core.uploads.start(alice, claim)
    await send_chunks(core, memory_store, alice, file_id, data, [0])
    first = (await uploads_db.get_upload(core.db, file_id))["upload_id"]
    await memory_store.abort_multipart(content_key(claim.fingerprint), first)  # a lifecycle rule, say
    with pytest.raises(UploadGone):
        await core.uploads.finish(alice, file_id)
    await core.uploads.start(alice, claim)  # resume: a new multipart upload, every chunk pending again
    _, chunks = await core.files.readable(alice, file_id)
    assert (await uploads_db.get_upload(core.db, file_id))["upload_id"] not in (None, first)
    assert {c["status"] for c in chunks} == {"pending"}
    assert await send_chunks(core, memory_store, alice, file_id, data) == [200, 200]
    await core.uploads.finish(alice, file_id)
    assert stored(memory_store, claim.fingerprint) == data


class StoreWithoutPartChecksums(InMemoryObjectStore):
    """Lists parts without their checksums, as SeaweedFS does."""

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        return [StoredPart(p.part_number, p.size, p.etag, None) for p in await super().list_parts(key, upload_id)]


class TestAStoreThatListsNoPartChecksums:
    """Part sizes are all the gateway can check before completion; the store's final check catches the rest."""

    @pytest.fixture
    def memory_store(self) -> InMemoryObjectStore:
        return StoreWithoutPartChecksums(bucket="memory")

    async def test_bytes_that_do_not_match_the_claim_fail_the_file_and_leave_nothing(self, core, memory_store):
        alice = await new_user(core, "alice")
        data = os.urandom(CHUNK + 10)
        claim = claim_for(data)
        file_id, _ = await core.uploads.start(alice, claim)
        await send_chunks(core, memory_store, alice, file_id, data, [0])
        upload_id = (await uploads_db.get_upload(core.db, file_id))["upload_id"]
        other = os.urandom(10)  # the right size, other bytes: a part written with its own checksum, not the claim's
        await memory_store.upload_part(content_key(claim.fingerprint), upload_id, 2, other, sha256_b64(other))
        with pytest.raises(VerificationFailed) as failed:
            await core.uploads.finish(alice, file_id)
        assert "do not match" in failed.value.reason
        row, _ = await core.files.readable(alice, file_id)
        assert row["status"] == "failed" and not await uploads_db.exists_upload(core.db, row["id"]) and core.files.download(row) is None
        assert stored(memory_store, claim.fingerprint) is None
        with pytest.raises(UploadNotFound):
            await memory_store.list_parts(content_key(claim.fingerprint), upload_id)
        with pytest.raises(NotUploading):
            await core.uploads.upload_urls(alice, file_id, None)


async def test_an_object_whose_checksum_is_not_the_fingerprint_fails_the_file(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(100)
    good = claim_for(data)
    lying = type(good)(good.file_name, good.file_size, good.file_type, "ab" * 32, good.chunk_size, good.chunks)
    file_id, _ = await core.uploads.start(alice, lying)  # the HTTP layer refuses this; the core must not trust it either
    await send_chunks(core, memory_store, alice, file_id, data)
    with pytest.raises(VerificationFailed):
        await core.uploads.finish(alice, file_id)
    assert (await core.files.readable(alice, file_id))[0]["status"] == "failed"
    assert stored(memory_store, lying.fingerprint) is None


async def test_your_own_content_again_moves_no_bytes_but_someone_elses_must_be_uploaded(core, memory_store):
    alice, mallory = await new_user(core, "alice"), await new_user(core, "mallory")
    data = os.urandom(CHUNK + 5)
    first, _ = await core.uploads.start(alice, claim_for(data, "a.bin"))
    await send_chunks(core, memory_store, alice, first, data)
    await core.uploads.finish(alice, first)
    open_uploads = len(memory_store._uploads)

    copy, created = await core.uploads.start(alice, claim_for(data, "copy.bin"))
    row, _ = await core.files.readable(alice, copy)
    assert created and copy != first and row["status"] == "uploaded" and not await uploads_db.exists_upload(core.db, row["id"])
    assert len(memory_store._uploads) == open_uploads  # deduplicated: no multipart upload

    # Dropship: knowing the fingerprint is not having the bytes.
    theirs, _ = await core.uploads.start(mallory, claim_for(data, "a.bin"))
    row, _ = await core.files.readable(mallory, theirs)
    assert row["status"] == "uploading"
    with pytest.raises(ChunksMissing):
        await core.uploads.finish(mallory, theirs)
    with pytest.raises(FileNotFound):
        await core.files.readable(mallory, first)


async def test_an_empty_file_is_uploaded_at_once(core, memory_store):
    alice = await new_user(core, "alice")
    file_id, created = await core.uploads.start(alice, claim_for(b"", "empty.txt"))
    row, chunks = await core.files.readable(alice, file_id)
    assert created and row["status"] == "uploaded" and chunks == []
    assert row["fingerprint"] == EMPTY_FINGERPRINT and stored(memory_store, EMPTY_FINGERPRINT) == b""


async def test_the_reconciler_completes_quiet_uploads_and_abandons_stale_ones(core, memory_store, clock):
    alice = await new_user(core, "alice")
    done_data, stale_data = os.urandom(CHUNK + 1), os.urandom(CHUNK + 2)
    done, _ = await core.uploads.start(alice, claim_for(done_data, "done.bin"))
    stale, _ = await core.uploads.start(alice, claim_for(stale_data, "stale.bin"))
    await send_chunks(core, memory_store, alice, done, done_data)
    await send_chunks(core, memory_store, alice, stale, stale_data, [0])
    assert (await core.reconcile_once())["checked"] == 0  # within the grace period: left to the events

    clock.advance(core.config.reconcile_grace + 1)
    counts = await core.reconcile_once()
    assert counts["checked"] == 2 and counts["completed"] == 1 and counts["abandoned"] == 0
    assert (await core.files.readable(alice, done))[0]["status"] == "uploaded"

    clock.advance(core.config.abandon_after)
    stale_upload = (await uploads_db.get_upload(core.db, stale))["upload_id"]
    counts = await core.reconcile_once()
    assert counts["abandoned"] == 1
    row, _ = await core.files.readable(alice, stale)
    assert row["status"] == "failed" and "abandoned" in row["failure_reason"]
    with pytest.raises(UploadNotFound):
        await memory_store.list_parts(content_key(row["fingerprint"]), stale_upload)
    assert await core.uploads.abandon(done) is False  # a finished upload is never touched


async def test_an_upload_under_another_gateways_lease_is_skipped_until_the_lease_runs_out(core, memory_store, clock):
    from gateway.core.leases import LEASE_SECONDS

    alice = await new_user(core, "alice")
    data = os.urandom(CHUNK + 1)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    await send_chunks(core, memory_store, alice, file_id, data)
    assert await core.uploads.leases.try_claim(file_id) is not None  # another gateway is settling it, then dies
    clock.advance(core.config.reconcile_grace + 1)
    assert (await core.reconcile_once())["busy"] == 1
    assert (await core.files.readable(alice, file_id))[0]["status"] == "uploading"
    clock.advance(LEASE_SECONDS + 1)
    assert (await core.reconcile_once())["completed"] == 1


async def test_every_chunk_of_a_larger_file_is_checked(core, memory_store):
    alice = await new_user(core, "alice")
    data = os.urandom(4 * CHUNK + 3)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    assert len(chunks_of(data)) == 5
    assert await send_chunks(core, memory_store, alice, file_id, data) == [200] * 5
    await core.uploads.finish(alice, file_id)
    assert stored(memory_store, claim_for(data).fingerprint) == data


async def test_a_small_inline_file_is_one_verified_put_and_one_write_transaction(core, memory_store):
    """One chunk sent inline: no multipart upload, no lease, no part list; one read, one write transaction."""
    alice = await new_user(core, "alice")
    data = os.urandom(4096)
    work = (core.db.work.transactions, core.db.work.statements)
    file_id = await core.uploads.upload_inline(alice, claim_for(data, "small.txt"), io.BytesIO(data))
    transactions, statements = core.db.work.transactions - work[0], core.db.work.statements - work[1]
    assert transactions == 2 and statements <= 16, (transactions, statements)
    assert not memory_store._uploads  # never a multipart upload
    row, chunks = await core.files.readable(alice, file_id)
    assert row["status"] == "uploaded" and row["path"] == "/small.txt" and [c["status"] for c in chunks] == ["uploaded"]
    assert stored(memory_store, row["fingerprint"]) == data
    assert (await memory_store.stat(content_key(row["fingerprint"]))).sha256_checksum == sha256_b64(data)


async def test_a_small_inline_file_checked_in_its_lookups_read_is_refused_before_its_bytes_are_stored(
        core, memory_store, monkeypatch):
    """``precheck`` (a small body the route read before any check): the user's limits are checked in the
    read that looks for the file, not in a read of its own: still one read and one write transaction, and
    a file that does not fit is refused before the store is asked to hold it. No upload slot is needed."""
    alice = await new_user(core, "alice")
    data = os.urandom(4096)
    work = (core.db.work.transactions, core.db.work.statements)
    started = await core.uploads.store_inline(alice, claim_for(data, "small.txt"), io.BytesIO(data), precheck=True)
    assert (core.db.work.transactions - work[0], started.row and started.row["status"]) == (2, "uploaded")
    assert core.db.work.statements - work[1] <= 16

    puts = []
    put = memory_store.put_object

    async def counted(key, body, checksum):
        puts.append(key)
        await put(key, body, checksum)

    monkeypatch.setattr(memory_store, "put_object", counted)
    await users_db.set_quota(core.db, "alice", 4096 + 100)
    other = os.urandom(1000)
    with pytest.raises(QuotaExceeded):
        await core.uploads.store_inline(alice, claim_for(other, "over.txt"), io.BytesIO(other), precheck=True)
    assert puts == [] and stored(memory_store, claim_for(other).fingerprint) is None
    # Without it (the route checked before reading), the transaction still refuses, after the put.
    with pytest.raises(QuotaExceeded):
        await core.uploads.store_inline(alice, claim_for(other, "over.txt"), io.BytesIO(other))
    assert len(puts) == 1 and stored(memory_store, claim_for(other).fingerprint) is None


async def test_content_removed_between_the_put_and_the_record_is_stored_again(core, memory_store, monkeypatch):
    """The last other file with the same content deleted for good between this upload's PUT and its
    transaction: the removal is recorded under the content lock, and the upload puts the bytes back."""
    alice = await new_user(core, "alice")
    data = os.urandom(1000)
    claim = claim_for(data, "again.txt")
    put = memory_store.put_object

    async def put_then_removed(key, body, checksum):
        await put(key, body, checksum)
        if put_then_removed.first:
            put_then_removed.first = False
            assert await core.deletion.drop_unreferenced_content(claim.fingerprint)  # no file refers to it yet
            assert stored(memory_store, claim.fingerprint) is None

    put_then_removed.first = True
    monkeypatch.setattr(memory_store, "put_object", put_then_removed)
    file_id = await core.uploads.upload_inline(alice, claim, io.BytesIO(data))
    row, _ = await core.files.readable(alice, file_id)
    assert row["status"] == "uploaded" and stored(memory_store, claim.fingerprint) == data


async def test_an_inline_file_refused_in_its_transaction_leaves_no_object(core, memory_store):
    alice = await new_user(core, "alice")
    await users_db.set_quota(core.db, "alice", 100)
    data = os.urandom(1000)
    with pytest.raises(QuotaExceeded):
        await core.uploads.upload_inline(alice, claim_for(data, "big.txt"), io.BytesIO(data))
    assert stored(memory_store, claim_for(data).fingerprint) is None


async def test_background_work_is_counted_apart_from_requests(core, memory_store):
    """bench control divides the requests' statements by its requests: a background round's must not be in them."""
    alice = await new_user(core, "alice")
    work = core.db.work
    before = (work.statements, work.transactions, work.background_statements, work.background_transactions)

    async def background_round() -> None:
        in_background()
        await core.refresh_progress_once()
        await core.uploads.start(alice, claim_for(os.urandom(100), "in-the-background.txt"))

    await asyncio.create_task(background_round())
    after_background = (work.statements, work.transactions, work.background_statements, work.background_transactions)
    assert after_background[:2] == before[:2], "a background round counted as a request's work"
    assert after_background[2] > before[2] and after_background[3] > before[3]

    await core.uploads.start(alice, claim_for(os.urandom(100), "in-a-request.txt"))  # this task: a request's
    assert work.statements > after_background[0] and work.transactions > after_background[1]
    assert (work.background_statements, work.background_transactions) == after_background[2:]


async def test_handing_out_urls_is_activity_recorded_at_most_every_few_seconds(core, memory_store, clock):
    """A small file's one upload-urls call right after its start writes nothing; a later call keeps the upload alive."""
    alice = await new_user(core, "alice")
    data = os.urandom(3 * CHUNK)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    started = (await uploads_db.get_upload(core.db, file_id))["active_at"]
    assert len(await core.uploads.upload_urls(alice, file_id, None)) == 3
    assert (await uploads_db.get_upload(core.db, file_id))["active_at"] == started

    clock.advance(TOUCH_AFTER + 1)
    assert len(await core.uploads.upload_urls(alice, file_id, [1])) == 1
    assert (await uploads_db.get_upload(core.db, file_id))["active_at"] == stamp_now(clock)
