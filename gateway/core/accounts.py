"""Accounts: signing up, logging in (an access token), the caller's own profile."""
from __future__ import annotations

from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import InvalidCredentials, UnknownUser, UsernameTaken
from gateway.core.passwords import hash_password, verify_password
from gateway.core.tokens import TokenUser, issue_token, verify_token
from gateway.db import Database, Row
from gateway.db import users as users_db

log = structlog.get_logger("gateway.users")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


class Accounts:
    def __init__(self, config: Config, db: Database, clock: Clock):
        self.config = config
        self.db = db
        self.clock = clock

    async def sign_up(self, username: str, email: str, password: str) -> Row:
        """The new user (user_id, username, email); UsernameTaken if the name is, whatever its case."""
        password_hash = await hash_password(password)
        try:
            user_id = await users_db.insert_user(self.db, username, email, password_hash, stamp_now(self.clock))
        except users_db.DuplicateUsername as exc:
            raise UsernameTaken(username) from exc
        log.info("user_created", new_user_id=user_id, username=username)
        return {"user_id": user_id, "username": username, "email": email}

    async def log_in(self, username: str, password: str) -> AccessToken:
        """An access token; InvalidCredentials, in the same time, for an unknown name or a wrong password."""
        row = await users_db.user_by_name(self.db, username)
        if not await verify_password(password, row["password_hash"] if row else None) or row is None:
            log.info("login_failed", username=username)
            raise InvalidCredentials()
        ttl = self.config.token_ttl
        return AccessToken(issue_token(self.config.jwt_secret, row["id"], row["username"], ttl), ttl)

    def authenticate(self, token: str) -> TokenUser:
        """Who an access token speaks for; TokenExpired or InvalidToken."""
        return verify_token(self.config.jwt_secret, token)

    async def profile(self, user_id: int) -> Row:
        row = await users_db.user_by_id(self.db, user_id)
        if row is None:
            raise UnknownUser()
        return {"user_id": row["id"], "username": row["username"], "email": row["email"]}
