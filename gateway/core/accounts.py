"""Accounts: signing up, logging in (an access token), changing the password, the profile; login throttling.

A password change ends every access token issued before (gateway/core/sessions.py).

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
from ipaddress import ip_address, ip_network

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import InvalidCredentials, TooManyAttempts, UnknownUser, UsernameTaken, WrongPassword
from gateway.core.passwords import hash_password, verify_password
from gateway.core.sessions import Sessions
from gateway.core.throttle import Limit, Throttle
from gateway.core.tokens import AccessToken, TokenUser, issue_token
from gateway.db import Database, Row
from gateway.db import users as users_db

log = structlog.get_logger("gateway.users")


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
    def __init__(self, config: Config, db: Database, clock: Clock, sessions: Sessions):
        self.config = config
        self.db = db
        self.clock = clock
        self.sessions = sessions
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
        retry_after = await self.by_username.count_attempt(name)
        if retry_after is not None:
            log.info("login_throttled", username=username, retry_after=retry_after)
            raise TooManyAttempts(retry_after)
        row = await users_db.user_by_name(self.db, username)
        if not await verify_password(password, row["password_hash"] if row else None) or row is None:
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
        await self.sessions.changed(user.user_id)
        log.info("password_changed")

    async def profile(self, user_id: int) -> Row:
        row = await users_db.user_by_id(self.db, user_id)
        if row is None:
            raise UnknownUser()
        return {"user_id": row["id"], "username": row["username"], "email": row["email"]}
