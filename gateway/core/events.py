"""What the gateway does when the store says something happened.

Every event is only a hint to look: the handlers ask the store (its part
list, its objects) before changing any state, so a replayed, reordered or
forged event cannot make a wrong transition.
"""
from __future__ import annotations

import structlog

from gateway.core.clock import Clock, stamp_now
from gateway.core.content import content_key
from gateway.core.uploads import Uploads
from gateway.db import Database
from gateway.db import files as files_db
from protocol.fingerprints import is_fingerprint
from storage import ObjectStore
from storage.events import StoreEvent

log = structlog.get_logger("gateway.events")
CONTENT_PREFIX = content_key("")


class StoreEvents:
    def __init__(self, bucket: str, db: Database, store: ObjectStore, uploads: Uploads, clock: Clock):
        self.bucket = bucket
        self.db = db
        self.store = store
        self.uploads = uploads
        self.clock = clock

    async def handle(self, event: StoreEvent) -> str:
        """Act on one event; return its outcome for the log line."""
        if event.bucket != self.bucket:
            return "ignored_other_bucket"
        if event.kind == "part_uploaded":
            return await self._part_uploaded(event)
        fingerprint = (event.key or "").removeprefix(CONTENT_PREFIX)
        if not (event.key or "").startswith(CONTENT_PREFIX) or not is_fingerprint(fingerprint):
            return "ignored_not_content"
        if event.kind == "object_created":
            return await self._content_created(fingerprint)
        return await self._content_removed(fingerprint)

    async def _part_uploaded(self, event: StoreEvent) -> str:
        chunk = await files_db.chunk_of_upload_part(self.db, event.upload_id or "", (event.part_number or 0) - 1)
        if chunk is None:
            return "unknown_upload"
        file_id = chunk["file_id"]
        if event.size == chunk["size"]:
            # Progress straight from the store's word (the event is authenticated); no part
            # list per part, which would cost O(parts^2). Completion still verifies every part.
            async with self.db.transaction() as conn:
                await files_db.mark_chunk_seen(conn, file_id, chunk["idx"], stamp_now(self.clock))
        elif await self.uploads.refresh_from_store(file_id) is None:
            return "upload_gone"
        pending = await files_db.pending_chunks(self.db, file_id)
        if pending:
            return f"progress:{pending}_pending"
        status = await self.uploads.complete(file_id, strict=False)
        return "completed" if status == "uploaded" else f"not_completed:{status}"

    async def _content_created(self, fingerprint: str) -> str:
        # Our own CompleteMultipartUpload (or a PutObject) landed: settle the uploads of
        # this content. An object another user's upload wrote settles nothing here,
        # because each upload is finished only from its own parts.
        file_ids = await files_db.uploading_with_content(self.db, fingerprint)
        if not file_ids:
            return "nothing_uploading"
        outcomes = [await self.uploads.complete(file_id, strict=False) for file_id in file_ids]
        return f"uploads:{','.join(outcomes)}"

    async def _content_removed(self, fingerprint: str) -> str:
        if await self.store.stat(content_key(fingerprint)) is not None:
            return "still_present"  # a stale or replayed event
        holders = await files_db.count_with_content(self.db, fingerprint, "uploaded")
        if holders:
            # Someone removed content behind the gateway's back: files can no longer be served.
            log.error("content_lost", fingerprint=fingerprint, files=holders)
            return "content_lost"
        return "removed"
