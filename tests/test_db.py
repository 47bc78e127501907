"""The metadata database: Alembic migrations, WAL, foreign keys, on a real SQLite file."""
from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from gateway.db import Database, database_url
from tests.harness import this_checkout_first
from gateway.db.migrate import VERSIONS, alembic_config, newest_revision

pytestmark = pytest.mark.every_engine  # migrations and statements of each engine

# The schema exactly as the first release wrote it (the SQL file 0001_initial.sql, PRAGMA user_version 1).
LEGACY_0001 = (Path(__file__).parent / "fixtures" / "legacy_0001_initial.sql").read_text()
# And what the second one added (0002_shares_newest_first.sql).
LEGACY_0002 = """
CREATE INDEX shares_by_user_newest ON shares (user_id, created_at DESC, file_id DESC);
DROP INDEX shares_by_user;
"""


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_revisions_are_numbered_in_order_in_a_single_line():
    # Numbers may skip one that a branch in flight holds (its merge chains it in); never go back.
    found = revisions()
    assert found[0] == "0001" and all(name.isdigit() and len(name) == 4 for name in found)
    assert found == sorted(found, key=int) and len(set(found)) == len(found)
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1
    # What a gateway's start reads instead of Alembic (gateway/db/migrate.py's is_current).
    named = {path.name[:4]: path for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")}
    assert sorted(named) == found and newest_revision() == found[-1]
    assert all(f'revision = "{number}"' in path.read_text() for number, path in named.items())


def make_legacy(path: Path, version: int) -> None:
    """A database as the release that counted ``version`` in PRAGMA user_version left it."""
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_0001 + (LEGACY_0002 if version >= 2 else "") + f"\nPRAGMA user_version = {version};")
        conn.execute("INSERT INTO users (username, email, password_hash, created_at) VALUES ('Old', 'o@x.io', 'h', 't')")


async def open_sqlite(path: Path) -> Database:
    return await Database.open(database_url("", str(path)))


async def check_migrated(db: Database) -> None:
    assert await db.fetchval("SELECT version_num FROM alembic_version") == revisions()[-1]
    assert await db.fetchval("SELECT username FROM users WHERE lower(username) = 'old'") == "Old"
    assert await db.fetchval("PRAGMA journal_mode") == "wal"
    assert await db.fetchval("PRAGMA foreign_keys") == 1
    indexes = {row["name"] for row in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"shares_by_user_newest", "users_by_lower_username"} <= indexes
    assert "shares_by_user" not in indexes
    columns = {row["name"] for row in await db.fetchall("SELECT name FROM pragma_table_info('uploads')")}
    assert {"lease_token", "lease_expires_at", "upload_id", "parent_id", "name_key"} <= columns


async def test_a_first_release_database_is_migrated_forward_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    make_legacy(path, 1)
    db = await open_sqlite(path)
    try:
        await check_migrated(db)
    finally:
        await db.close()
    reopened = await open_sqlite(path)  # nothing to apply twice
    await check_migrated(reopened)
    await reopened.close()


async def test_a_second_release_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "v2.sqlite3"
    make_legacy(path, 2)
    db = await open_sqlite(path)
    try:
        await check_migrated(db)
    finally:
        await db.close()


async def test_a_new_database_gets_the_same_schema(tmp_path):
    db = await open_sqlite(tmp_path / "new.sqlite3")
    try:
        await db.execute(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES ('Old', 'o@x.io', 'h', 't')"
        )
        await check_migrated(db)
    finally:
        await db.close()


async def test_gateways_starting_together_on_a_new_postgresql_database_migrate_it_once(postgres_cluster):
    name = f"fresh_{secrets.token_hex(4)}"
    url = database_url(postgres_cluster.create_database(name), "")
    try:
        opened = await asyncio.gather(*(Database.open(url) for _ in range(4)))  # four gateways start at once
        try:
            assert {db.dialect for db in opened} == {"postgresql"}
            assert await opened[0].fetchval("SELECT version_num FROM alembic_version") == revisions()[-1]
            assert await opened[1].fetchval("SELECT count(*) FROM alembic_version") == 1
            await opened[2].execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES ('Old', 'o@x.io', 'h', 't')"
            )
            with pytest.raises(IntegrityError):  # usernames are unique whatever their case, on PostgreSQL too
                await opened[3].execute(
                    "INSERT INTO users (username, email, password_hash, created_at) VALUES ('OLD', 'o@x.io', 'h', 't')"
                )
        finally:
            for db in opened:
                await db.close()
    finally:
        postgres_cluster.drop_database(name)


async def database_at(url: str, revision: str) -> Database:
    """A database (SQLite at ``url`` "" or PostgreSQL) brought only up to ``revision``, as that release left it."""
    from alembic import command

    db = await Database.open(url, migrate=False)
    async with db.transaction() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
    return db


async def upgrade_to_head(db: Database) -> None:
    from gateway.db.migrate import upgrade

    await upgrade(db)


V11_FILE = ("INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size, total_chunks,"
            " status, failure_reason, upload_id, created_at, updated_at, completed_at, lease_token, lease_expires_at,"
            " parts_marked_at, checked_at) VALUES (:id, :owner, :name, 10, 'text/plain', :fp, 8, 2, :status, NULL,"
            " :upload_id, :at, :at, NULL, :lease, :lease_until, :marked, :checked)")


async def test_a_current_database_opens_without_alembic_and_an_older_one_is_upgraded(empty_database, monkeypatch):
    """A start that finds the schema current reads one row and runs no migration; one revision behind, it
    upgrades."""
    import gateway.db.migrate as migrate

    older = await database_at(empty_database, revisions()[-2])
    await older.close()
    upgrades = []
    real_upgrade = migrate._upgrade
    monkeypatch.setattr(migrate, "_upgrade", lambda connection: upgrades.append(1) or real_upgrade(connection))
    for expected in (1, 1):  # the first open upgrades; the second finds it current
        db = await Database.open(empty_database)
        try:
            assert await db.fetchval("SELECT version_num FROM alembic_version") == revisions()[-1]
        finally:
            await db.close()
        assert len(upgrades) == expected


def test_a_start_on_a_current_database_does_not_even_import_alembic(tmp_path):
    """The point of the check above: Alembic's import and its revision files cost a gateway's start 0.15-0.27 CPU s."""
    opens = ("import asyncio, sys\n"
             "from gateway.db import Database, database_url\n"
             "async def main():\n"
             f"    await (await Database.open(database_url('', {str(tmp_path / 'db.sqlite3')!r}))).close()\n"
             "asyncio.run(main())\n"
             "print('alembic' in sys.modules)\n")
    env = this_checkout_first(os.environ)
    ran = [subprocess.run([sys.executable, "-c", opens], env=env, capture_output=True, text=True, timeout=120)
           for _ in range(2)]
    assert [(run.returncode, run.stdout.split()[-1]) for run in ran] == [(0, "True"), (0, "False")], ran[-1].stderr


@pytest.fixture
def empty_database(engine, tmp_path, request):
    """The URL of a database with no schema yet: a new SQLite file, or a new PostgreSQL database."""
    if engine == "sqlite":
        yield database_url("", str(tmp_path / "empty.sqlite3"))
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = f"empty_{secrets.token_hex(4)}"
    yield database_url(cluster.create_database(name), "")
    cluster.drop_database(name)


async def test_upload_sessions_move_out_of_files_losslessly(empty_database):
    """Revision 0007 on a database the v1.1 gateway left, holding uploads in progress (each engine)."""
    db = await database_at(empty_database, "0006")
    try:
        await db.execute("INSERT INTO users (username, email, password_hash, created_at) VALUES ('ann', 'a@x.io', 'h', 't')")
        owner = await db.fetchval("SELECT id FROM users")
        rows = [
            dict(id="a" * 32, name="Report.PDF", status="uploading", upload_id="mp-1", lease="tok",
                 lease_until="2026-01-01T00:01:00.000000Z", marked="2026-01-01T00:00:30.000000Z", checked=None),
            dict(id="b" * 32, name="done.txt", status="uploaded", upload_id=None, lease=None, lease_until=None,
                 marked=None, checked=None),
            dict(id="c" * 32, name="other.bin", status="uploading", upload_id="mp-2", lease=None, lease_until=None,
                 marked=None, checked="2026-01-01T00:00:40.000000Z"),
        ]
        for row in rows:
            await db.execute(V11_FILE, {**row, "owner": owner, "fp": row["id"][0] * 64,
                                        "at": "2026-01-01T00:00:00.000000Z"})
        await upgrade_to_head(db)
        sessions = await db.fetchall(
            "SELECT file_id, owner_id, upload_id, parent_id, name, name_key, mode, active_at, lease_token,"
            " lease_expires_at, parts_marked_at, checked_at FROM uploads ORDER BY file_id")
        assert sessions == [
            {"file_id": "a" * 32, "owner_id": owner, "upload_id": "mp-1", "parent_id": "root", "name": "Report.PDF",
             "name_key": "report.pdf", "mode": "add", "active_at": "2026-01-01T00:00:00.000000Z",
             "lease_token": "tok", "lease_expires_at": "2026-01-01T00:01:00.000000Z",
             "parts_marked_at": "2026-01-01T00:00:30.000000Z", "checked_at": None},
            {"file_id": "c" * 32, "owner_id": owner, "upload_id": "mp-2", "parent_id": "root", "name": "other.bin",
             "name_key": "other.bin", "mode": "add", "active_at": "2026-01-01T00:00:00.000000Z",
             "lease_token": None, "lease_expires_at": None, "parts_marked_at": None,
             "checked_at": "2026-01-01T00:00:40.000000Z"},
        ]
        files = await db.fetchall("SELECT id, file_name, status FROM files ORDER BY id")
        assert [(f["id"][0], f["file_name"], f["status"]) for f in files] == [
            ("a", "Report.PDF", "uploading"), ("b", "done.txt", "uploaded"), ("c", "other.bin", "uploading")]
    finally:
        await db.close()


async def test_v11_files_land_in_their_owners_root_and_duplicate_names_are_numbered(empty_database):
    """Revision 0008 on a database at 0007 holding files of two users, some with the same name (compared
    without regard to case): every uploaded file lands in its owner's root; the later ones (by seq) of a
    taken name get `name (1).ext`, ...; uploads in progress and failed ones get no place yet (each engine)."""
    db = await database_at(empty_database, "0007")
    try:
        for name in ("ann", "bob"):
            await db.execute("INSERT INTO users (username, email, password_hash, created_at)"
                             " VALUES (:n, 'x@x.io', 'h', '2026-01-01T00:00:00.000000Z')", {"n": name})
        ann, bob = [row["id"] for row in await db.fetchall("SELECT id FROM users ORDER BY id")]
        files = [  # (id, owner, name, status), in upload order
            ("1", ann, "Report.pdf", "uploaded"), ("2", ann, "report.PDF", "uploaded"), ("3", bob, "Report.pdf", "uploaded"),
            ("4", ann, "REPORT.pdf", "uploaded"), ("5", ann, "Report (1).pdf", "uploaded"), ("6", ann, "notes", "uploaded"),
            ("7", ann, "Report.pdf", "uploading"), ("8", ann, "notes", "failed"),
        ]
        for file_id, owner, name, status in files:
            await db.execute(
                "INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size, total_chunks,"
                " status, created_at, updated_at, completed_at) VALUES (:id, :owner, :name, 1, 'text/plain', :fp, 8, 1,"
                " :status, :at, :at, :at)",
                {"id": file_id * 32, "owner": owner, "name": name, "fp": "f" * 64, "status": status,
                 "at": f"2026-01-0{file_id}T00:00:00.000000Z"})
        await upgrade_to_head(db)
        placed = await db.fetchall("SELECT id, owner_id, kind, parent_id, name, name_key FROM nodes ORDER BY id")
        assert [(row["id"][0], row["owner_id"], row["name"]) for row in placed] == [
            ("1", ann, "Report.pdf"), ("2", ann, "report (1).PDF"), ("3", bob, "Report.pdf"), ("4", ann, "REPORT (2).pdf"),
            ("5", ann, "Report (1) (1).pdf"), ("6", ann, "notes"),
        ]
        assert {(row["kind"], row["parent_id"]) for row in placed} == {("file", "root")}
        assert all(row["name_key"] == row["name"].casefold() for row in placed)
        # Nothing lost: every file row is there with the name it was uploaded with.
        assert [row["file_name"] for row in await db.fetchall("SELECT file_name FROM files ORDER BY id")] == [
            name for _, _, name, _ in files]
        with pytest.raises(IntegrityError):  # the database keeps live names unique per folder
            await db.execute("INSERT INTO nodes (id, owner_id, kind, parent_id, name, name_key, created_at, modified_at)"
                             " VALUES ('x', :owner, 'folder', 'root', 'NOTES', 'notes', 't', 't')", {"owner": ann})
    finally:
        await db.close()


async def test_existing_images_and_pdfs_are_queued_for_thumbnails_once_per_content(empty_database):
    """Revision 0012 on a database at 0011: every uploaded image or PDF (by type or name) queues its
    content once, however many files have it; other files, uploads in progress and failed ones none."""
    db = await database_at(empty_database, "0011")
    try:
        await db.execute("INSERT INTO users (username, email, password_hash, created_at)"
                         " VALUES ('ann', 'a@x.io', 'h', '2026-01-01T00:00:00.000000Z')")
        owner = await db.fetchval("SELECT id FROM users")
        files = [  # (id, name, type, fingerprint, status, size)
            ("1", "a.jpg", "image/jpeg", "a", "uploaded", 10), ("2", "copy of a.jpg", "image/jpeg", "a", "uploaded", 10),
            ("3", "scan", "application/pdf", "b", "uploaded", 20), ("4", "IMG_1.HEIC", "", "c", "uploaded", 30),
            ("5", "notes.txt", "text/plain", "d", "uploaded", 40), ("6", "b.png", "image/png", "e", "uploading", 50),
            ("7", "c.png", "image/png", "f", "failed", 60),
        ]
        for file_id, name, kind, fingerprint, status, size in files:
            await db.execute(
                "INSERT INTO files (id, owner_id, file_name, file_size, file_type, fingerprint, chunk_size, total_chunks,"
                " status, created_at, updated_at) VALUES (:id, :owner, :name, :size, :kind, :fp, 8, 1, :status, :at, :at)",
                {"id": file_id * 32, "owner": owner, "name": name, "size": size, "kind": kind, "fp": fingerprint * 64,
                 "status": status, "at": "2026-01-01T00:00:00.000000Z"})
        await upgrade_to_head(db)
        queued = await db.fetchall("SELECT fingerprint, source_size, state, attempts, lease_token FROM thumbnails"
                                   " ORDER BY fingerprint")
        assert [(row["fingerprint"][0], row["source_size"], row["state"], row["attempts"], row["lease_token"])
                for row in queued] == [("a", 10, "queued", 0, None), ("b", 20, "queued", 0, None),
                                       ("c", 30, "queued", 0, None)]
    finally:
        await db.close()


def test_the_database_setting_selects_the_engine():
    from gateway.config import Config, ConfigError

    assert database_url("", "var/x.sqlite3") == "sqlite+aiosqlite:///var/x.sqlite3"
    assert database_url("postgresql://u:p@db:5432/meta", "ignored") == "postgresql+asyncpg://u:p@db:5432/meta"
    secrets_ = dict(s3_secret_key="x", jwt_secret="j" * 32, events_token="e", cdn_secret="c")
    with pytest.raises(ConfigError, match="GATEWAY_DATABASE_URL"):
        Config.from_env({"GATEWAY_DATABASE_URL": "mysql://u@h/db"}, **secrets_)
    assert Config.from_env({"GATEWAY_DATABASE_URL": "postgresql://u@h/db"}, **secrets_).database_url.startswith("postgresql")



async def test_listed_chunks_are_marked_in_one_statement_only_for_the_files_current_upload(
        engine, database_url, database_path, memory_store, clock):
    """files.mark_chunks (executemany): the listed ETags land, a changed ETag replaces the old, other chunks stay
    pending, and a part list of an upload the file no longer has marks nothing (each engine)."""
    from gateway.cache import make_cache
    from gateway.core import build_core
    from gateway.db import database_url as url_of
    from gateway.db import files as files_db
    from gateway.db import uploads as uploads_db
    from tests.core_fixtures import claim_for, core_config, new_user

    config = core_config()
    db = await Database.open(url_of(database_url, str(database_path)))
    cache = make_cache(config)
    try:
        core = build_core(config, db, memory_store, cache, clock)
        user = await new_user(core, "marker")
        file_id, _ = await core.uploads.start(user, claim_for(secrets.token_bytes(3 * 5 * 1024 * 1024 + 7)))
        upload_id = (await uploads_db.get_upload(db, file_id))["upload_id"]

        async def marked() -> dict[int, tuple[str, str | None]]:
            return {c["idx"]: (c["status"], c["etag"]) for c in await files_db.get_chunks(db, file_id)}

        async def mark(upload: str, etags: dict[int, str]) -> bool:
            async with db.transaction() as conn:
                return await uploads_db.mark_chunks(conn, file_id, upload, etags, "2026-01-01T00:00:00Z")

        assert await mark(upload_id, {0: '"e0"', 2: '"e2"'})
        assert await marked() == {0: ("uploaded", '"e0"'), 1: ("pending", None), 2: ("uploaded", '"e2"'),
                                  3: ("pending", None)}
        assert await mark(upload_id, {2: '"e2-again"', 3: '"e3"'})
        assert await marked() == {0: ("uploaded", '"e0"'), 1: ("pending", None), 2: ("uploaded", '"e2-again"'),
                                  3: ("uploaded", '"e3"')}
        assert not await mark("an-older-upload", {1: '"e1"'})
        assert (await marked())[1] == ("pending", None)
    finally:
        await cache.close()
        await db.close()


async def test_postgresqls_pool_holds_the_connections_the_setting_asks_for(engine, database_url, tmp_path):
    """GATEWAY_DATABASE_POOL_SIZE (Database.open's pool_size): PostgreSQL's pool keeps that many connections
    and opens as many more while they are all in use; SQLite's pool is its own, whatever the setting."""
    import contextlib

    from gateway.db import database_url as sqlalchemy_url

    db = await Database.open(sqlalchemy_url(database_url, str(tmp_path / "pool.sqlite3")), pool_size=2)
    pool = db.engine.pool
    try:
        if engine == "sqlite":
            assert pool.size() == 32  # type: ignore[attr-defined]
            return
        assert pool.size() == 2  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as held:
            for _ in range(4):
                conn = await held.enter_async_context(db.read())
                assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
            assert (pool.checkedout(), pool.overflow()) == (4, 2)  # type: ignore[attr-defined]
        assert pool.checkedin() == 2  # type: ignore[attr-defined]  # the two more were closed on their return
    finally:
        await db.close()


async def test_a_sqlite_read_of_point_lookups_sees_one_snapshot_with_its_statements_on_the_loop(tmp_path,
                                                                                            monkeypatch):
    """Database.read(point=True): the statements run on the event loop's thread and see the snapshot the
    first took, whatever commits meanwhile; the next read sees the commit."""
    import threading

    from gateway.db import sqlite_driver

    db = await Database.open(database_url("", str(tmp_path / "point.sqlite3")))
    try:
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        await db.execute("INSERT INTO t VALUES ('a', 1)")
        threads: list[int] = []
        real_run = sqlite_driver._run

        def run(*args):
            threads.append(threading.get_ident())
            return real_run(*args)

        monkeypatch.setattr(sqlite_driver, "_run", run)
        async with db.read(point=True) as conn:
            assert (await conn.exec_driver_sql("SELECT v FROM t WHERE k = 'a'")).scalar() == 1
            await db.execute("UPDATE t SET v = 2 WHERE k = 'a'")  # another connection commits
            assert (await conn.exec_driver_sql("SELECT v FROM t WHERE k = 'a'")).scalar() == 1
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 1
        on_loop = threading.get_ident()
        # The point read's three statements here (the first too: no lock to wait for); the update between.
        assert threads[0] == threads[-2] == threads[-1] == on_loop, threads
        assert await db.fetchval("SELECT v FROM t WHERE k = 'a'") == 2
    finally:
        await db.close()


async def test_a_sqlite_statement_is_one_hand_off_to_its_connections_thread(tmp_path, monkeypatch):
    """gateway/db/sqlite_driver.py: executing, fetching and closing a cursor are one hand-off to the
    connection's thread (aiosqlite took four), a transaction's BEGIN goes with its first statement, a write
    transaction takes none from its BEGIN IMMEDIATE to its COMMIT (gateway/db/sqlite_driver.py's write_here); rows,
    row counts and SQLite's own errors come back as the dialect expects them, and a hand-off's work runs off the
    event loop's thread."""
    import threading

    from gateway.db import sqlite_driver

    db = await Database.open(database_url("", str(tmp_path / "one-hop.sqlite3")))
    hops: list[str] = []
    real_hop = sqlite_driver.Connection.hop

    async def counted(self, call, *args):
        hops.append(getattr(call, "__name__", repr(call)))
        return await real_hop(self, call, *args)

    monkeypatch.setattr(sqlite_driver.Connection, "hop", counted)
    try:
        assert await db.fetchval("SELECT 41 + 1") == 42
        assert hops == ["_run"], hops  # a statement alone: SQLite's own transaction, no BEGIN, nothing to end
        hops.clear()
        async with db.read(alone=True, point=True) as conn:
            assert (await conn.exec_driver_sql("SELECT 41 + 2")).scalar() == 43
            assert not (await conn.get_raw_connection()).driver_connection.sqlite.in_transaction
        assert hops == [], hops  # a point lookup alone: on the loop, and still no transaction
        assert await db.fetchval("SELECT 41 + 1") == 42
        assert hops == ["_run"], hops  # the next statement alone on that connection is no lookup of its own
        hops.clear()
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
            assert (await conn.exec_driver_sql("SELECT 2")).scalar() == 2
            read = (await conn.get_raw_connection()).driver_connection.sqlite
            assert read.in_transaction
        assert hops == ["_run", "_run"], hops  # the read's BEGIN with its first SELECT; its end on the loop
        assert not read.in_transaction  # ended all the same: its snapshot is let go
        hops.clear()
        async with db.read(point=True) as conn:
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
            assert (await conn.exec_driver_sql("SELECT 2")).scalar() == 2
            assert (await conn.exec_driver_sql("SELECT 3")).scalar() == 3
        assert hops == [], hops  # point lookups: all on the loop, the first taking the snapshot
        hops.clear()
        async with db.read() as conn:  # the next read on the (pooled) connection is not one of them
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
            assert (await conn.exec_driver_sql("SELECT 2")).scalar() == 2
        assert hops == ["_run", "_run"], hops
        hops.clear()
        async with db.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            changed = await conn.exec_driver_sql("INSERT INTO t VALUES ('a', 1), ('b', 2)")
            assert changed.rowcount == 2
        # BEGIN IMMEDIATE, both statements and the COMMIT on the loop: the writer's lock was free
        assert hops == [], hops
        hops.clear()
        async with db.transaction():
            pass
        assert hops == [], hops  # nothing began: nothing to end
        with pytest.raises(IntegrityError):
            await db.execute("INSERT INTO t VALUES ('a', 3)")
        assert [row["v"] for row in await db.fetchall("SELECT v FROM t ORDER BY k")] == [1, 2]
        hops.clear()
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES ('c', 3)")
                raise RuntimeError("undo it")
        assert hops == [], hops  # a write transaction's rollback: on the loop too
        assert [row["v"] for row in await db.fetchall("SELECT v FROM t ORDER BY k")] == [1, 2]
        on_loop = threading.get_ident()
        seen: list[int] = []
        async with db.read() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.hop(lambda: seen.append(threading.get_ident()))
        assert seen and seen[0] != on_loop
    finally:
        await db.close()


async def test_a_sqlite_write_waits_on_its_connections_thread_for_another_processs_writer(tmp_path, monkeypatch):
    """gateway/db/sqlite_driver.py's write_here: while another connection (another process: the admin command, a
    migration) holds SQLite's writer lock, a write transaction's BEGIN IMMEDIATE does not wait on the event loop
    (which goes on serving) but on its connection's thread, and goes through once the lock is let go."""
    from gateway.db import sqlite_driver

    path = tmp_path / "busy.sqlite3"
    db = await Database.open(database_url("", str(path)))
    hopped = asyncio.Event()
    real_hop = sqlite_driver.Connection.hop

    async def watched(self, call, *args):
        if args and args[-1] == sqlite_driver.BEGIN_WRITE:
            hopped.set()
        return await real_hop(self, call, *args)

    monkeypatch.setattr(sqlite_driver.Connection, "hop", watched)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES ('theirs')")
        write = asyncio.create_task(db.execute("INSERT INTO t VALUES ('ours')"))
        await hopped.wait()  # waiting on the connection's thread, the loop free: a read goes through meanwhile
        assert await db.fetchval("SELECT count(*) FROM t") == 0 and not write.done()
        other.execute("COMMIT")
        assert await write == 1
        assert sorted(row["k"] for row in await db.fetchall("SELECT k FROM t")) == ["ours", "theirs"]
    finally:
        other.close()
        await db.close()


async def test_a_sqlite_point_lookup_that_would_wait_for_a_lock_waits_on_its_connections_thread(tmp_path,
                                                                                             monkeypatch):
    """gateway/db/sqlite_driver.py's first_lookup: a point read's first statement runs on the event loop unless
    SQLite answers busy there (busy_timeout 0; made to here, as a WAL read is busy only while another connection
    recovers or restarts the WAL); then it runs again on the connection's thread, in the transaction begun."""
    import threading

    from gateway.db import sqlite_driver

    db = await Database.open(database_url("", str(tmp_path / "busy-read.sqlite3")))
    real_run = sqlite_driver._run
    busy_once: list[int] = []
    threads: list[int] = []

    def run(conn, sql, *args):
        threads.append(threading.get_ident())
        if sql.startswith("SELECT k") and not busy_once:
            busy_once.append(1)
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite_driver.SQLITE_BUSY  # type: ignore[attr-defined]
            raise busy
        return real_run(conn, sql, *args)

    try:
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        await db.execute("INSERT INTO t VALUES ('a')")
        monkeypatch.setattr(sqlite_driver, "_run", run)
        async with db.read(point=True) as conn:
            assert (await conn.exec_driver_sql("SELECT k FROM t")).scalar() == "a"
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 1
        on_loop = threading.get_ident()
        assert threads[0] == on_loop and threads[1] != on_loop and threads[2] == on_loop, threads
    finally:
        await db.close()


async def test_sqlite_checkpoints_run_on_a_thread_of_their_own_every_so_many_writes(tmp_path, monkeypatch):
    """gateway/db/sqlite_driver.py's Checkpointer: no commit checkpoints the WAL (the database file alone lacks
    what was committed) until CHECKPOINT_EVERY write transactions have committed; then a checkpoint moves it
    into the database file."""
    from gateway.db import sqlite_driver

    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY", 3)
    checkpoints: list[int] = []
    real_checkpoint = sqlite_driver.Checkpointer.checkpoint

    def counted(self):
        checkpoints.append(1)
        return real_checkpoint(self)

    monkeypatch.setattr(sqlite_driver.Checkpointer, "checkpoint", counted)
    path = tmp_path / "wal.sqlite3"
    db = await Database.open(database_url("", str(path)), migrate=False)

    def in_the_file_alone() -> list[str]:
        """The table's rows as the database file holds them, without its WAL (a copy of the file alone)."""
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as conn:
            try:
                return [k for (k,) in conn.execute("SELECT k FROM t ORDER BY k")]
            except sqlite3.OperationalError:  # no such table
                return []

    try:
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        await db.execute("INSERT INTO t VALUES ('a')")
        assert checkpoints == [] and in_the_file_alone() == []
        await db.execute("INSERT INTO t VALUES ('b')")  # the third write transaction
        assert len(checkpoints) == 1
        await db._checkpointer._running  # type: ignore[union-attr]  # a task of its own: the commit did not wait
        assert in_the_file_alone() == ["a", "b"]
    finally:
        await db.close()


async def test_plain_reads_give_sqlalchemys_rows_in_the_connections_transaction(core, memory_store):
    """gateway/db/plain.py, each engine: every Plain read gives the rows SQLAlchemy gives for its statement (names,
    values, statuses as members), begins the transaction SQLAlchemy would begin and is counted as a statement
    of it, sees what its transaction wrote before, and raises the driver's errors as SQLAlchemy's."""
    from sqlalchemy import Column, MetaData, Table, Text, select
    from sqlalchemy.exc import DBAPIError

    from gateway.db import files as files_db, nodes as nodes_db, shares as shares_db, tokens as tokens_db
    from gateway.db import uploads as uploads_db
    from gateway.db.engine import fetch
    from gateway.db.plain import Plain
    from protocol.paths import name_key
    from protocol.states import FileStatus
    from tests.core_fixtures import claim_for, new_user, uploaded

    db = core.db
    owner, reader = await new_user(core, "plainowner"), await new_user(core, "plainreader")
    done = await uploaded(core, memory_store, owner, b"kept whole", "done.txt")
    await core.sharing.share(owner, done, ["plainreader"])
    going, _ = await core.uploads.start(owner, claim_for(secrets.token_bytes(3 * 1024 * 1024), "going.bin"))
    session = await uploads_db.get_upload(db, going)
    fingerprint = (await files_db.get_file(db, done))["fingerprint"]
    reads = [
        (uploads_db.UPLOAD_BY_ID, {"file_id": going}),
        (uploads_db.RESUMABLE, {"owner_id": owner, "parent_id": session["parent_id"], "name_key": name_key("going.bin"),
                                "fingerprint": session["fingerprint"]}),
        (nodes_db.LIVE_CHILD, {"owner_id": owner, "parent_id": session["parent_id"], "name_key": name_key("done.txt")}),
        (files_db.CHUNKS_OF, {"file_id": going}),
        (files_db.FILE_BY_ID, {"file_id": done}),
        (files_db.FILE_BY_ID, {"file_id": "no-such-file"}),
        (files_db.VERIFIED_CONTENT, {"owner_id": owner, "fingerprint": fingerprint}),
        (files_db.LIMITS_QUERY, {"owner_id": owner}),
        (shares_db.READERS, {"file_id": done}),
        (tokens_db.TOKEN_FACTS, {"user_id": owner, "now": "2000-01-01T00:00:00.000000Z"}),
    ]
    async with db.read() as conn:
        for plain, params in reads:
            theirs = [dict(row._mapping) for row in await conn.execute(plain.statement, params)]
            assert bool(theirs) == (params.get("file_id") != "no-such-file"), plain.statement  # rows to compare
            assert await plain.rows(conn, params) == theirs, plain.statement
            assert [type(v) for row in await plain.rows(conn, params) for v in row.values()] == \
                   [type(v) for row in theirs for v in row.values()]
    assert (await files_db.get_file(db, done))["status"] is FileStatus.UPLOADED

    # As a read's first statement: the transaction begins (counted once), the statement is counted.
    before = (db.work.statements, db.work.transactions)
    async with db.read() as conn:
        assert await files_db.get_chunks(conn, going) and conn.in_transaction()
        assert await uploads_db.get_upload(conn, going)
    assert (db.work.statements - before[0], db.work.transactions - before[1]) == (2, 1)

    # Inside a write transaction: what it wrote before is read; rolled back, it is gone.
    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        async with db.transaction() as conn:
            await conn.exec_driver_sql(f"DELETE FROM shares WHERE file_id = '{done}'")
            assert await shares_db.readers(conn, done) == []
            raise Undo
    assert await shares_db.readers(db, done) == [reader]

    # The driver's errors as SQLAlchemy's: a read of a table that is gone.
    gone = Table("plain_gone", MetaData(), Column("k", Text))
    async with db.transaction() as conn:
        await conn.run_sync(gone.create)
    async with db.transaction() as conn:
        await conn.run_sync(gone.drop)
    with pytest.raises(DBAPIError) as raised:
        await fetch(db, Plain(select(gone.c.k)))
    assert raised.value.orig is not None
    assert await fetch(db, Plain(select(files_db.files.c.id).where(files_db.files.c.id == done))) == [{"id": done}]


async def test_plain_writes_return_count_and_run_many_as_sqlalchemy_does(core):
    """gateway/db/plain.py's writes, each engine: an INSERT ... RETURNING gives its rows, an UPDATE the rows it
    changed, executemany every parameter set, all in the connection's transaction (a rollback undoes them) and
    counted as statements; a constraint's error is SQLAlchemy's IntegrityError."""
    from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text, bindparam, insert, select, update

    from gateway.db.plain import Plain

    db = core.db
    table = Table("plain_writes", MetaData(), Column("k", Text, primary_key=True), Column("v", Integer),
                  Column("n", BigInteger, server_default="7"))
    async with db.transaction() as conn:
        await conn.run_sync(table.create)
    add = Plain(insert(table).returning(table.c.k, table.c.n), keys=("k", "v"))
    add_many = Plain(insert(table), keys=("k", "v"))
    bump = Plain(update(table).where(table.c.v >= bindparam("least")).values(v=table.c.v + 1))
    before = db.work.statements
    async with db.transaction() as conn:
        assert await add.rows(conn, {"k": "a", "v": 1}) == [{"k": "a", "n": 7}]  # the server's default came back
        await add_many.run_many(conn, [{"k": "b", "v": 2}, {"k": "c", "v": 3}])
        assert await bump.count(conn, {"least": 2}) == 2
    assert db.work.statements - before == 3
    rows = await db.fetchall(select(table.c.k, table.c.v).order_by(table.c.k))
    assert [(row["k"], row["v"]) for row in rows] == [("a", 1), ("b", 3), ("c", 4)]
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await add_many.run_many(conn, [{"k": "d", "v": 5}])
            await add.rows(conn, {"k": "a", "v": 9})  # taken: the whole transaction rolls back
    assert await db.fetchval(select(table.c.v).where(table.c.k == "d")) is None
