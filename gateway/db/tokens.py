"""Queries on access tokens: revoked token ids, and the state a token is checked against on every request."""
from __future__ import annotations

from sqlalchemy import and_, bindparam, delete, select

from gateway.db.plain import Plain
from gateway.db.engine import Database, Row, change, fetch, insert_or
from gateway.db.tables import revoked_tokens, users


# Built once (every request with an uncached token runs it).
TOKEN_FACTS = Plain(
    select(users.c.token_generation, revoked_tokens.c.jti)
    .select_from(users.outerjoin(
        revoked_tokens, and_(revoked_tokens.c.user_id == users.c.id, revoked_tokens.c.expires_at > bindparam("now"))))
    .where(users.c.id == bindparam("user_id"))
)


async def token_state(db: Database, user_id: int, now: str) -> Row | None:
    """The user's ``token_generation`` and the ids of their ``revoked`` tokens not yet expired; None: no such user.

    One statement (users by primary key, revoked_tokens by revoked_tokens_by_user):
    what gateway/core/accounts.py checks every access token against.
    """
    async with db.read(alone=True, point=True) as conn:  # a lookup by key: no hand-off on SQLite (Database.read)
        rows = await fetch(conn, TOKEN_FACTS, {"user_id": user_id, "now": now})
    if not rows:
        return None
    return {"token_generation": rows[0]["token_generation"], "revoked": sorted(r["jti"] for r in rows if r["jti"])}


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
