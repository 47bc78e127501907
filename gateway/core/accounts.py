"""Accounts: signing up, logging in (an access token), changing the password, the profile; login throttling.

Who may sign up is the operator's choice (``signup``): anyone (``open``), the
holders of an invitation code (``invite``; codes from ``python -m
gateway.admin invite``, used up by the sign-up they make) or nobody
(``closed``: the admin command creates accounts). Where sign-up is possible,
``signup_rate`` sign-ups per hour from one client address go through, a
taken username counting as one (409 tells that the name exists, so
enumerating names through it is bounded by the same count); the next get
TooManyRequests until the hour is over. The default is generous: a school's
first morning behind one NAT address.

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
- **Per client address** (pacing, gateway/core/pacing.py): past
  ``login_address_failures`` failed logins (on any usernames) within the
  window, the address's password checks are paced until the window after it
  has passed: at most ``login_address_checks`` of them in flight at once in a
  gateway process, and a wrong one keeps its slot ``login_address_delay``
  seconds before its 401 goes out. Its guesses are so bounded by
  checks/delay a second per gateway process (2 by default; 60 concurrent
  connections made 17.2 a second through the former slow-down, which every
  attempt waited through side by side), whatever the number of
  connections. Nothing is refused: many people share one address behind NAT
  or a proxy, and the contract wants their right passwords to get in; theirs
  wait their turn behind the guesses before theirs and are answered as soon
  as checked. Each attempt is counted before its password is checked (a
  burst cannot outrun the count) and taken back when it proves right or is
  not checked at all (a throttled username), so the people behind one
  address logging in spend none of it. IPv6 addresses count by their /64
  network, which one client usually holds whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import hashlib
from ipaddress import ip_address, ip_network

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import (
    AccountDisabled,
    InvalidCredentials,
    InvalidInvitation,
    InvitationRequired,
    SignUpClosed,
    TooManyAttempts,
    TooManyRequests,
    UnknownUser,
    UsernameTaken,
    WrongPassword,
)
from gateway.core.pacing import Pacer
from gateway.core.passwords import hash_password, verify_password
from gateway.core.sessions import Sessions
from gateway.core.throttle import Limit, Throttle
from gateway.core.tokens import AccessToken, TokenUser, issue_token
from gateway.db import Database, Row
from gateway.db import users as users_db

log = structlog.get_logger("gateway.users")
# Seconds over which an address's sign-ups are counted against signup_rate.
SIGNUP_WINDOW = 3600


def invitation_hash(code: str) -> str:
    """What the database keeps of an invitation code (128 random bits: a hash without a key is enough)."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class AddressTurn:
    """A login attempt's standing with its client address's counter."""

    key: str | None  # what the address counts under; None: no address known
    counted: bool  # counted as a failure before the check: taken back unless the check fails
    paced: bool  # the address is past its failures: the check waits for one of its slots


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
        self.pacer = Pacer(config.login_address_checks, config.login_address_delay)
        self.sign_ups = Throttle(db, clock, "signup", Limit(config.signup_rate, SIGNUP_WINDOW))

    async def sign_up(self, username: str, email: str, password: str, address: str = "",
                      invitation: str | None = None) -> Row:
        """The new user (user_id, username, email) as the sign-up mode allows (module docstring);
        UsernameTaken if the name is, whatever its case; SignUpClosed, InvitationRequired,
        InvalidInvitation, TooManyRequests."""
        mode = self.config.signup
        if mode == "closed":
            raise SignUpClosed()
        if mode == "invite" and not invitation:
            raise InvitationRequired()
        await self._count_sign_up(address)
        code_hash = invitation_hash(invitation) if mode == "invite" and invitation else None
        return await self.create(username, email, password, code_hash)

    async def create(self, username: str, email: str, password: str, code_hash: str | None = None) -> Row:
        """Add the user, whatever the sign-up mode (the admin command's way; sign_up's after its checks)."""
        password_hash = await hash_password(password)
        try:
            user_id = await users_db.insert_user(self.db, username, email, password_hash, stamp_now(self.clock),
                                                 code_hash)
        except users_db.DuplicateUsername as exc:
            raise UsernameTaken(username) from exc
        except users_db.InvitationUnusable as exc:
            raise InvalidInvitation() from exc
        log.info("user_created", new_user_id=user_id, username=username)
        return {"user_id": user_id, "username": username, "email": email}

    async def _count_sign_up(self, address: str) -> None:
        if not address or not self.config.signup_rate:
            return
        retry_after = await self.sign_ups.count_attempt(address_key(address))
        if retry_after is not None:
            log.info("signup_throttled", address=address_key(address), retry_after=retry_after)
            raise TooManyRequests("sign-up", retry_after)

    async def log_in(self, username: str, password: str, address: str = "") -> AccessToken:
        """An access token; InvalidCredentials (the same, in the same time, for an unknown name) or TooManyAttempts."""
        row = await self._check_password(username, password, address)
        ttl = self.config.token_ttl
        token = issue_token(self.config.jwt_secret, row["id"], row["username"], row["token_generation"], ttl)
        return AccessToken(token, ttl)

    async def _check_password(self, username: str, password: str, address: str) -> Row:
        """The user's row when ``password`` is theirs, under the login throttles (module docstring)."""
        turn = await self._count_against_address(address)
        name = username.lower()  # usernames compare without case; so do their counters
        retry_after = await self.by_username.count_attempt(name)
        if retry_after is not None:
            await self._forgive_address(turn)  # no password was checked: no guess made
            log.info("login_throttled", username=username, retry_after=retry_after)
            raise TooManyAttempts(retry_after)
        row = await users_db.user_by_name(self.db, username)
        if not await self._verify(turn, password, row) or row is None:
            log.info("login_failed", username=username)
            raise InvalidCredentials()
        await self.by_username.reset(name)
        await self._forgive_address(turn)
        if row["disabled_at"] is not None:
            raise AccountDisabled()  # told only to whoever knows the password
        return row

    async def _count_against_address(self, address: str) -> AddressTurn:
        """Count this attempt against its address before its check; whether the address is paced now."""
        if not address:
            return AddressTurn(None, counted=False, paced=False)
        key = address_key(address)
        if await self.by_address.check(key) is not None:
            return AddressTurn(key, counted=False, paced=True)  # not counted: its pacing runs its course
        paced = await self.by_address.record_failure(key) is not None
        return AddressTurn(key, counted=True, paced=paced)

    async def _forgive_address(self, turn: AddressTurn) -> None:
        if turn.key is not None and turn.counted:
            await self.by_address.forgive(turn.key)

    async def _verify(self, turn: AddressTurn, password: str, row: Row | None) -> bool:
        """Whether ``password`` is ``row``'s (a dummy hash's work when no row), checked in one of the
        address's slots when it is paced."""
        async def check() -> bool:
            return await verify_password(password, row["password_hash"] if row else None)

        if turn.key is None or not turn.paced:
            return await check()
        log.info("login_paced", address=turn.key, waiting=self.pacer.waiting(turn.key))
        return await self.pacer.check(turn.key, check)

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
