"""What the gateway does when the store says something happened.

Every event is only a hint to look: the handlers ask the store (its part
list, its objects) before changing any state, so a replayed, reordered or
forged event cannot make a wrong transition.

Part events (the embedded store posts one per uploaded part) come in bursts:
an upload of 5,120 chunks sends 5,120 of them. Each only marks its upload in
the database (``uploads.parts_marked_at``, the burst's first event; later ones
find the mark and change nothing). :meth:`StoreEvents.read_marked_part_lists`,
which every gateway runs every ``part_events_delay`` seconds, takes each mark
at least that old (a conditional UPDATE: one gateway wins it) and reads the
upload's part list once, however many events made the mark. Nothing about it
lives in a process's memory: a gateway that dies after taking a mark leaves
the upload to the reconciler.
"""
from __future__ import annotations

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago, stamp_now
from gateway.core.content import content_key
from gateway.core.uploads import Uploads
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db import uploads as uploads_db
from protocol.fingerprints import is_fingerprint
from protocol.states import FileStatus
from storage import ObjectStore, StoreError
from storage.events import StoreEvent

log = structlog.get_logger("gateway.events")
CONTENT_PREFIX = content_key("")


class StoreEvents:
    def __init__(self, config: Config, db: Database, store: ObjectStore, uploads: Uploads, clock: Clock):
        self.config = config
        self.db = db
        self.store = store
        self.uploads = uploads
        self.clock = clock

    async def handle(self, event: StoreEvent) -> str:
        """Act on one event; return its outcome for the log line."""
        if event.bucket != self.config.s3_bucket:
            return "ignored_other_bucket"
        if event.kind == "part_uploaded":
            return await self._part_uploaded(event)
        fingerprint = (event.key or "").removeprefix(CONTENT_PREFIX)
        if not (event.key or "").startswith(CONTENT_PREFIX) or not is_fingerprint(fingerprint):
            return "ignored_not_content"
        if event.kind == "object_created":
            if event.completion is False:
                return "written_whole"  # see _content_created
            return await self._content_created(fingerprint)
        return await self._content_removed(fingerprint)

    async def _part_uploaded(self, event: StoreEvent) -> str:
        """Mark the upload: its part list is read soon, once for the whole burst. Nothing else changes."""
        row = await uploads_db.upload_by_store_id(self.db, event.upload_id or "")
        if row is None:
            return "unknown_upload"
        if row["parts_marked_at"] is not None:
            return "part_list_already_due"
        await uploads_db.mark_parts(self.db, row["id"], stamp_now(self.clock))
        return "part_list_due"

    async def read_marked_part_lists(self) -> dict[str, int]:
        """One round: read the part list of each upload marked ``part_events_delay`` ago or more.

        At most ``reconcile_batch`` uploads, the oldest marks first; an upload the
        store now holds whole is completed. Returns how many lists were read
        (``read``), how many uploads completed and how many reads failed.
        """
        counts = {"read": 0, "completed": 0, "errors": 0}
        due = await uploads_db.marked_uploads(
            self.db, stamp_ago(self.clock, self.config.part_events_delay), self.config.reconcile_batch
        )
        for row in due:
            if not await uploads_db.take_mark(self.db, row["id"], row["parts_marked_at"]):
                continue  # another gateway took it
            try:
                completed = await self._read_part_list(row["id"])
            except StoreError as exc:
                # The mark is gone; the reconciler looks at a quiet upload anyway.
                counts["errors"] += 1
                log.warning("part_list_failed", file_id=row["id"], error=str(exc))
                continue
            counts["read"] += 1
            counts["completed"] += completed
        return counts

    async def _read_part_list(self, file_id: str) -> bool:
        """Mark the chunks the store lists, and complete the upload if that was the last; whether it completed."""
        if await self.uploads.refresh_from_store(file_id) is None:
            return False  # settled meanwhile, or the store forgot it: resume or the reconciler decides
        if await files_db.pending_chunks(self.db, file_id):
            return False
        return await self.uploads.complete(file_id, strict=False) == FileStatus.UPLOADED

    async def _content_created(self, fingerprint: str) -> str:
        """A multipart upload's completion landed (our own CompleteMultipartUpload), or the event does not
        say how the object was written: settle the uploads of this content.

        An object another user's upload wrote settles nothing here, because each upload is finished only
        from its own parts; and an object the event says was written whole (a PutObject: an inline upload's
        bytes, which the gateway recorded in the same request, or anyone's) is no upload's completion, so
        :meth:`handle` answers ``written_whole`` without a look in the database (one event a small file:
        the read was most of what handling it cost). An upload whose parts are all in the store is still
        completed by its own completion's event, its part events' reads, the client's complete, or the
        reconciler.
        """
        file_ids = await uploads_db.uploading_with_content(self.db, fingerprint)
        if not file_ids:
            return "nothing_uploading"
        outcomes = [await self.uploads.complete(file_id, strict=False) or "missing" for file_id in file_ids]
        return f"uploads:{','.join(outcomes)}"

    async def _content_removed(self, fingerprint: str) -> str:
        if await self.store.stat(content_key(fingerprint)) is not None:
            return "still_present"  # a stale or replayed event
        holders = await files_db.count_with_content(self.db, fingerprint, FileStatus.UPLOADED)
        if holders:
            # Someone removed content behind the gateway's back: files can no longer be served.
            log.error("content_lost", fingerprint=fingerprint, files=holders)
            return "content_lost"
        return "removed"
