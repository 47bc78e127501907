"""What the gateway does when the store says something happened.

Every event is only a hint to look: the handlers ask the store (its part
list, its objects) before changing any state, so a replayed, reordered or
forged event cannot make a wrong transition.
"""
from __future__ import annotations

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.db import utcnow
from protocol.fingerprints import is_fingerprint
from gateway.content import content_key
from gateway.uploads import complete_upload, refresh_from_store
from storage.events import StoreEvent

log = structlog.get_logger("gateway.events")
CONTENT_PREFIX = content_key("")


async def handle_event(app: web.Application, event: StoreEvent) -> str:
    """Act on one event; return its outcome for the log line."""
    if event.bucket != app[appkeys.CONFIG].s3_bucket:
        return "ignored_other_bucket"
    if event.kind == "part_uploaded":
        return await _part_uploaded(app, event)
    fingerprint = (event.key or "").removeprefix(CONTENT_PREFIX)
    if not (event.key or "").startswith(CONTENT_PREFIX) or not is_fingerprint(fingerprint):
        return "ignored_not_content"
    if event.kind == "object_created":
        return await _content_created(app, fingerprint)
    return await _content_removed(app, fingerprint)


async def _part_uploaded(app: web.Application, event: StoreEvent) -> str:
    db = app[appkeys.DB]
    chunk = await db.fetchone(
        """SELECT f.id AS file_id, c.idx, c.size FROM files f JOIN chunks c ON c.file_id = f.id
           WHERE f.upload_id = ? AND f.status = 'uploading' AND c.idx = ?""",
        (event.upload_id, (event.part_number or 0) - 1),
    )
    if chunk is None:
        return "unknown_upload"
    if event.size == chunk["size"]:
        # Progress straight from the store's word (the event is authenticated); no part
        # list per part, which would cost O(parts^2). Completion still verifies every part.
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE chunks SET status = 'uploaded' WHERE file_id = ? AND idx = ? AND status = 'pending'",
                (chunk["file_id"], chunk["idx"]),
            )
            await conn.execute("UPDATE files SET updated_at = ? WHERE id = ?", (utcnow(), chunk["file_id"]))
    elif await refresh_from_store(app, chunk["file_id"]) is None:
        return "upload_gone"
    pending = await db.fetchval(
        "SELECT count(*) FROM chunks WHERE file_id = ? AND status = 'pending'", (chunk["file_id"],)
    )
    if pending:
        return f"progress:{pending}_pending"
    status = await complete_upload(app, chunk["file_id"], strict=False)
    return "completed" if status == "uploaded" else f"not_completed:{status}"


async def _content_created(app: web.Application, fingerprint: str) -> str:
    # Our own CompleteMultipartUpload (or a PutObject) landed: settle the uploads of
    # this content. An object another user's upload wrote settles nothing here,
    # because each upload is finished only from its own parts.
    file_ids = [
        row["id"]
        for row in await app[appkeys.DB].fetchall(
            "SELECT id FROM files WHERE fingerprint = ? AND status = 'uploading'", (fingerprint,)
        )
    ]
    if not file_ids:
        return "nothing_uploading"
    outcomes = [await complete_upload(app, file_id, strict=False) for file_id in file_ids]
    return f"uploads:{','.join(outcomes)}"


async def _content_removed(app: web.Application, fingerprint: str) -> str:
    if await app[appkeys.STORE].stat(content_key(fingerprint)) is not None:
        return "still_present"  # a stale or replayed event
    holders = await app[appkeys.DB].fetchval(
        "SELECT count(*) FROM files WHERE fingerprint = ? AND status = 'uploaded'", (fingerprint,)
    )
    if holders:
        # Someone removed content behind the gateway's back: files can no longer be served.
        log.error("content_lost", fingerprint=fingerprint, files=holders)
        return "content_lost"
    return "removed"
