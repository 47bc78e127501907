"""Sharing: the owner shares a file with users by name, or stops sharing it with one.

Both answer which usernames exist (an unknown one is named in the error), so
both are throttled per user, in the database (gateway/core/throttle.py: the
limit holds across gateway processes): every call counts one, and every
unknown username named counts one more. Guessing names a thousand at a time
is refused at the HTTP layer (at most ``MAX_USERS_PER_SHARE`` per call), and
guessing them fifty at a time soon runs into ``share_limit`` per ``share_window``.
"""
from __future__ import annotations

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import CannotShareWithYourself, TooManyRequests, UnknownUsers
from gateway.core.permissions import Permissions, owned_for_change
from gateway.core.throttle import Limit, Throttle
from gateway.db import Database
from gateway.db import shares as shares_db
from gateway.db import users as users_db

log = structlog.get_logger("gateway.sharing")


class Sharing:
    def __init__(self, config: Config, db: Database, permissions: Permissions, clock: Clock):
        self.db = db
        self.permissions = permissions
        self.clock = clock
        self.calls = Throttle(db, clock, "share", Limit(failures=config.share_limit, window=config.share_window))

    async def _count_call(self, user_id: int) -> None:
        """TooManyRequests while the user is blocked, or for the call over the limit (Throttle.count_attempt)."""
        retry_after = await self.calls.count_attempt(str(user_id))
        if retry_after is not None:
            raise TooManyRequests("share and unshare", retry_after)

    async def _count_unknown(self, user_id: int, unknown: UnknownUsers) -> None:
        """Each unknown name told the caller something: it counts against the same limit."""
        for _ in unknown.names:
            await self.calls.record_failure(str(user_id))

    async def share(self, owner_id: int, file_id: str, names: list[str]) -> list[str]:
        """Share with users by name, all or nothing; everyone the file is shared with now.

        An unknown name is UnknownUsers naming every unknown one (and shares with
        nobody); the owner's own name is CannotShareWithYourself. Names compare
        without regard to case, as logins do; sharing again changes nothing.
        TooManyRequests when the owner is over the share limit (module docs).
        """
        await self._count_call(owner_id)
        try:
            shared_with, user_ids = await self._share(owner_id, file_id, names)
        except UnknownUsers as unknown:
            await self._count_unknown(owner_id, unknown)
            raise
        await self.permissions.invalidate(file_id)
        log.info("file_shared", file_id=file_id, users=len(user_ids), shared_with=len(shared_with))
        return shared_with

    async def _share(self, owner_id: int, file_id: str, names: list[str]) -> tuple[list[str], list[int]]:
        async with self.db.transaction() as conn:
            await owned_for_change(conn, owner_id, file_id)
            ids = await users_db.ids_by_name(conn, names)
            missing = [name for name in names if name.lower() not in ids]
            if missing:
                raise UnknownUsers(missing)
            user_ids = sorted({ids[name.lower()] for name in names})
            if owner_id in user_ids:
                raise CannotShareWithYourself()
            await shares_db.add_shares(conn, file_id, user_ids, stamp_now(self.clock))
            return await shares_db.shared_with(conn, file_id), user_ids

    async def shared_with(self, owner_id: int, file_id: str) -> list[str]:
        """Who the file is shared with now, by username (alphabetical); FileNotFound for anyone but the owner."""
        await self.permissions.owned(owner_id, file_id)
        async with self.db.read() as conn:
            return await shares_db.shared_with(conn, file_id)

    async def unshare(self, owner_id: int, file_id: str, username: str) -> None:
        """Stop sharing with one user (also when it never was: idempotent); they lose access at once.

        Throttled with sharing: an unknown username is UnknownUsers, as for sharing.
        """
        await self._count_call(owner_id)
        try:
            async with self.db.transaction() as conn:
                await owned_for_change(conn, owner_id, file_id)
                target = await users_db.user_by_name(conn, username)
                if target is None:
                    raise UnknownUsers([username])
                removed = await shares_db.remove_share(conn, file_id, target["id"])
        except UnknownUsers as unknown:
            await self._count_unknown(owner_id, unknown)
            raise
        await self.permissions.invalidate(file_id)
        log.info("file_unshared", file_id=file_id, user_id=target["id"], removed=removed)
