"""The domain: uploads (the state machine), files, the tree (folders, versions, trash, search), its change journal, zips, sharing, shared links, deletion, permissions, accounts,
sessions, limits, store events, thumbnails.

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
from gateway.core.cached import ReadThrough
from gateway.core.changes import Changes, Waiters
from gateway.core.clock import Clock, system_clock
from gateway.core.deletion import Deletion
from gateway.core.events import StoreEvents
from gateway.core.files import Files
from gateway.core.leases import Leases
from gateway.core.links import Links
from gateway.core.metrics import Metrics
from gateway.core.limits import Limits
from gateway.core.namespace import Namespace
from gateway.core.permissions import Permissions
from gateway.core.reconciler import reconcile_once
from gateway.core.sessions import Sessions
from gateway.core.sharing import Sharing
from gateway.core.throttle import forget_expired
from gateway.core.thumbnails import Thumbnails
from gateway.core.tree import Tree
from gateway.core.uploads import Uploads
from gateway.core.zips import Zips
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
    links: Links
    deletion: Deletion
    accounts: Accounts
    sessions: Sessions
    events: StoreEvents
    metrics: Metrics
    limits: Limits
    namespace: Namespace
    tree: Tree
    changes: Changes
    zips: Zips
    thumbnails: Thumbnails
    cache: ReadThrough  # the permission and token entries' way into the cache (gateway/core/cached.py)

    async def reconcile_once(self) -> dict[str, int]:
        counts = await reconcile_once(self.config, self.db, self.uploads, self.clock)
        self.metrics.reconciled(counts)
        return counts

    async def housekeeping(self) -> dict[str, int]:
        """Drop rows that count nothing any more (ended throttle counters, revocations of expired tokens),
        and delete for good what the trash and versions have kept past their retention."""
        purged = await self.tree.purge_expired()
        pruned = await self.changes.prune()
        return {
            "pruned_changes": pruned["changes"],
            "throttle_counters": await forget_expired(self.db, self.clock),
            "revoked_tokens": await self.sessions.forget_expired_revocations(),
            "purged_trash": purged["trash"],
            "purged_versions": purged["versions"],
            "content_drops": await self.deletion.forget_old_drops(),
        }

    async def deliver_owed_invalidations(self) -> int:
        """Try again the cache invalidations that failed while the cache was away; how many are still owed."""
        return await self.cache.deliver_owed()

    async def refresh_progress_once(self) -> dict[str, int]:
        """Read the part lists that store part events asked for (gateway/core/events.py)."""
        return await self.events.read_marked_part_lists()


def build_core(config: Config, db: Database, store: ObjectStore, cache: BaseCache | None,
               clock: Clock = system_clock, metrics: Metrics | None = None) -> Core:
    """``metrics``: the app's (gateway/core/metrics.py); a core built alone counts into its own."""
    metrics = metrics or Metrics()
    metrics.watch_database(db, store)
    entries = ReadThrough(cache)
    permissions = Permissions(db, entries, metrics)
    sessions = Sessions(config, db, clock, entries)
    leases = Leases(db, clock)
    limits = Limits(config, db)
    waiters = Waiters()
    metrics.watch_waits(waiters)
    namespace = Namespace(db, clock, waiters.wake)
    deletion = Deletion(db, store, permissions, leases, clock)
    thumbnails = Thumbnails(config, db, store, clock, metrics=metrics)
    uploads = Uploads(config, db, store, permissions, leases, limits, clock, namespace, deletion, metrics, thumbnails)
    tree = Tree(config, db, namespace, permissions, deletion, limits, clock)
    return Core(
        config=config,
        db=db,
        store=store,
        clock=clock,
        permissions=permissions,
        uploads=uploads,
        files=Files(config, db, permissions, uploads, namespace),
        sharing=Sharing(config, db, permissions, clock),
        links=Links(config, db, permissions, clock, thumbnails),
        deletion=deletion,
        accounts=Accounts(config, db, clock, sessions),
        sessions=sessions,
        events=StoreEvents(config, db, store, uploads, clock),
        metrics=metrics,
        limits=limits,
        namespace=namespace,
        tree=tree,
        changes=Changes(config, db, tree, clock, waiters),
        zips=Zips(config, db, store, namespace, permissions, clock),
        thumbnails=thumbnails,
        cache=entries,
    )
