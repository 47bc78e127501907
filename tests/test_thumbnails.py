"""Thumbnails in the core (gateway/core/thumbnails.py): the in-memory store, the real decoder child.

Made once per content, in the background, by workers that share the queue; hostile files get
none and harm nothing; the content's removal takes its thumbnail along. The claiming tests run on
both engines (two cores on one database, as two gateways); the CDN and the API's URLs are in
tests/test_thumbnails_real.py, the web app's grid in tests/test_web_thumbnails.py.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from gateway.cache import make_cache
from gateway.core import build_core
from gateway.core import thumbnails as thumbnails_module
from gateway.core.content import content_key, page_key, thumbnail_key
from gateway.core.thumbnails import LEASE_SECONDS, MAX_ATTEMPTS, RETRY_SECONDS, Decoded, decode_in_child, wants_thumbnail
from gateway.db import thumbnails as thumbnails_db
from gateway.thumbnailer import EDGE, MAX_PIXELS, PAGE_EDGE
from tests.core_fixtures import claim_for, core_config, cores_on_one_database, new_user, uploaded
from tests.images import encoded, garbage_pdf, png_bomb, thumbnail_size, truncated_jpeg
from tests.test_db import database_at, empty_database, upgrade_to_head  # noqa: F401 (empty_database: a fixture)


def fingerprint_of(data: bytes) -> str:
    return claim_for(data).fingerprint


def thumbnail_in(store, data: bytes) -> bytes | None:
    return store.read_object(thumbnail_key(fingerprint_of(data)))


def page_in(store, data: bytes) -> bytes | None:
    return store.read_object(page_key(fingerprint_of(data)))


class CountingDecoder:
    """The real child, counted: how many contents were decoded, and an optional step before each."""

    def __init__(self, before=None):
        self.decoded = 0
        self.before = before

    async def __call__(self, data: bytes) -> Decoded:
        self.decoded += 1
        if self.before is not None:
            await self.before()
        return await decode_in_child(data, seconds=20, memory_bytes=768 * 1024 * 1024)


@pytest.mark.parametrize(("kind", "name", "size"), [
    ("JPEG", "photo.jpg", (1200, 800)), ("PNG", "drawing.png", (300, 900)), ("WEBP", "web.webp", (640, 480)),
    ("GIF", "anim.gif", (100, 60)), ("HEIF", "IMG_0001.HEIC", (1024, 768)), ("PDF", "report.pdf", (595, 842)),
])
async def test_an_uploaded_image_or_pdf_gets_a_webp_thumbnail_in_the_store(core, memory_store, kind, name, size):
    alice = await new_user(core, "alice")
    data = encoded(kind, size)
    await uploaded(core, memory_store, alice, data, name)
    assert thumbnail_in(memory_store, data) is None, "nothing is made on the request path"

    assert (await core.thumbnails.run_once())["made"] == 1
    assert core.metrics.thumbnails.labels("made")._value.get() == 1
    made, (width, height) = thumbnail_size(thumbnail_in(memory_store, data))
    assert made == "WEBP"
    assert max(width, height) == min(EDGE, max(size))
    assert abs(width / height - size[0] / size[1]) < 0.05, "the aspect ratio is kept"
    urls = await core.thumbnails.urls([fingerprint_of(data)])
    assert urls[fingerprint_of(data)][0].startswith(f"{core.config.cdn_url}/t/{fingerprint_of(data)}?exp=")
    if kind != "PDF":
        assert page_in(memory_store, data) is None, "only a PDF's first page is made for the preview"
        return
    made, (width, height) = thumbnail_size(page_in(memory_store, data))
    assert made == "WEBP" and max(width, height) == PAGE_EDGE
    assert abs(width / height - size[0] / size[1]) < 0.05
    page_url = core.thumbnails.page_url(fingerprint_of(data))[0]
    assert page_url.startswith(f"{core.config.cdn_url}/t/{fingerprint_of(data)}-page?exp=")


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("bomb.png", png_bomb(), "decompression bomb"),
    ("just-over.png", png_bomb(8_100, 8_000), "decompression bomb"),  # over MAX_PIXELS, under Pillow's 2x error
    ("cut.jpg", truncated_jpeg(), "truncated"),
    ("broken.pdf", garbage_pdf(), "unreadable PDF"),
    ("text.jpg", b"this is not a picture at all\n" * 100, "unreadable image"),
])
async def test_a_hostile_or_broken_file_gets_no_thumbnail_and_is_not_tried_again(core, memory_store, name, data,
                                                                                 reason):
    assert 8_100 * 8_000 > MAX_PIXELS
    alice = await new_user(core, "alice")
    await uploaded(core, memory_store, alice, data, name)
    assert await core.thumbnails.run_once() == {"made": 0, "none": 1, "retry": 0, "lost": 0}
    row = await core.db.fetchall("SELECT state, reason FROM thumbnails")
    assert row[0]["state"] == "none" and reason in row[0]["reason"], row
    assert thumbnail_in(memory_store, data) is None
    assert await core.thumbnails.urls([fingerprint_of(data)]) == {}
    assert await core.thumbnails.run_once() == {"made": 0, "none": 0, "retry": 0, "lost": 0}
    # ... and the gateway goes on: the next image gets its thumbnail.
    await uploaded(core, memory_store, alice, encoded("PNG"), "fine.png")
    assert (await core.thumbnails.run_once())["made"] == 1


async def test_other_files_are_not_queued():
    assert wants_thumbnail("image/jpeg; charset=binary", "x") and wants_thumbnail("", "scan.PDF")
    assert not wants_thumbnail("image/svg+xml", "logo.svg") and not wants_thumbnail("text/plain", "notes.txt")


async def test_a_file_neither_image_nor_pdf_is_not_queued(core, memory_store):
    alice = await new_user(core, "alice")
    await uploaded(core, memory_store, alice, b"plain text\n" * 50, "notes.txt")
    assert await core.db.fetchall("SELECT * FROM thumbnails") == []


async def test_a_content_is_decoded_once_however_many_files_and_users_have_it(core, memory_store):
    decoder = CountingDecoder()
    core.thumbnails.decode = decoder
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    data = encoded("JPEG")
    first = await uploaded(core, memory_store, alice, data, "a.jpg")
    await uploaded(core, memory_store, bob, data, "same.jpg")
    await core.tree.copy(alice, first, parent_id=None, name="copy.jpg", autorename=False)
    await core.thumbnails.drain()
    await uploaded(core, memory_store, bob, data, "again.jpg")  # after it was made
    await core.thumbnails.drain()
    assert decoder.decoded == 1
    assert await core.db.fetchval("SELECT count(*) FROM thumbnails") == 1


async def test_a_source_over_the_size_limit_is_not_read(core_database, memory_store, clock):
    config = core_config(thumbnail_max_source_bytes=1000)
    cache = make_cache(config)
    core = build_core(config, core_database, memory_store, cache, clock)
    decoder = CountingDecoder()
    core.thumbnails.decode = decoder
    alice = await new_user(core, "alice")
    await uploaded(core, memory_store, alice, encoded("PNG", (2000, 2000)), "big.png")
    assert (await core.thumbnails.run_once())["none"] == 1
    assert decoder.decoded == 0
    await cache.close()


async def test_the_contents_removal_takes_its_thumbnail_and_a_new_upload_queues_it_again(core, memory_store):
    alice = await new_user(core, "alice")
    data = encoded("PDF")
    file_id = await uploaded(core, memory_store, alice, data, "doc.pdf")
    await core.thumbnails.drain()
    assert thumbnail_in(memory_store, data) is not None and page_in(memory_store, data) is not None

    await core.tree.delete_file(alice, file_id)
    await core.tree.delete_for_good(alice, file_id)
    assert memory_store.read_object(content_key(fingerprint_of(data))) is None
    assert thumbnail_in(memory_store, data) is None and page_in(memory_store, data) is None
    assert await core.db.fetchall("SELECT * FROM thumbnails") == []

    await uploaded(core, memory_store, alice, data, "doc.pdf")
    assert (await core.thumbnails.run_once())["made"] == 1


async def test_a_thumbnail_finished_after_its_content_was_removed_is_removed_too(core, memory_store):
    alice = await new_user(core, "alice")
    data = encoded("PDF")
    file_id = await uploaded(core, memory_store, alice, data, "doc.pdf")

    async def remove_the_content() -> None:
        await core.tree.delete_file(alice, file_id)
        await core.tree.delete_for_good(alice, file_id)

    core.thumbnails.decode = CountingDecoder(before=remove_the_content)
    assert (await core.thumbnails.run_once())["lost"] == 1
    assert thumbnail_in(memory_store, data) is None and page_in(memory_store, data) is None
    assert await core.db.fetchall("SELECT * FROM thumbnails") == []


async def test_a_pdf_whose_first_page_cannot_be_made_gets_neither_picture(core, memory_store):
    """Both or neither: the API gives a PDF's page_url with its thumbnail_url, so one never goes without the other."""
    alice = await new_user(core, "alice")
    data = encoded("PDF")
    await uploaded(core, memory_store, alice, data, "doc.pdf")

    async def no_page(_: bytes) -> Decoded:
        return Decoded(None, "the decoder ran out of memory")

    core.thumbnails.decode_page = no_page
    assert (await core.thumbnails.run_once())["none"] == 1
    assert thumbnail_in(memory_store, data) is None and page_in(memory_store, data) is None
    reason = await core.db.fetchval("SELECT reason FROM thumbnails")
    assert reason == f"the first page at {PAGE_EDGE} pixels: the decoder ran out of memory"


async def test_a_store_failure_is_tried_again_later_and_given_up_after_a_few(core, memory_store, clock):
    alice = await new_user(core, "alice")
    data = encoded("PNG")
    await uploaded(core, memory_store, alice, data, "pic.png")
    memory_store.available = False
    assert (await core.thumbnails.run_once())["retry"] == 1
    assert (await core.thumbnails.run_once())["retry"] == 0, "not before its time"
    memory_store.available = True
    clock.advance(RETRY_SECONDS + 1)
    assert (await core.thumbnails.run_once())["made"] == 1

    other = encoded("PNG", (50, 50))
    await uploaded(core, memory_store, alice, other, "other.png")
    memory_store.available = False
    outcomes = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        outcomes.append(await core.thumbnails.run_once())
        clock.advance(RETRY_SECONDS * attempt + 1)
    assert [o["retry"] for o in outcomes] == [1] * (MAX_ATTEMPTS - 1) + [0]
    assert outcomes[-1]["none"] == 1


async def test_a_decoder_that_never_ends_is_killed_at_its_time_limit(monkeypatch, tmp_path):
    forever = tmp_path / "forever.py"
    forever.write_text("import sys, time\nsys.stdin.buffer.read()\nprint('started', flush=True)\ntime.sleep(3600)\n")
    monkeypatch.setattr(thumbnails_module, "THUMBNAILER", forever)
    decoded = await decode_in_child(b"x" * 1000, seconds=0.5, memory_bytes=256 * 1024 * 1024)
    assert decoded.data is None and "took more than 0.5 s" in decoded.reason


async def test_a_decoder_whose_worker_is_cancelled_is_killed(monkeypatch, tmp_path):
    told = tmp_path / "pid"
    os.mkfifo(told)
    forever = tmp_path / "forever.py"
    forever.write_text(f"import os, time\nwith open({str(told)!r}, 'w') as fifo:\n    fifo.write(str(os.getpid()))\n"
                       "time.sleep(3600)\n")
    monkeypatch.setattr(thumbnails_module, "THUMBNAILER", forever)
    decoding = asyncio.create_task(decode_in_child(b"", seconds=3600, memory_bytes=256 * 1024 * 1024))
    pid = int(await asyncio.to_thread(told.read_text))  # the child has started
    decoding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await decoding
    with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
        os.kill(pid, 0)


async def test_the_childs_memory_limit_ends_a_decoding_that_needs_more():
    # 7,000 x 7,000 RGB is 49 MP (under the pixel cap) and 147 MB decoded: more than 100 MB of address space.
    limit = 100 * 1024 * 1024
    assert (await decode_in_child(encoded("PNG", (640, 480)), seconds=60, memory_bytes=limit)).data is not None
    data = encoded("PNG", (7000, 7000))
    decoded = await decode_in_child(data, seconds=60, memory_bytes=limit)
    assert decoded == Decoded(None, "out of memory (the child's limit)")
    assert (await decode_in_child(data, seconds=60, memory_bytes=1024 * 1024 * 1024)).data is not None


async def test_the_child_sees_none_of_the_gateways_environment(monkeypatch, tmp_path):
    snoop = tmp_path / "snoop.py"
    snoop.write_text("import os, sys\nsys.stdin.buffer.read()\nsys.stdout.write(repr(sorted(os.environ)))\n")
    monkeypatch.setattr(thumbnails_module, "THUMBNAILER", snoop)
    monkeypatch.setenv("GATEWAY_JWT_SECRET", "do-not-leak")
    decoded = await decode_in_child(b"", seconds=30, memory_bytes=256 * 1024 * 1024)
    assert decoded.data is not None and b"GATEWAY" not in decoded.data, decoded


async def test_the_worker_is_woken_by_an_upload_through_its_own_gateway(core, memory_store):
    alice = await new_user(core, "alice")
    woken = asyncio.create_task(core.thumbnails.wait_for_work(3600))
    await asyncio.sleep(0)
    assert not woken.done()
    await uploaded(core, memory_store, alice, encoded("PNG"), "pic.png")
    await asyncio.wait_for(woken, 30)


# --- several workers on one database ------------------------------------------------------------------

@pytest.fixture
async def gateways(database_url, database_path, memory_store, clock):
    """Three cores on one database, each with its own connection pool (three gateway processes)."""
    async with cores_on_one_database(3, database_url, database_path, memory_store, clock) as cores:
        yield cores


async def queue(core, count: int) -> list[str]:
    """``count`` contents queued straight in the table (no upload needed to test the claiming)."""
    fingerprints = [f"{index:064x}" for index in range(count)]
    async with core.db.transaction() as conn:
        for index, fingerprint in enumerate(fingerprints):
            await thumbnails_db.want(conn, fingerprint, 100, f"2026-01-01T00:00:{index % 60:02d}.000000Z")
    return fingerprints


@pytest.mark.every_engine
async def test_workers_claiming_at_once_never_claim_the_same_content(gateways):
    fingerprints = await queue(gateways[0], 60)

    async def claim_all(core, name: str) -> list[str]:
        got: list[str] = []
        while jobs := await thumbnails_db.claim(core.db, name, "2026-01-01T00:00:00.000000Z",
                                                "2026-01-01T01:00:00.000000Z", 3):
            got.extend(job["fingerprint"] for job in jobs)
        return got

    claimed = await asyncio.gather(*(claim_all(core, f"worker-{i}") for i, core in enumerate(gateways)))
    everything = [fingerprint for mine in claimed for fingerprint in mine]
    assert sorted(everything) == sorted(fingerprints), "each content claimed exactly once"
    rows = await gateways[0].db.fetchall("SELECT fingerprint, lease_token, attempts FROM thumbnails")
    owner = {fingerprint: f"worker-{i}" for i, mine in enumerate(claimed) for fingerprint in mine}
    assert all(row["lease_token"] == owner[row["fingerprint"]] and row["attempts"] == 1 for row in rows)


@pytest.mark.every_engine
async def test_a_claim_whose_lease_ran_out_goes_to_another_worker_and_the_first_cannot_finish(gateways, clock):
    first, second, _ = gateways
    await queue(first, 1)
    now = "2026-01-01T00:00:00.000000Z"
    [job] = await thumbnails_db.claim(first.db, "first", now, "2026-01-01T00:05:00.000000Z", 5)
    assert await thumbnails_db.claim(second.db, "second", now, "2026-01-01T00:05:00.000000Z", 5) == []
    later = "2026-01-01T00:06:00.000000Z"
    [taken] = await thumbnails_db.claim(second.db, "second", later, "2026-01-01T00:11:00.000000Z", 5)
    assert taken["attempts"] == 2
    async with first.db.transaction() as conn:
        assert not await thumbnails_db.finish(conn, job, "made", later)
    async with second.db.transaction() as conn:
        assert await thumbnails_db.finish(conn, taken, "made", later)


@pytest.mark.every_engine
async def test_workers_of_several_gateways_make_every_upload_once(gateways, memory_store):
    decoders = [CountingDecoder() for _ in gateways]
    for core, decoder in zip(gateways, decoders, strict=True):
        core.thumbnails.decode = decoder
    alice = await new_user(gateways[0], "alice")
    contents = [encoded("PNG", (40 + index, 30)) for index in range(6)]
    for index, data in enumerate(contents):
        await uploaded(gateways[index % 3], memory_store, alice, data, f"p{index}.png")
    await asyncio.gather(*(core.thumbnails.drain() for core in gateways))
    assert sum(decoder.decoded for decoder in decoders) == len(contents)
    assert all(thumbnail_in(memory_store, data) is not None for data in contents)


def test_lease_outlasts_the_slowest_job():
    config = core_config()
    assert LEASE_SECONDS > config.thumbnail_timeout * 3


@pytest.mark.every_engine
async def test_the_migration_queues_again_the_pdfs_made_before_their_first_page(empty_database):
    """Revision 0015 on a database at 0014: a PDF content (by type or name) whose thumbnail was made is queued
    again, for its first page; an image's, a PDF given up on, and one still queued stay as they were."""
    db = await database_at(empty_database, "0014")
    try:
        await db.execute("INSERT INTO users (username, email, password_hash, created_at)"
                         " VALUES ('ann', 'a@x.io', 'h', '2026-01-01T00:00:00.000000Z')")
        owner = (await db.fetchall("SELECT id FROM users"))[0]["id"]
        contents = {"a" * 64: ("report.pdf", "application/octet-stream", "made"),
                    "b" * 64: ("scan", "application/pdf", "made"),
                    "c" * 64: ("photo.png", "image/png", "made"),
                    "d" * 64: ("broken.pdf", "application/pdf", "none"),
                    "e" * 64: ("new.pdf", "application/pdf", "queued")}
        for n, (fingerprint, (name, file_type, state)) in enumerate(contents.items()):
            await db.execute(
                "INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size, total_chunks,"
                " status, created_at, updated_at) VALUES (:id, :owner, :name, 5, :type, :fp, 8, 1, 'uploaded', 't', 't')",
                {"id": str(n) * 32, "owner": owner, "name": name, "type": file_type, "fp": fingerprint})
            await db.execute(
                "INSERT INTO thumbnails (fingerprint, source_size, state, queued_at, attempts, done_at)"
                " VALUES (:fp, 5, :state, '2026-01-01T00:00:00.000000Z', 1, :done)",
                {"fp": fingerprint, "state": state, "done": None if state == "queued" else "2026-01-02T00:00:00.000000Z"})
        await upgrade_to_head(db)
        rows = await db.fetchall("SELECT fingerprint, state, attempts, done_at FROM thumbnails ORDER BY fingerprint")
        assert [(row["state"], row["attempts"], row["done_at"] is None) for row in rows] == [
            ("queued", 0, True), ("queued", 0, True), ("made", 1, False), ("none", 1, False), ("queued", 1, True)]
    finally:
        await db.close()
