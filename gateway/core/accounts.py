"""Accounts: signing up, logging in (an access token), the caller's own profile; login throttling; sessions.

Sessions: an access token is good until it expires unless it is ended first,
which every gateway process sees at once because it is in the database:

- **Log-out** revokes the token's ``jti`` (the ``revoked_tokens`` table keeps it
  until the token would have expired anyway).
- **A password change** moves the user's ``token_generation`` on; every token
  carries the generation it was issued in, so all earlier tokens stop working.

:meth:`Accounts.authenticate` checks both for every request against the user's
entry ``tokens:<user_id>`` = ``{"v": 1, "gen": int, "revoked": [jti, ...]}``,
read through the shared cache (gateway/core/cached.py: leases, so a fill never
brings a stale entry back) and dropped *after* every log-out and password
change commits. With ``redis://`` every gateway process sees the drop at once;
``memory://`` is for one process (as for permissions), and ``none://`` asks the
database, in one query, on every request.

Login throttling (contract v1.1), counted in the database (gateway/core/throttle.py)
so it holds across gateway processes:

- **Per username**: ``login_failures`` wrong passwords within ``login_window``
  seconds, and the next attempt is refused (TooManyAttempts: 429 with
  Retry-After), with the right password too, until the window has passed.
  Unknown usernames are counted and refused exactly the same way, and a
  password is checked against a dummy hash for them, so neither the answers
  nor their timing tell whether a username exists. Each attempt is counted
  *before* its password is checked (and the count dropped when it was right):
  a burst of concurrent guesses cannot outrun the count.
- **Per client address**: past ``login_address_failures`` failures (on any
  usernames) within the window, every login from that address first waits
  ``login_address_delay`` seconds. It is slowed down, never refused: many
  people share one address behind NAT or a proxy, and their right passwords
  still get in. IPv6 addresses count by their /64 network, which one client
  usually holds whole.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from ipaddress import ip_address, ip_network

import structlog
from aiocache.base import BaseCache

from gateway.config import Config
from gateway.core.cached import forget, read_through
from gateway.core.clock import Clock, stamp_ago, stamp_now, timestamp
from gateway.core.errors import (
    InvalidCredentials, TokenRevoked, TooManyAttempts, UnknownUser, UsernameTaken, WrongPassword,
)
from gateway.core.passwords import hash_password, verify_password
from gateway.core.throttle import Limit, Throttle
from gateway.core.tokens import TokenUser, issue_token, verify_token
from gateway.db import Database, Row
from gateway.db import tokens as tokens_db
from gateway.db import users as users_db

log = structlog.get_logger("gateway.users")

SESSION_ENTRY_VERSION = 1


def session_key(user_id: int) -> str:
    return f"tokens:{user_id}"


# Seconds a revocation outlives its token's expiry, for gateways whose clocks run behind this one's.
CLOCK_SKEW_ALLOWANCE = 300


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


def address_key(address: str) -> str:
    """What failures from ``address`` count against: the address itself, or an IPv6 address's /64."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Accounts:
    def __init__(self, config: Config, db: Database, clock: Clock, cache: BaseCache | None = None):
        self.config = config
        self.db = db
        self.clock = clock
        self.cache = cache
        self.by_username = Throttle(db, clock, "login-user", Limit(config.login_failures, config.login_window))
        self.by_address = Throttle(db, clock, "login-address", Limit(config.login_address_failures, config.login_window))

    async def sign_up(self, username: str, email: str, password: str) -> Row:
        """The new user (user_id, username, email); UsernameTaken if the name is, whatever its case."""
        password_hash = await hash_password(password)
        try:
            user_id = await users_db.insert_user(self.db, username, email, password_hash, stamp_now(self.clock))
        except users_db.DuplicateUsername as exc:
            raise UsernameTaken(username) from exc
        log.info("user_created", new_user_id=user_id, username=username)
        return {"user_id": user_id, "username": username, "email": email}

    async def log_in(self, username: str, password: str, address: str = "") -> AccessToken:
        """An access token; InvalidCredentials (the same, in the same time, for an unknown name) or TooManyAttempts."""
        row = await self._check_password(username, password, address)
        ttl = self.config.token_ttl
        token = issue_token(self.config.jwt_secret, row["id"], row["username"], row["token_generation"], ttl)
        return AccessToken(token, ttl)

    async def _check_password(self, username: str, password: str, address: str) -> Row:
        """The user's row when ``password`` is theirs, under the login throttles (module docstring)."""
        await self._slow_down(address)
        name = username.lower()  # usernames compare without case; so do their counters
        retry_after = await self.by_username.check(name)
        if retry_after is None:
            retry_after = await self.by_username.record_failure(name)
        if retry_after is not None:
            log.info("login_throttled", username=username, retry_after=retry_after)
            raise TooManyAttempts(retry_after)
        row = await users_db.user_by_name(self.db, username)
        if not await verify_password(password, row["password_hash"] if row else None):
            if address:
                await self.by_address.record_failure(address_key(address))
            log.info("login_failed", username=username)
            raise InvalidCredentials()
        await self.by_username.reset(name)
        return row

    async def _slow_down(self, address: str) -> None:
        """Make a login from an address with many recent failures wait first (slowed down, never refused)."""
        if address and await self.by_address.check(address_key(address)) is not None:
            log.info("login_slowed_down", delay=self.config.login_address_delay)
            await asyncio.sleep(self.config.login_address_delay)

    async def authenticate(self, token: str) -> TokenUser:
        """Who an access token speaks for; TokenExpired, InvalidToken, TokenRevoked or UnknownUser."""
        user = verify_token(self.config.jwt_secret, token)
        state = await self._token_state(user.user_id)
        if state is None:
            raise UnknownUser()
        if user.token_id in state["revoked"] or state["gen"] != user.generation:
            raise TokenRevoked()
        return user

    async def _token_state(self, user_id: int) -> dict | None:
        """The user's session entry (module docstring), from the cache when it is there."""

        async def load() -> dict | None:
            row = await tokens_db.token_state(self.db, user_id, stamp_now(self.clock))
            if row is None:
                return None
            return {"v": SESSION_ENTRY_VERSION, "gen": row["token_generation"], "revoked": row["revoked"]}

        return await read_through(self.cache, session_key(user_id), SESSION_ENTRY_VERSION, load)

    async def log_out(self, user: TokenUser) -> None:
        """End the access token ``user`` came with, on every gateway, at once."""
        expires_at = timestamp(datetime.fromtimestamp(user.expires_at, timezone.utc))
        await tokens_db.revoke(self.db, user.token_id, user.user_id, expires_at, stamp_now(self.clock))
        await forget(self.cache, session_key(user.user_id))
        log.info("logged_out")

    async def forget_expired_revocations(self) -> int:
        """Drop the revocations of tokens long expired (their expiry refuses them); how many."""
        return await tokens_db.forget_expired(self.db, stamp_ago(self.clock, CLOCK_SKEW_ALLOWANCE))

    async def change_password(self, user: TokenUser, current: str, new: str, address: str = "") -> None:
        """Set a new password and end every access token issued before; WrongPassword, TooManyAttempts.

        ``current`` is checked under the login throttles of the username: a
        stolen token gives no more guesses at the password than the login does.
        """
        try:
            row = await self._check_password(user.username, current, address)
        except InvalidCredentials as exc:
            raise WrongPassword() from exc
        if row["id"] != user.user_id:
            raise UnknownUser()
        new_hash = await hash_password(new)
        if await users_db.set_password(self.db, user.user_id, new_hash, row["password_hash"]) is None:
            raise WrongPassword()  # changed by another request since `current` was checked
        await forget(self.cache, session_key(user.user_id))
        log.info("password_changed")

    async def profile(self, user_id: int) -> Row:
        row = await users_db.user_by_id(self.db, user_id)
        if row is None:
            raise UnknownUser()
        return {"user_id": row["id"], "username": row["username"], "email": row["email"]}
