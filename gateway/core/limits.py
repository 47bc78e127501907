"""Limits per user: a storage quota, a cap on files and one on uploads in progress (contract v1.1
"Limits and quotas").

``used_bytes`` is the sizes of the user's ``uploaded`` and ``uploading``
files (versions and the trash too): an upload counts from its start, so
starting many large uploads uses up the quota before a byte moves. It is a
counter on the user's row (revision 0013), changed in the transaction of every
change to their files (gateway/db/files.py), so a check reads one row instead
of summing all their files. The quota is ``users.quota_bytes`` when the
operator set one for the user, else ``GATEWAY_USER_QUOTA_BYTES``; 0 is
unlimited (answered as ``quota_bytes: null``).

The cap on files (``GATEWAY_MAX_FILES_PER_USER``) counts every file row the
user has, whatever its size or status: empty files cost no quota, and
neither do failed uploads, but each is a row that listings, the usage query
and the database carry. Over it, a new file is refused as over a quota is
(403 ``quota_exceeded``: waiting does not help, deleting files does).

Checked atomically: :meth:`Limits.check_start` runs inside the transaction
that inserts the file, after locking the user's row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` writer lock already
serialises every write), so two concurrent starts never both take the last
byte, the last file or the last slot, whichever gateways they reach.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config import Config
from gateway.core.errors import QuotaExceeded, TooManyFiles, TooManyUploads, UnknownUser
from gateway.db import Database, Row
from gateway.db import files as files_db
from gateway.db import users as users_db

# Seconds a client is asked to wait when all its upload slots are taken: an upload
# in progress frees its slot when it completes, fails or is deleted.
SLOT_RETRY_AFTER = 30


@dataclass(frozen=True)
class Room:
    """A user's quota as one check found it: what a file being received may still grow to; and their name
    from the same row (a new file's ``uploaded_by``: the answer to an upload is made without reading it again)."""

    quota_bytes: int | None  # None: unlimited
    used_bytes: int
    owner_name: str

    def check(self, file_size: int) -> None:
        """QuotaExceeded if a file of ``file_size`` bytes does not fit."""
        if self.quota_bytes is not None and self.used_bytes + file_size > self.quota_bytes:
            raise QuotaExceeded(self.quota_bytes, self.used_bytes, file_size)


class Limits:
    def __init__(self, config: Config, db: Database):
        self.config = config
        self.db = db

    def quota_of(self, user_quota: int | None) -> int | None:
        """The quota in bytes from the user's own setting (None: the gateway's); None: unlimited."""
        quota = self.config.user_quota_bytes if user_quota is None else user_quota
        return quota or None

    async def usage(self, user_id: int) -> Row:
        """``{quota_bytes, used_bytes}`` as GET /dropbox/v1/users/me answers them."""
        found = await files_db.limits_of(self.db, user_id)
        if found is None:
            raise UnknownUser()
        return {"quota_bytes": self.quota_of(found["quota_bytes"]), "used_bytes": found["used_bytes"]}

    async def check_start(self, conn: AsyncConnection, user_id: int, file_size: int, *, uploading: bool) -> Room:
        """Inside the transaction that inserts the file: lock the user's row, then refuse
        (QuotaExceeded, TooManyFiles, TooManyUploads) if the file does not fit. The lock holds until commit."""
        await users_db.lock_user(conn, user_id)
        return await self._check(conn, user_id, file_size, uploading=uploading)

    async def check_locked(self, conn: AsyncConnection, user_id: int, file_size: int, *, files: int = 1) -> Room:
        """The same refusal for a file that needs no upload slot, inside a transaction that already holds
        the lock on the user's row (gateway/core/namespace.py's ``changing``). ``files``: how many files
        ``file_size`` bytes are (a batch of small files is checked as a whole)."""
        return await self._check(conn, user_id, file_size, uploading=False, files=files)

    async def precheck(self, user_id: int, file_size: int, *, uploading: bool,
                       on: AsyncConnection | None = None, files: int = 1) -> Room:
        """The same refusal, early and without a lock: before any work in the store, or before the
        bytes of an inline upload are read. The answer says how large the file may still grow.
        ``on``: a read the caller holds (one read for the lookups and this check, not two)."""
        return await self._check(on or self.db, user_id, file_size, uploading=uploading, files=files)

    async def _check(self, on: Database | AsyncConnection, user_id: int, file_size: int, *, uploading: bool,
                     files: int = 1) -> Room:
        usage = await files_db.limits_of(on, user_id)  # the user's quota setting and usage, one statement
        if usage is None:
            raise UnknownUser()
        # The quotas first: waiting does not help with them, so the client should hear of them first.
        room = Room(self.quota_of(usage["quota_bytes"]), usage["used_bytes"], usage["username"])
        room.check(file_size)
        most_files = self.config.max_files_per_user
        if most_files and usage["files"] + files > most_files:
            raise TooManyFiles(most_files, usage["files"])
        cap = self.config.max_uploads_in_progress
        if uploading and cap and usage["uploading"] >= cap:
            raise TooManyUploads(cap, SLOT_RETRY_AFTER)
        return room
