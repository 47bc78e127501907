"""Settle what the store's events did not: lost webhooks, a gateway that was down.

Every upload that has been quiet for a while is checked against the store's
own list of parts and finished if complete; uploads quiet for longer than
``abandon_after`` are aborted in the store. Every gateway may run rounds: each
upload is settled under its lease (gateway/core/leases.py), and one another
gateway is settling right now is skipped, so it is settled once.

The work of a round is bounded, however many uploads are open: at most
``reconcile_batch`` uploads, the longest without a look first, each costing
one ListParts (completing one costs the Complete too). An upload is looked at
again only after new activity, ``reconcile_recheck`` seconds after its last
look (``uploads.checked_at``), or once it is due to be abandoned; not every round.
"""
from __future__ import annotations

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago, stamp_now
from gateway.core.outcomes import Settlement
from gateway.core.uploads import Uploads
from gateway.db import Database
from gateway.db import uploads as uploads_db
from storage import StoreError

log = structlog.get_logger("gateway.reconciler")
# The outcomes a round counts (besides how many uploads it checked and failed on); not ``unchanged``.
COUNTED = (Settlement.COMPLETED, Settlement.ABANDONED, Settlement.BUSY)


async def reconcile_once(config: Config, db: Database, uploads: Uploads, clock: Clock) -> dict[str, int]:
    """One round; how many uploads it checked, completed, abandoned, skipped (busy) and failed on."""
    counts: dict[str, int] = {"checked": 0, **dict.fromkeys(COUNTED, 0), "errors": 0}
    abandon_before = stamp_ago(clock, config.abandon_after)
    rows = await uploads_db.uploads_to_check(
        db, stamp_ago(clock, config.reconcile_grace), stamp_ago(clock, config.reconcile_recheck), abandon_before,
        config.reconcile_batch,
    )
    for row in rows:
        counts["checked"] += 1
        try:
            outcome = await uploads.settle_if_free(row["id"], abandon=row["active_at"] <= abandon_before)
        except StoreError as exc:
            counts["errors"] += 1
            log.warning("reconcile_failed", file_id=row["id"], error=str(exc))
            continue
        if outcome != Settlement.BUSY:
            await uploads_db.mark_checked(db, row["id"], stamp_now(clock))
        if outcome in counts:
            counts[outcome] += 1
    if counts["checked"]:
        log.info("reconciled", **counts)
    return counts
