"""Sessions: which access tokens still speak for their user, checked on every request; renewing and ending them.

A log-in starts a session: its first token's ``jti`` is the session id (``sid``
in every token of it). A token in use is renewed (:meth:`Sessions.renew`) before
it expires: a new token of the same session, for another ``token_ttl``, up to
``session_max_age`` after the log-in. A client that stops using a session stops
renewing it, and it ends when its last token expires (SECURITY.md says why this
and not refresh tokens). An access token is good until it expires unless it is
ended first:

- **Log-out** revokes the token's session: its ``sid`` goes into the
  ``revoked_tokens`` table (which holds token and session ids alike), kept until
  every token of the session would have expired anyway, plus a clock-skew
  allowance; every token of the session, renewed ones included, is refused.
- **A password change** (gateway/core/accounts.py) moves the user's
  ``token_generation`` on; every token carries the generation it was issued
  in, so all earlier tokens stop working.

:meth:`Sessions.authenticate` checks both for every request against the
user's entry ``tokens:<user_id>`` = ``{"v": 1, "gen": int, "revoked": [jti, ...]}``,
loaded in one query and read through the cache (gateway/core/cached.py:
leases, so a fill never brings a stale entry back; a drop that fails while the
cache is down is owed until it lands); :meth:`Sessions.changed`
drops it *after* every log-out and password change commits. With ``redis://``
every gateway process sees the drop at once; ``memory://`` is for one process
(as for permissions); ``none://`` asks the database on every request.
"""
from __future__ import annotations

from datetime import datetime, UTC

import structlog

from gateway.config import Config
from gateway.core.cached import ReadThrough
from gateway.core.clock import Clock, stamp_ago, stamp_now, timestamp
from gateway.core.errors import SessionTooOld, TokenRevoked, UnknownUser
from gateway.core.tokens import AccessToken, TokenUser, issue_token, token_time, verify_token
from gateway.db import Database
from gateway.db import tokens as tokens_db

log = structlog.get_logger("gateway.sessions")

ENTRY_VERSION = 1
# Seconds a revocation outlives its token's expiry, for gateways whose clocks run behind this one's.
CLOCK_SKEW_ALLOWANCE = 300


def cache_key(user_id: int) -> str:
    return f"tokens:{user_id}"


class Sessions:
    def __init__(self, config: Config, db: Database, clock: Clock, entries: ReadThrough):
        self.config = config
        self.db = db
        self.clock = clock
        self.entries = entries
        self.cache = entries.cache

    async def authenticate(self, token: str) -> TokenUser:
        """Who an access token speaks for; TokenExpired, InvalidToken, TokenRevoked or UnknownUser."""
        user = verify_token(self.config.jwt_secret, token)
        state = await self._state(user.user_id)
        if state is None:
            raise UnknownUser()
        revoked = state["revoked"]
        if user.token_id in revoked or user.session_id in revoked or state["gen"] != user.generation:
            raise TokenRevoked()
        return user

    async def renew(self, user: TokenUser) -> AccessToken:
        """A new token of the session ``user``'s token belongs to (authenticated already); SessionTooOld.

        The token renewed stays good until it expires: a request already on its
        way with it, or another tab of the same browser still holding it, goes on
        working, and two renewals at once are harmless (each gets a token of the
        same session). No token outlives the session's ``session_max_age``.
        """
        now = token_time()
        left = user.session_started + self.config.session_max_age - now
        if left <= 0:
            raise SessionTooOld()
        ttl = min(self.config.token_ttl, left)
        token = issue_token(self.config.jwt_secret, user.user_id, user.username, user.generation, ttl,
                            session=(user.session_id, user.session_started))
        log.info("token_renewed")
        return AccessToken(token, ttl)

    async def _state(self, user_id: int) -> dict | None:
        """The user's entry (module docstring), from the cache when it is there; None: no such user."""

        async def load() -> dict | None:
            row = await tokens_db.token_state(self.db, user_id, stamp_now(self.clock))
            if row is None:
                return None
            return {"v": ENTRY_VERSION, "gen": row["token_generation"], "revoked": row["revoked"]}

        return await self.entries.get(cache_key(user_id), ENTRY_VERSION, load)

    async def log_out(self, user: TokenUser) -> None:
        """End the session of the access token ``user`` came with, every token of it, on every gateway.

        Its revocation is kept until the last token the session may have (one
        renewed just now) has expired.
        """
        last_expiry = max(user.expires_at, token_time() + self.config.token_ttl)
        expires_at = timestamp(datetime.fromtimestamp(last_expiry, UTC))
        await tokens_db.revoke(self.db, user.session_id, user.user_id, expires_at, stamp_now(self.clock))
        await self.changed(user.user_id)
        log.info("logged_out")

    async def changed(self, user_id: int) -> None:
        """The user's tokens changed (a revocation, a new generation) and it is committed: drop the entry."""
        await self.entries.forget(cache_key(user_id))

    async def forget_expired_revocations(self) -> int:
        """Drop the revocations of tokens long expired (their expiry refuses them); how many."""
        return await tokens_db.forget_expired(self.db, stamp_ago(self.clock, CLOCK_SKEW_ALLOWANCE))
