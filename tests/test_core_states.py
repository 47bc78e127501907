"""States as the core reads them: enum members in typed rows, the contract's strings in the database and the cache.

The status columns are read through gateway/db/tables.py's StatusText, the
permission cache's entries through gateway/db/files.py's file_row/chunk_rows.
"""
from __future__ import annotations

import os

import pytest
from aiocache import Cache
from aiocache.serializers import JsonSerializer
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from gateway.core import build_core
from gateway.core.permissions import cache_key
from gateway.db import Database, database_url
from gateway.db import files as files_db
from gateway.db import uploads as uploads_db
from gateway.db.files import FileRow
from protocol.states import ChunkStatus, FileStatus
from tests.core_fixtures import CHUNK, claim_for, core_config, new_user, send_chunks, uploaded
from tests.test_openapi import load_document

# Not __required_keys__: under postponed annotations Python 3.11 counts the NotRequired shared_at in it.
FILE_ROW_KEYS = FileRow.__annotations__.keys() - {"shared_at"}


def test_the_enums_are_the_states_the_api_document_names_in_its_order():
    schemas = load_document()["components"]["schemas"]
    assert schemas["FileObject"]["properties"]["status"]["enum"] == [status.value for status in FileStatus]
    assert schemas["Chunk"]["properties"]["status"]["enum"] == [status.value for status in ChunkStatus]


async def test_the_rows_the_core_reads_carry_members_and_the_keys_their_types_name(core, memory_store):
    alice, bob = await new_user(core, "alice"), await new_user(core, "bob")
    data = os.urandom(2 * CHUNK)
    file_id, _ = await core.uploads.start(alice, claim_for(data))
    await send_chunks(core, memory_store, alice, file_id, data, [1])
    await core.uploads.complete(file_id, strict=False)  # marks chunk 1, the file stays uploading

    row, chunks = await core.files.readable(alice, file_id)
    assert set(row) == FILE_ROW_KEYS and row["status"] is FileStatus.UPLOADING
    assert [c["status"] for c in chunks] == [ChunkStatus.PENDING, ChunkStatus.UPLOADED]
    assert all(type(c["status"]) is ChunkStatus for c in chunks)
    same = await uploads_db.resumable(core.db, alice, row["fingerprint"], "root", row["file_name"])
    assert same is not None and same["status"] is FileStatus.UPLOADING

    done = await uploaded(core, memory_store, alice, os.urandom(100), "done.bin")
    await core.sharing.share(alice, done, ["bob"])
    for _ in range(2):  # read from the database, then from the cache
        row, chunks = await core.files.readable(bob, done)
        assert row["status"] is FileStatus.UPLOADED and chunks[0]["status"] is ChunkStatus.UPLOADED
    [shared] = (await core.files.shared_with_me(bob, 10)).rows
    assert set(shared) == FILE_ROW_KEYS | {"shared_at"} and shared["status"] is FileStatus.UPLOADED
    async with core.db.transaction() as conn:
        facts = await files_db.file_for_change(conn, done)
    assert facts is not None and facts["status"] is FileStatus.UPLOADED


async def test_the_database_holds_the_contract_strings(core, memory_store):
    alice = await new_user(core, "alice")
    await uploaded(core, memory_store, alice, os.urandom(100))
    assert await core.db.fetchall("SELECT status FROM files") == [{"status": "uploaded"}]
    assert await core.db.fetchall("SELECT DISTINCT status FROM chunks") == [{"status": "uploaded"}]


async def write_unchecked(core, statement: str) -> None:
    """``statement`` past the tables' CHECK constraints: as a newer gateway's schema, with a state this
    code does not know, would let it."""
    async with core.db.transaction() as conn:
        await conn.execute(text("PRAGMA ignore_check_constraints = ON"))
        await conn.execute(text(statement))
        await conn.execute(text("PRAGMA ignore_check_constraints = OFF"))


async def test_an_unknown_status_in_the_database_is_refused_not_passed_on(core, memory_store):
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(100))
    await write_unchecked(core, "UPDATE chunks SET status = 'sent'")
    with pytest.raises(ValueError, match="'sent' is not a valid ChunkStatus"):
        await files_db.get_chunks(core.db, file_id)
    await write_unchecked(core, "UPDATE files SET status = 'Uploaded'")
    with pytest.raises(ValueError, match="'Uploaded' is not a valid FileStatus"):
        await core.files.readable(alice, file_id)
    with pytest.raises(ValueError, match="'Uploaded' is not a valid FileStatus"):
        await core.files.own(alice, 10)


async def test_a_misspelled_status_in_a_query_fails_before_any_sql_runs(core):
    with pytest.raises(StatementError, match="'uploded' is not a valid FileStatus"):
        await files_db.count_with_content(core.db, "0" * 64, "uploded")  # type: ignore[arg-type]


@pytest.fixture
async def json_cached_core(tmp_path, memory_store, clock):
    """A core whose cache keeps JSON, as Redis does: what it gives back has strings, not members."""
    config = core_config()
    db = await Database.open(database_url("", str(tmp_path / "core.sqlite3")))
    cache = Cache(Cache.MEMORY, namespace="gateway", serializer=JsonSerializer())
    yield build_core(config, db, memory_store, cache, clock)
    await cache.close()
    await db.close()


async def test_a_file_read_from_a_json_cache_has_members_again(json_cached_core, memory_store):
    core = json_cached_core
    alice = await new_user(core, "alice")
    file_id = await uploaded(core, memory_store, alice, os.urandom(CHUNK + 1))
    await core.files.readable(alice, file_id)  # fills the cache
    entry = await core.permissions.cache.get(cache_key(file_id))
    assert type(entry["row"]["status"]) is str and type(entry["chunks"][0]["status"]) is str

    row, chunks = await core.files.readable(alice, file_id)
    assert row["status"] is FileStatus.UPLOADED
    assert [c["status"] for c in chunks] == [ChunkStatus.UPLOADED] * 2
    assert all(type(c["status"]) is ChunkStatus for c in chunks)

    entry["row"]["status"] = "done"  # a stale or planted entry of the right version
    await core.permissions.cache.set(cache_key(file_id), entry)
    with pytest.raises(ValueError, match="'done' is not a valid FileStatus"):
        await core.files.readable(alice, file_id)
