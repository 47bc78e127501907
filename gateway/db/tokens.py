"""Queries on access tokens: revoked token ids, and the state a token is checked against on every request."""
from __future__ import annotations

from sqlalchemy import delete, exists, select

from gateway.db.engine import Database, Row, change, fetch_one, insert_or
from gateway.db.tables import revoked_tokens, users


async def token_state(db: Database, user_id: int, token_id: str) -> Row | None:
    """The user's ``token_generation`` and whether ``token_id`` is ``revoked``; None when there is no such user.

    One statement on two primary keys (users.id, revoked_tokens.jti): the
    whole cost of checking a token per request.
    """
    revoked = exists().where(revoked_tokens.c.jti == token_id)
    query = select(users.c.token_generation, revoked.label("revoked")).where(users.c.id == user_id)
    return await fetch_one(db, query)


async def revoke(db: Database, token_id: str, user_id: int, expires_at: str, now: str) -> None:
    """Record ``token_id`` as revoked until ``expires_at``; revoking it again changes nothing."""
    async with db.transaction() as conn:
        statement = insert_or(db.dialect, revoked_tokens).values(
            jti=token_id, user_id=user_id, expires_at=expires_at, revoked_at=now
        ).on_conflict_do_nothing(index_elements=[revoked_tokens.c.jti])
        await conn.execute(statement)


async def forget_expired(db: Database, now: str) -> int:
    """Drop revoked ids of tokens that have expired anyway (their expiry refuses them)."""
    return await change(db, delete(revoked_tokens).where(revoked_tokens.c.expires_at <= now))
