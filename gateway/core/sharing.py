"""Sharing: the owner shares a file with users by name, or stops sharing it with one."""
from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import CannotShareWithYourself, FileNotFound, UnknownUsers
from gateway.core.permissions import FILE_ID, Permissions
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db import shares as shares_db
from gateway.db import users as users_db

log = structlog.get_logger("gateway.sharing")


async def _owned_for_change(conn: AsyncConnection, user_id: int, file_id: str) -> None:
    """FileNotFound unless ``user_id`` owns the file, read (and locked) inside the write transaction."""
    if not FILE_ID.fullmatch(file_id):
        raise FileNotFound(file_id, own=True)
    row = await files_db.file_for_change(conn, file_id)
    if row is None or row["owner_id"] != user_id:
        raise FileNotFound(file_id, own=True)


class Sharing:
    def __init__(self, db: Database, permissions: Permissions, clock: Clock):
        self.db = db
        self.permissions = permissions
        self.clock = clock

    async def share(self, owner_id: int, file_id: str, names: list[str]) -> list[str]:
        """Share with users by name, all or nothing; everyone the file is shared with now.

        An unknown name is UnknownUsers naming every unknown one (and shares with
        nobody); the owner's own name is CannotShareWithYourself. Names compare
        without regard to case, as logins do; sharing again changes nothing.
        """
        async with self.db.transaction() as conn:
            await _owned_for_change(conn, owner_id, file_id)
            ids = await users_db.ids_by_name(conn, names)
            missing = [name for name in names if name.lower() not in ids]
            if missing:
                raise UnknownUsers(missing)
            user_ids = sorted({ids[name.lower()] for name in names})
            if owner_id in user_ids:
                raise CannotShareWithYourself()
            await shares_db.add_shares(conn, file_id, user_ids, stamp_now(self.clock))
            shared_with = await shares_db.shared_with(conn, file_id)
        await self.permissions.invalidate(file_id)
        log.info("file_shared", file_id=file_id, users=len(user_ids), shared_with=len(shared_with))
        return shared_with

    async def unshare(self, owner_id: int, file_id: str, username: str) -> None:
        """Stop sharing with one user (also when it never was: idempotent); they lose access at once."""
        async with self.db.transaction() as conn:
            await _owned_for_change(conn, owner_id, file_id)
            target = await users_db.user_by_name(conn, username)
            if target is None:
                raise UnknownUsers([username])
            removed = await shares_db.remove_share(conn, file_id, target["id"])
        await self.permissions.invalidate(file_id)
        log.info("file_unshared", file_id=file_id, user_id=target["id"], removed=removed)
