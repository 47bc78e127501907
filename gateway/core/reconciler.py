"""Settle what the store's events did not: lost webhooks, a gateway that was down.

Every upload that has been quiet for a while is checked against the store's
own list of parts and finished if complete; uploads quiet for longer than
``abandon_after`` are aborted in the store. Every gateway may run rounds: each
upload is settled under its lease (gateway/core/leases.py), and one another
gateway is settling right now is skipped, so it is settled once.
"""
from __future__ import annotations

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago
from gateway.core.uploads import Uploads
from gateway.db import Database
from gateway.db import files as files_db
from storage import StoreError

log = structlog.get_logger("gateway.reconciler")


async def reconcile_once(config: Config, db: Database, uploads: Uploads, clock: Clock) -> dict[str, int]:
    """One round; how many uploads it checked, completed, abandoned, skipped (busy) and failed on."""
    counts = {"checked": 0, "completed": 0, "abandoned": 0, "busy": 0, "errors": 0}
    rows = await files_db.quiet_uploads(db, stamp_ago(clock, config.reconcile_grace))
    abandon_before = stamp_ago(clock, config.abandon_after)
    for row in rows:
        counts["checked"] += 1
        try:
            outcome = await uploads.settle_if_free(row["id"], abandon=row["updated_at"] <= abandon_before)
        except StoreError as exc:
            counts["errors"] += 1
            log.warning("reconcile_failed", file_id=row["id"], error=str(exc))
            continue
        if outcome in counts:
            counts[outcome] += 1
    if counts["checked"]:
        log.info("reconciled", **counts)
    return counts
