"""The sync index: the three trees in one small SQLite database outside the synced folder.

What is stored are observations, never work to do:

- ``remote``: the user's whole tree as the change journal last described it,
  with the journal's cursor in ``meta`` (written in the same transaction as the
  page of changes it follows, so the two never disagree after a crash);
- ``local``: the synced folder as last scanned, with each file's size, mtime
  and fingerprint (a file whose size, mtime and inode did not change is not
  read again);
- ``synced``: the last state both sides agreed on, with each node's remote
  and local key, and ``done``: the operations carried out, each written in the
  transaction that updated the synced tree for it.

The schema refuses states the planner must never see, so a bug shows up as an
error at the write that would have made it, not as a wrong plan later: every
node but a root has a parent, that parent is a folder of the same tree, no
folder is inside itself, two names in one folder never compare equal
(``protocol.paths.name_key``), a file has a fingerprint and a folder none, and
a synced folder cannot be forgotten while it still holds something.

The journal says a move is ``deleted`` followed by the object at its new place:
a ``deleted`` node is first set aside under the ``~limbo`` pseudo-folder with
everything it holds, and only what is still there when the journal has been
read to its end (``has_more`` false) is dropped. A new file that takes the name
of another file in its folder replaced it (``overwrite``, ``update``, restore):
the replaced one goes to limbo the same way.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.sync.plan import Record
from client.sync.trees import LOCAL_ROOT, SYNCED_ROOT, Entry, Synced
from protocol.paths import name_key

SCHEMA_VERSION = "1"
REMOTE_ROOT = "root"  # the contract's id of every user's root folder
LIMBO = "~limbo"  # where the journal's deleted nodes wait for their new place, or for the end of the read
DONE_KEPT = 1000  # rows of the `done` log kept (it is for people, not for the planner)


class InvalidTree(Exception):
    """The index refused a write that would have made an invalid tree (a bug, or a journal that broke its rules)."""


def _tree_table(name: str, key: str, key_type: str, root_check: str, extra: str, on_delete: str) -> str:
    """One tree's table: a node per row, its parent a folder of the same table, sibling names unique."""
    return f"""
    CREATE TABLE {name} (
        {key} {key_type} PRIMARY KEY,
        parent {key_type} REFERENCES {name}({key}) {on_delete},
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        folder INTEGER NOT NULL CHECK (folder IN (0, 1)),
        fingerprint TEXT,
        size INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
        {extra}
        CHECK ({root_check}),
        CHECK ((folder = 1) = (fingerprint IS NULL))
    ) STRICT;
    CREATE INDEX {name}_children ON {name}(parent);
    CREATE TRIGGER {name}_parent_is_folder_insert BEFORE INSERT ON {name} WHEN NEW.parent IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, '{name}: a parent must be a folder')
        WHERE COALESCE((SELECT folder FROM {name} WHERE {key} = NEW.parent), 1) = 0;
    END;
    CREATE TRIGGER {name}_parent_is_folder_update BEFORE UPDATE OF parent ON {name} WHEN NEW.parent IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, '{name}: a parent must be a folder')
        WHERE COALESCE((SELECT folder FROM {name} WHERE {key} = NEW.parent), 1) = 0;
    END;
    CREATE TRIGGER {name}_folder_keeps_children BEFORE UPDATE OF folder ON {name} WHEN NEW.folder = 0
    BEGIN
        SELECT RAISE(ABORT, '{name}: a folder that holds something cannot become a file')
        WHERE EXISTS (SELECT 1 FROM {name} WHERE parent = NEW.{key});
    END;
    CREATE TRIGGER {name}_no_cycle BEFORE UPDATE OF parent ON {name} WHEN NEW.parent IS NOT NULL
    BEGIN
        SELECT RAISE(ABORT, '{name}: a folder cannot be moved into itself')
        WHERE EXISTS (
            WITH RECURSIVE up(k) AS (
                SELECT NEW.parent
                UNION ALL SELECT t.parent FROM {name} t JOIN up ON t.{key} = up.k WHERE t.parent IS NOT NULL
            )
            SELECT 1 FROM up WHERE k = NEW.{key}
        );
    END;
    """


SCHEMA = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    CREATE TABLE done (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        side TEXT,
        path TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    ) STRICT;
    """
    + _tree_table("remote", "id", "TEXT", f"(parent IS NULL) = (id IN ('{REMOTE_ROOT}', '{LIMBO}'))", "",
                  "ON DELETE CASCADE")
    + f"CREATE UNIQUE INDEX remote_names ON remote(parent, name_key) WHERE parent <> '{LIMBO}';"
    + _tree_table("local", "key", "TEXT", f"(parent IS NULL) = (key = '{LOCAL_ROOT}')",
                  "mtime_ns INTEGER NOT NULL DEFAULT 0, racy INTEGER NOT NULL DEFAULT 0,", "ON DELETE CASCADE")
    + "CREATE UNIQUE INDEX local_names ON local(parent, name_key);"
    # No cascade: a synced folder is forgotten only after what it held, so that nothing is dropped unseen.
    + _tree_table("synced", "nid", "INTEGER", f"(parent IS NULL) = (nid = {SYNCED_ROOT})",
                  "remote TEXT UNIQUE, local TEXT UNIQUE,", "")
    + "CREATE UNIQUE INDEX synced_names ON synced(parent, name_key);"
)


class Index:
    """The index of one synced folder. Every method is one transaction unless run inside :meth:`transaction`."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA journal_mode = WAL")
        # Commits are not flushed to the disk one by one (FULL cost 5.6 ms of fsync each here, on the event
        # loop, per file synced). A kill loses nothing either way (the WAL is in the OS); a power cut may lose
        # the last transactions, always a suffix of them: as if the client had been killed a moment earlier,
        # which the planner recovers from by design (observations are read again, done work is recorded).
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._depth = 0
        if not self._has_schema():
            self._create()

    def close(self) -> None:
        self.db.close()

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None

    def _create(self) -> None:
        with self.transaction():
            for statement in _statements(SCHEMA):
                self.db.execute(statement)
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self.db.execute("INSERT INTO remote (id, parent, name, name_key, folder) VALUES (?, NULL, '', '', 1)",
                            (REMOTE_ROOT,))
            self.db.execute("INSERT INTO remote (id, parent, name, name_key, folder) VALUES (?, NULL, '', '', 1)",
                            (LIMBO,))
            self.db.execute("INSERT INTO local (key, parent, name, name_key, folder) VALUES (?, NULL, '', '', 1)",
                            (LOCAL_ROOT,))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction (nested calls join the outer one); an invalid state rolls it all back."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except sqlite3.IntegrityError as exc:
            self.db.execute("ROLLBACK")
            raise InvalidTree(str(exc)) from exc
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- meta ----------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, value: str | None) -> None:
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           (key, value))

    # -- the remote tree -------------------------------------------------------------------------

    def apply_changes(self, changes: Iterable[Mapping[str, Any]], cursor: str | None, complete: bool,
                      first_of_listing: bool = False) -> None:
        """One page of the journal (contract v1.2, Changes) and the cursor after it, in one transaction.

        ``first_of_listing``: the page starts a listing of the whole tree (no cursor), which replaces
        what was known. ``complete``: ``has_more`` was false, so what is still in limbo is gone.
        """
        with self.transaction() as db:
            if first_of_listing:
                db.execute("DELETE FROM remote WHERE parent IS NOT NULL")
            for change in changes:
                self._apply_change(db, change)
            if complete:
                db.execute("DELETE FROM remote WHERE parent = ?", (LIMBO,))
            self.put("cursor", cursor)
            self.put("listing", None if complete else "1")

    def _apply_change(self, db: sqlite3.Connection, change: Mapping[str, Any]) -> None:
        kind = change.get("type")
        if kind == "deleted":
            node = str(change.get("id"))
            if node not in (REMOTE_ROOT, LIMBO):
                db.execute("UPDATE remote SET parent = ? WHERE id = ?", (LIMBO, node))
            return
        if kind not in ("file", "folder"):
            return  # a kind of change this client does not know: nothing it could act on
        if kind == "file" and change.get("status", "uploaded") != "uploaded":
            return
        node = str(change["folder_id"] if kind == "folder" else change["file_id"])
        if node in (REMOTE_ROOT, LIMBO):
            return
        parent = str(change.get("parent_id") or REMOTE_ROOT)
        name = str(change.get("name") or change.get("file_name") or "")
        key = name_key(name)
        folder = kind == "folder"
        fingerprint = None if folder else str(change["fingerprint"])
        size = 0 if folder else int(change.get("file_size") or 0)
        # Whatever else holds this name in that folder was replaced (or its own entry comes later).
        db.execute("UPDATE remote SET parent = ? WHERE parent = ? AND name_key = ? AND id <> ?",
                   (LIMBO, parent, key, node))
        known = db.execute("SELECT folder FROM remote WHERE id = ?", (node,)).fetchone()
        if known is not None and bool(known[0]) != folder:
            db.execute("DELETE FROM remote WHERE id = ?", (node,))
            known = None
        if known is None:
            db.execute("INSERT INTO remote (id, parent, name, name_key, folder, fingerprint, size) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (node, parent, name, key, int(folder), fingerprint, size))
        else:
            db.execute("UPDATE remote SET parent = ?, name = ?, name_key = ?, fingerprint = ?, size = ? WHERE id = ?",
                       (parent, name, key, fingerprint, size, node))

    def remote_tree(self, root: str) -> dict[str, Entry]:
        """The subtree under ``root`` (the synced remote folder), the root itself included as a parentless folder."""
        rows = self.db.execute(
            """WITH RECURSIVE below(id) AS (SELECT ? UNION ALL SELECT r.id FROM remote r JOIN below ON r.parent = below.id)
               SELECT r.id, r.parent, r.name, r.folder, r.fingerprint, r.size FROM remote r JOIN below USING (id)""",
            (root,),
        ).fetchall()
        return {node: Entry(None if node == root else parent, name, bool(folder), fingerprint, size)
                for node, parent, name, folder, fingerprint, size in rows}

    def has_remote(self, node: str) -> bool:
        row = self.db.execute("SELECT parent FROM remote WHERE id = ?", (node,)).fetchone()
        return row is not None and row[0] != LIMBO

    # -- the local tree --------------------------------------------------------------------------

    def replace_local(self, entries: Iterable[tuple[str, Entry, int]], racy: Iterable[str] = ()) -> None:
        """The local tree as just scanned: (key, entry, mtime_ns), parents before what they hold.

        ``racy``: files whose fingerprint and folders whose listing the next scan must not trust (see scan.RACY_NS).
        """
        racy = set(racy)
        with self.transaction() as db:
            db.execute("DELETE FROM local WHERE parent IS NOT NULL")
            db.executemany(
                "INSERT INTO local (key, parent, name, name_key, folder, fingerprint, size, mtime_ns, racy) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((key, e.parent, e.name, name_key(e.name), int(e.folder), e.fingerprint, e.size, mtime_ns,
                  int(key in racy)) for key, e, mtime_ns in entries),
            )

    def local_tree(self) -> dict[str, Entry]:
        rows = self.db.execute("SELECT key, parent, name, folder, fingerprint, size FROM local").fetchall()
        return {key: Entry(parent, name, bool(folder), fingerprint, size)
                for key, parent, name, folder, fingerprint, size in rows}

    def local_rows(self) -> dict[str, tuple[Entry, int, bool]]:
        """key -> (entry, mtime_ns, racy) of every node as last scanned but the top: what a partial scan starts from."""
        rows = self.db.execute("SELECT key, parent, name, folder, fingerprint, size, mtime_ns, racy FROM local "
                               "WHERE parent IS NOT NULL").fetchall()
        return {key: (Entry(parent, name, bool(folder), fingerprint, size), mtime_ns, bool(racy))
                for key, parent, name, folder, fingerprint, size, mtime_ns, racy in rows}

    def local_seen(self) -> dict[str, tuple[int, int, str]]:
        """key -> (size, mtime_ns, fingerprint) of every file exactly as the last scan saw it."""
        rows = self.db.execute("SELECT key, size, mtime_ns, fingerprint FROM local WHERE folder = 0").fetchall()
        return {key: (size, mtime_ns, fingerprint) for key, size, mtime_ns, fingerprint in rows}

    # -- the synced tree -------------------------------------------------------------------------

    def synced_tree(self) -> dict[int, Synced]:
        rows = self.db.execute("SELECT nid, parent, name, folder, fingerprint, size, remote, local FROM synced")
        return {nid: Synced(parent, name, bool(folder), fingerprint, size, remote, local)
                for nid, parent, name, folder, fingerprint, size, remote, local in rows}

    def set_roots(self, remote_root: str) -> None:
        """The synced tree's root: the remote folder being synced and the local folder, agreed from the start."""
        with self.transaction() as db:
            db.execute("INSERT INTO synced (nid, parent, name, name_key, folder, remote, local) "
                       "VALUES (?, NULL, '', '', 1, ?, ?) ON CONFLICT (nid) DO UPDATE SET remote = excluded.remote",
                       (SYNCED_ROOT, remote_root, LOCAL_ROOT))
            self.put("remote_root", remote_root)

    def put_synced(self, nid: int | None, **fields: Any) -> int:
        """Insert a synced node (``nid`` None) or change some of its fields; its nid.

        A remote or local key given here is taken from whatever other node still
        named it (that node's claim was stale: a reused inode, a released file).
        """
        with self.transaction() as db:
            for side in ("remote", "local"):
                if fields.get(side) is not None:
                    db.execute(f"UPDATE synced SET {side} = NULL WHERE {side} = ? AND nid IS NOT ?", (fields[side], nid))
            if "name" in fields:
                fields["name_key"] = name_key(fields["name"])
            if "folder" in fields:
                fields["folder"] = int(fields["folder"])
            if nid is None:
                columns = ", ".join(fields)
                marks = ", ".join("?" for _ in fields)
                cursor = db.execute(f"INSERT INTO synced ({columns}) VALUES ({marks})", tuple(fields.values()))
                return int(cursor.lastrowid or 0)
            if fields:
                assignments = ", ".join(f"{column} = ?" for column in fields)
                db.execute(f"UPDATE synced SET {assignments} WHERE nid = ?", (*fields.values(), nid))
            return nid

    def release(self, side: str, key: str) -> None:
        """No synced node names ``key`` on ``side`` any more (it belongs to a node not synced yet)."""
        assert side in ("remote", "local")
        with self.transaction() as db:
            db.execute(f"UPDATE synced SET {side} = NULL WHERE {side} = ?", (key,))

    def forget(self, nids: Iterable[int]) -> None:
        """Drop synced nodes, what they hold before themselves (the schema refuses it the other way round)."""
        gone = set(nids)
        if not gone:
            return
        with self.transaction() as db:
            parents = dict(db.execute("SELECT nid, parent FROM synced").fetchall())

            def depth(nid: int | None) -> int:
                count = 0
                while nid is not None:
                    nid, count = parents.get(nid), count + 1
                return count

            db.executemany("DELETE FROM synced WHERE nid = ?", [(n,) for n in sorted(gone, key=lambda n: -depth(n))])

    def write(self, record: Record) -> None:
        """What an operation done changes in the synced tree (plan.record_for), in one transaction."""
        with self.transaction():
            if record.release is not None:
                side, key = record.release
                self.release(side.value, key)
            if record.forget:
                self.forget(record.forget)
            if record.put is not None:
                self.put_synced(record.nid, **record.put)

    def log_done(self, action: str, side: str | None, path: str, detail: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO done (at, action, side, path, detail) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), action, side, path, detail))
            db.execute("DELETE FROM done WHERE seq <= (SELECT MAX(seq) FROM done) - ?", (DONE_KEPT,))

    def done(self) -> list[tuple[str, str | None, str, str]]:
        return [tuple(row) for row in self.db.execute("SELECT action, side, path, detail FROM done ORDER BY seq")]


def _statements(script: str) -> list[str]:
    """The statements of a script, triggers (whose bodies hold semicolons) kept whole."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    return statements
