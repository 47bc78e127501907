"""What an operator does to accounts (python -m gateway.admin): create, disable, list, set quotas, invite.

No HTTP reaches these: only whoever can run the admin command with the
gateway's database settings. Disabling a user ends every access token they
hold (the token generation moves on) and drops their token entry from the
cache, so with ``redis://`` every gateway process refuses their tokens at once;
with ``memory://`` the gateway process's own entry lives on for up to
``GATEWAY_CACHE_TTL`` seconds, as the command cannot reach that process's memory.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.core.accounts import Accounts, invitation_hash
from gateway.core.clock import Clock, stamp_in, stamp_now
from gateway.core.errors import NoSuchUser
from gateway.core.limits import Limits
from gateway.core.sessions import Sessions
from gateway.db import Database, Row
from gateway.db import users as users_db

log = structlog.get_logger("gateway.admin")


@dataclass(frozen=True)
class Invitation:
    code: str
    expires_at: str


@dataclass(eq=False)  # a service: compared by identity, as before
class Admin:
    config: Config
    db: Database
    clock: Clock
    accounts: Accounts
    sessions: Sessions
    limits: Limits

    async def create_user(self, username: str, email: str, password: str, quota_bytes: int | None = None) -> Row:
        """A new user, whatever the sign-up mode; UsernameTaken."""
        user = await self.accounts.create(username, email, password)
        if quota_bytes is not None:
            await users_db.set_quota(self.db, username, quota_bytes)
        return user

    async def users(self) -> list[Row]:
        """Every user with their quota (None: unlimited), the bytes they use and whether they are disabled."""
        listed = []
        for row in await users_db.list_users(self.db):
            usage = await self.limits.usage(row["id"])
            listed.append({**row, "quota_bytes": usage["quota_bytes"], "used_bytes": usage["used_bytes"]})
        return listed

    async def disable(self, username: str) -> None:
        """The user can no longer log in, and every token they hold stops working: NoSuchUser."""
        user_id = await users_db.set_disabled(self.db, username, stamp_now(self.clock))
        if user_id is None:
            raise NoSuchUser(username)
        await self.sessions.changed(user_id)
        log.info("user_disabled", disabled_user_id=user_id)

    async def enable(self, username: str) -> None:
        """The user can log in again (tokens ended by disabling stay ended): NoSuchUser."""
        user_id = await users_db.set_disabled(self.db, username, None)
        if user_id is None:
            raise NoSuchUser(username)
        log.info("user_enabled", enabled_user_id=user_id)

    async def set_quota(self, username: str, quota_bytes: int | None) -> None:
        """The user's own quota in bytes (None: the gateway's setting, 0: unlimited): NoSuchUser."""
        if await users_db.set_quota(self.db, username, quota_bytes) is None:
            raise NoSuchUser(username)

    async def invite(self, expires_in: int) -> Invitation:
        """A new invitation code, good for one sign-up within ``expires_in`` seconds. Only its hash is kept."""
        code = secrets.token_urlsafe(16)
        expires_at = stamp_in(self.clock, expires_in)
        await users_db.insert_invitation(self.db, invitation_hash(code), stamp_now(self.clock), expires_at)
        log.info("invitation_created", expires_at=expires_at)
        return Invitation(code, expires_at)
