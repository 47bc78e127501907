"""The domain: uploads (the state machine), files, sharing, deletion, permissions, accounts, limits, store events.

Plain classes with explicit dependencies (the metadata database, the object
store, the cache, a clock, the settings), raising gateway/core/errors.py's
domain errors; nothing here knows HTTP. :func:`build_core` wires them::

    core = build_core(config, db, store, cache)
    file_id, created = await core.uploads.start(user_id, claim)
"""
from __future__ import annotations

from dataclasses import dataclass

from aiocache.base import BaseCache

from gateway.config import Config
from gateway.core.accounts import Accounts
from gateway.core.clock import Clock, system_clock
from gateway.core.deletion import Deletion
from gateway.core.events import StoreEvents
from gateway.core.files import Files
from gateway.core.leases import Leases
from gateway.core.limits import Limits
from gateway.core.permissions import Permissions
from gateway.core.reconciler import reconcile_once
from gateway.core.sharing import Sharing
from gateway.core.uploads import Uploads
from gateway.db import Database
from storage import ObjectStore


@dataclass(frozen=True)
class Core:
    config: Config
    db: Database
    store: ObjectStore
    clock: Clock
    permissions: Permissions
    uploads: Uploads
    files: Files
    sharing: Sharing
    deletion: Deletion
    accounts: Accounts
    events: StoreEvents
    limits: Limits

    async def reconcile_once(self) -> dict[str, int]:
        return await reconcile_once(self.config, self.db, self.uploads, self.clock)

    async def refresh_progress_once(self) -> dict[str, int]:
        """Read the part lists that store part events asked for (gateway/core/events.py)."""
        return await self.events.read_marked_part_lists()


def build_core(config: Config, db: Database, store: ObjectStore, cache: BaseCache | None,
               clock: Clock = system_clock) -> Core:
    permissions = Permissions(db, cache)
    leases = Leases(db, clock)
    limits = Limits(config, db)
    uploads = Uploads(config, db, store, permissions, leases, limits, clock)
    return Core(
        config=config,
        db=db,
        store=store,
        clock=clock,
        permissions=permissions,
        uploads=uploads,
        files=Files(config, db, store, permissions, uploads),
        sharing=Sharing(config, db, permissions, clock),
        deletion=Deletion(db, store, permissions, leases),
        accounts=Accounts(config, db, clock),
        events=StoreEvents(config, db, store, uploads, clock),
        limits=limits,
    )
