"""Deleting a file, and its content once no file of anyone refers to it."""
from __future__ import annotations

import structlog

from gateway.core.clock import Clock, stamp_ago, stamp_now, system_clock
from gateway.core.content import content_key, page_key, thumbnail_key
from gateway.core.leases import Leases
from gateway.core.permissions import Permissions, owned_for_change
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db import thumbnails as thumbnails_db
from protocol.fingerprints import EMPTY_FINGERPRINT
from protocol.states import FileStatus
from storage import ObjectStore, StoreError

log = structlog.get_logger("gateway.files")
# How long a removal of content is remembered (revision 0011: what a small file's upload checks).
DROPS_KEPT_SECONDS = 24 * 3600


class Deletion:
    def __init__(self, db: Database, store: ObjectStore, permissions: Permissions, leases: Leases,
                 clock: Clock = system_clock):
        self.db = db
        self.store = store
        self.permissions = permissions
        self.leases = leases
        self.clock = clock

    async def delete(self, user_id: int, file_id: str) -> bool:
        """Delete the user's upload in progress (or failed one), which is in no tree yet; its chunks and
        shares go with it. FileNotFound for anyone but the owner. False when the file turned out to be
        in the tree (it completed meanwhile): such a file goes to the trash, and is deleted for good,
        through gateway/core/tree.py instead.

        The content object ``content/<fingerprint>`` is shared by every file with
        that fingerprint (deduplication), so it is removed only when no file of
        anyone refers to it any more: no row with the fingerprint in ``uploading``
        (an upload under way will write the object) or ``uploaded`` (a file serves
        it). ``failed`` rows keep nothing.
        """
        await self.permissions.owned(user_id, file_id)
        # The lease waits for a complete/resume of this very upload, in any gateway, so it
        # cannot finish (and write the object) after its row is gone.
        async with self.leases.hold(file_id):
            async with self.db.transaction() as conn:
                row = await owned_for_change(conn, user_id, file_id)
                if row["status"] == FileStatus.UPLOADED:
                    return False
                await self.db.lock_content(conn, row["fingerprint"])
                await files_db.delete_file(conn, file_id)
                # Decided in the transaction that deletes the row: no other write can slip in between.
                still_referenced = await files_db.content_referenced(conn, row["fingerprint"])
            await self.permissions.invalidate(file_id)
            log.info("file_deleted", file_id=file_id, status=row["status"], content_still_referenced=still_referenced)
            if row["status"] == FileStatus.UPLOADING and row["upload_id"]:
                # Only this row's own multipart upload: upload ids are unique per session (uploads.upload_id
                # UNIQUE) and each upload of the same content, by anyone, has a multipart upload of its
                # own on the shared key; aborting one leaves the others and the finished object alone.
                try:
                    await self.store.abort_multipart(content_key(row["fingerprint"]), row["upload_id"])
                except StoreError as exc:
                    log.warning("abort_after_delete_failed", file_id=file_id, error=str(exc))
        if not still_referenced:
            await self.drop_unreferenced_content(row["fingerprint"])
        return True

    async def drop_unreferenced_content(self, fingerprint: str) -> bool:
        """Remove ``content/<fingerprint>`` from the store if still no file refers to it.

        Why a second check, under the content lock, and the store delete inside it.
        The delete transaction found no reference and committed; the object is
        removed after that commit (never before: a failed commit would leave a row
        without content). Between the commit and the store delete, a new upload of
        the same content may start:

        * A chunked upload (anyone's) starts a multipart upload, then inserts its
          ``uploading`` row. If that insert committed before this check, the row is
          seen and the object kept. Otherwise the insert waits for this
          transaction: inserting a file takes the same content lock
          (``Database.lock_content``: SQLite's writer lock, across processes
          too, or a PostgreSQL advisory lock on the fingerprint), so the
          upload's row, and hence its completion (which needs the row), comes
          after the store delete: CompleteMultipartUpload then writes the
          object anew from the upload's own parts, which deleting the object
          never touches. If the delete ran after the commit without this lock,
          a quick upload could complete in between and lose its object.
        * The empty file's object is never removed: it costs nothing, and
          ``Uploads._store_empty_content`` checks for it before inserting its
          row, a gap this lock cannot cover.
        * Deduplication: a same-user copy is inserted only if, in the inserting
          transaction (under the content lock), the user still has an
          ``uploaded`` file with the fingerprint, so it either lands before this
          check (and keeps the object) or sees the copy gone and uploads the bytes.
        * A small file stored whole (``Uploads.upload_inline``) is PUT before the
          transaction that records it, so a removal may fall between the two. This
          transaction records the removal (``content_drops``); the upload's
          transaction, under the same lock, finds the record and stores the bytes
          again if they are gone, before its file is ``uploaded``.

        The content's thumbnail (gateway/core/thumbnails.py) goes with it, row and objects, in the
        same transaction; a worker making it right now finds its claim gone when it finishes
        (under the same lock) and removes what it wrote.

        Returns whether the object was removed. A store failure leaves an orphaned
        object (wasted space, never lost data) and is logged.
        """
        if fingerprint == EMPTY_FINGERPRINT:
            return False
        key = content_key(fingerprint)
        try:
            async with self.db.transaction() as conn:
                await self.db.lock_content(conn, fingerprint)
                if await files_db.content_referenced(conn, fingerprint):
                    return False
                await files_db.record_content_drop(conn, fingerprint, stamp_now(self.clock))
                await thumbnails_db.forget(conn, fingerprint)
                await self.store.delete(key)
                await self.store.delete(thumbnail_key(fingerprint))
                await self.store.delete(page_key(fingerprint))
        except StoreError as exc:
            log.warning("content_delete_failed", key=key, error=str(exc))
            return False
        log.info("content_deleted", key=key)
        return True

    async def forget_old_drops(self) -> int:
        """Forget the removals of a day ago and more: no upload's PUT and its transaction are that far apart."""
        return await files_db.forget_content_drops(self.db, stamp_ago(self.clock, DROPS_KEPT_SECONDS))
