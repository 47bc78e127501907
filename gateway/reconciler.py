"""Settle what the store's events did not: lost webhooks, a gateway that was down.

Periodically, every upload that has been quiet for a while is checked against
the store's own list of parts and finished if complete; uploads quiet for
longer than ``abandon_after`` are aborted in the store.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.uploads import abandon_upload, complete_upload
from storage import StoreError

log = structlog.get_logger("gateway.reconciler")


def _ago(seconds: float) -> str:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def reconcile_once(app: web.Application) -> dict[str, int]:
    config = app[appkeys.CONFIG]
    db = app[appkeys.DB]
    counts = {"checked": 0, "completed": 0, "abandoned": 0, "errors": 0}
    rows = await db.fetchall(
        "SELECT id, updated_at FROM files WHERE status = 'uploading' AND updated_at <= ? ORDER BY updated_at",
        (_ago(config.reconcile_grace),),
    )
    abandon_before = _ago(config.abandon_after)
    for row in rows:
        counts["checked"] += 1
        try:
            if row["updated_at"] <= abandon_before:
                if await abandon_upload(app, row["id"]):
                    counts["abandoned"] += 1
                continue
            # complete_upload reads the store's part list and finishes only if every chunk is there.
            if await complete_upload(app, row["id"], strict=False) == "uploaded":
                counts["completed"] += 1
        except StoreError as exc:
            counts["errors"] += 1
            log.warning("reconcile_failed", file_id=row["id"], error=str(exc))
    if counts["checked"]:
        log.info("reconciled", **counts)
    return counts


async def reconciler_ctx(app: web.Application) -> AsyncIterator[None]:
    interval = app[appkeys.CONFIG].reconcile_interval

    async def loop() -> None:
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            # Background work has no request; its own id keeps every log line traceable.
            structlog.contextvars.bind_contextvars(request_id=f"reconcile-{rounds}")
            try:
                await reconcile_once(app)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("reconcile_round_failed")

    task = asyncio.create_task(loop(), name="reconciler")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
