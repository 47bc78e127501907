"""The metadata database: migrations, WAL, foreign keys, on a real SQLite file."""
from __future__ import annotations

import sqlite3

from gateway.db import Database, migrations


def test_migrations_are_numbered_one_after_another():
    assert [version for version, _, _ in migrations()] == list(range(1, len(migrations()) + 1))


async def test_an_older_database_is_migrated_forward_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    version, _, first = migrations()[0]
    with sqlite3.connect(path) as conn:  # a database as the first release left it
        conn.executescript(first + f"\nPRAGMA user_version = {version};")
        conn.execute("INSERT INTO users (username, email, password_hash, created_at) VALUES ('old', 'o@x.io', 'h', 't')")
    db = await Database(str(path)).open()
    try:
        assert await db.fetchval("PRAGMA user_version") == len(migrations())
        assert await db.fetchval("SELECT username FROM users") == "old"
        assert await db.fetchval("PRAGMA journal_mode") == "wal"
        assert await db.fetchval("PRAGMA foreign_keys") == 1
        indexes = {row["name"] for row in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "shares_by_user_newest" in indexes
    finally:
        await db.close()
    reopened = await Database(str(path)).open()  # nothing to apply twice
    await reopened.close()
