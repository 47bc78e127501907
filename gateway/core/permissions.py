"""Who may see a file, answered from the cache (gateway/cache.py) whenever it can be, never stale.

One cache entry per file, under ``file:<file_id>``::

    {"v": 2, "owner_id": int, "readers": [user_id, ...],   # the permission facts
     "row": dict | None, "chunks": list[dict] | None}       # the metadata, when it cannot change

Entries are plain JSON values (the Redis cache stores JSON, never pickles).
``owner_id`` never changes; ``readers`` (the users the file is shared with)
changes only through sharing, unsharing, deleting, trashing and replacing (the
shares go to the new file). A trashed file has no entry: it is no one's to
read. The row holds the file's place (name, folder, versions): a rename, a
move, a trash or a replacement invalidates it (gateway/core/tree.py,
gateway/core/uploads.py). ``row`` and ``chunks``
are kept only for a file in a final state (``uploaded`` or ``failed``): an
upload in progress changes its chunks and its store upload id as the store
reports parts, so for those the entry answers the permission question only
and the row is read fresh from the database.

What invalidates the entry (deletes the key, always *after* the database
commit): sharing and unsharing (gateway/core/sharing.py), deleting
(gateway/core/deletion.py), and every status change of an upload
(gateway/core/uploads.py). A new upload needs nothing: its file id is new, and
a missing file is never cached (lookups of unknown ids go to the database
every time).

Filling the cache cannot bring a stale answer back, thanks to leases (gateway/core/cached.py, as in
memcached's leases): a lookup that misses first ``add``s a unique lease token
under the key (add only succeeds on an empty key), reads the database, then
swaps the lease for the entry with a compare-and-set that succeeds only if the
key still holds *its* lease. An invalidation that lands between the database
read and the swap deletes the lease, so the swap fails and the (possibly
stale) read is used for that one request only, never cached. Lookups that find
someone else's lease read the database and leave the cache alone.

With ``memory://`` the cache is per process, so invalidations reach only the
process that made the change: several gateway processes need ``redis://``.
When the cache fails (Redis down), lookups fall back to the database, and an
invalidation that failed is owed until it lands: gateway/core/cached.py says
why no stale permission is served once the cache is back.
"""
from __future__ import annotations

import re
from typing import Any, TypeGuard

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.core.cached import ReadThrough
from gateway.core.errors import FileNotFound
from gateway.core.metrics import Metrics
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db.files import ChunkRow, FileFacts, FileRow
from gateway.db import nodes as nodes_db
from gateway.db import shares as shares_db
from gateway.db import users as users_db
from protocol.states import FINAL_FILE_STATUSES

ENTRY_VERSION = 3  # 3: rows carry the file's place in the tree


# What a file id looks like (gateway/core/uploads.py's new_file_id): anything else names no file, and
# is never sent to the database (PostgreSQL refuses text with NUL in it).
FILE_ID_PATTERN = "[0-9a-f]{32}"
FILE_ID = re.compile(FILE_ID_PATTERN)


async def owned_for_change(conn: AsyncConnection, user_id: int, file_id: str) -> FileFacts:
    """The file's facts if ``user_id`` owns it, read (and locked) inside the write transaction ``conn``;
    FileNotFound otherwise (a trashed file too). Changes decide on this, never on the cache.

    The owner's row is locked first, as every change to the owner's tree locks it
    (gateway/core/namespace.py): a share or a link made while the file goes to the trash either
    commits before the trash (which then ends it) or sees the file trashed, never lands after it.
    """
    if not FILE_ID.fullmatch(file_id):
        raise FileNotFound(file_id, own=True)
    await users_db.lock_user(conn, user_id)
    row = await files_db.file_for_change(conn, file_id)
    if row is None or row["owner_id"] != user_id or row["deleted_at"] is not None:
        raise FileNotFound(file_id, own=True)
    return row


def cache_key(file_id: str) -> str:
    return f"file:{file_id}"


def may_read(entry: dict | None, user_id: int) -> TypeGuard[dict]:
    return entry is not None and (entry["owner_id"] == user_id or user_id in entry["readers"])


def owns(entry: dict | None, user_id: int) -> TypeGuard[dict]:
    return entry is not None and entry["owner_id"] == user_id


class Permissions:
    """``entries.cache`` None: caching is off, every lookup reads the database."""

    def __init__(self, db: Database, entries: ReadThrough, metrics: Metrics | None = None):
        self.db = db
        self.entries = entries
        self.cache = entries.cache
        self.metrics = metrics or Metrics()

    async def _load(self, file_id: str, fresh: dict[str, Any]) -> dict | None:
        """The entry for ``file_id`` from the database, read in one snapshot; None when there is no such file.

        ``fresh`` gets the row and chunks just read, whatever the file's status: the caller whose load
        this was answers from them instead of reading them again. Only a final row goes into the entry
        (an upload's changes as it goes)."""
        async with self.db.read(point=True) as conn:  # by key: the file, its readers, its chunks (up to 5,120)
            row = await files_db.get_file(conn, file_id)
            if row is None or row["deleted_at"] is not None:
                return None  # a trashed file is no one's to read (contract v1.2, Trash)
            entry: dict[str, Any] = {
                "v": ENTRY_VERSION,
                "owner_id": row["owner_id"],
                "readers": await shares_db.readers(conn, file_id),
                "row": None,
                "chunks": None,
            }
            fresh["row"], fresh["chunks"] = row, await files_db.get_chunks(conn, file_id)
            if row["status"] in FINAL_FILE_STATUSES:
                entry["row"] = row
                entry["chunks"] = fresh["chunks"]
        return entry

    async def file_access(self, file_id: str, fresh: dict[str, Any] | None = None) -> dict | None:
        """The cache entry of ``file_id`` (see the module docstring); None when there is no such file.
        ``fresh``: see :meth:`_load`; left empty when the cache answered."""
        if not FILE_ID.fullmatch(file_id):
            return None
        into = fresh if fresh is not None else {}
        return await self.entries.get(cache_key(file_id), ENTRY_VERSION, lambda: self._load(file_id, into),
                                      on_lookup=self.metrics.cache_lookup)

    async def invalidate(self, file_id: str) -> None:
        """Forget what the cache knows of ``file_id``; call it after the change is committed."""
        await self.entries.forget(cache_key(file_id))

    async def _current(self, entry: dict, file_id: str, fresh: dict[str, Any]) -> tuple[FileRow | None, list[ChunkRow] | None]:
        """(row, chunks or None): cached for a final state, read fresh for an upload in progress (or just
        read by this call's own load: ``fresh``)."""
        if entry["row"] is not None:
            # The row a copy (the memory cache hands out the very object it stores), statuses members again.
            return files_db.file_row(entry["row"]), files_db.chunk_rows(entry["chunks"])
        if fresh:
            return fresh["row"], fresh["chunks"]
        return await files_db.get_file(self.db, file_id), None

    async def readable(self, user_id: int, file_id: str) -> tuple[FileRow, list[ChunkRow] | None]:
        """(row, chunks or None) if ``user_id`` owns the file or it is shared with them, or it is a version
        of a file they may read; FileNotFound otherwise."""
        fresh: dict[str, Any] = {}
        entry = await self.file_access(file_id, fresh)
        if entry is not None and (may_read(entry, user_id) or await self._reads_current(entry, user_id, file_id)):
            row, chunks = await self._current(entry, file_id, fresh)
            if row is not None:
                return row, chunks
        raise FileNotFound(file_id)

    async def _reads_current(self, entry: dict | None, user_id: int, file_id: str) -> bool:
        """Whether ``file_id`` is a version and ``user_id`` may read the file now current in its place:
        a version is read by whoever may read its file (its shares went to the file that replaced it).
        A version's row is final, so it is in the entry."""
        if entry is None or entry["row"] is None or entry["row"].get("replaced_by") is None:
            return False
        current = await nodes_db.current_of(self.db, file_id)
        return current != file_id and may_read(await self.file_access(current), user_id)

    async def owned(self, user_id: int, file_id: str) -> tuple[FileRow, list[ChunkRow] | None]:
        """(row, chunks or None) if ``user_id`` owns the file; FileNotFound otherwise, whether or not it exists."""
        fresh: dict[str, Any] = {}
        entry = await self.file_access(file_id, fresh)
        if owns(entry, user_id):
            row, chunks = await self._current(entry, file_id, fresh)
            if row is not None:
                return row, chunks
        raise FileNotFound(file_id, own=True)
