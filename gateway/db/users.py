"""Queries on users. Usernames compare without regard to case, on both engines: lower() = lower()
(the users_by_lower_username index)."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.engine import Database, Row, fetch, fetch_one, fetch_value, storable_text
from gateway.db.tables import users

On = Database | AsyncConnection


class DuplicateUsername(Exception):
    """The username is taken (the unique index said so)."""


def same_name(name: str):
    return func.lower(users.c.username) == func.lower(name)


async def insert_user(db: Database, username: str, email: str, password_hash: str, now: str) -> int:
    """The new user's id; DuplicateUsername if the name is taken, however it is written."""
    statement = (
        insert(users)
        .values(username=username, email=email, password_hash=password_hash, created_at=now)
        .returning(users.c.id)
    )
    try:
        async with db.transaction() as conn:
            return (await conn.execute(statement)).scalar_one()
    except IntegrityError as exc:
        raise DuplicateUsername(username) from exc


CREDENTIAL_COLUMNS = (users.c.id, users.c.username, users.c.password_hash, users.c.token_generation)


async def user_by_name(on: On, username: str) -> Row | None:
    """What a log-in needs: id, username, password_hash, token_generation."""
    if not storable_text(username):
        return None  # no stored name holds what the database cannot
    return await fetch_one(on, select(*CREDENTIAL_COLUMNS).where(same_name(username)))


async def user_by_id(on: On, user_id: int) -> Row | None:
    return await fetch_one(on, select(users.c.id, users.c.username, users.c.email).where(users.c.id == user_id))


async def set_password(db: Database, user_id: int, password_hash: str, old_hash: str) -> int | None:
    """Replace the password hash, if it is still ``old_hash``, and move the token generation on.

    The new token generation; None when the hash had changed meanwhile (a
    concurrent password change won: this one must not overwrite it).
    """
    statement = (
        update(users)
        .where(users.c.id == user_id, users.c.password_hash == old_hash)
        .values(password_hash=password_hash, token_generation=users.c.token_generation + 1)
        .returning(users.c.token_generation)
    )
    async with db.transaction() as conn:
        return (await conn.execute(statement)).scalar_one_or_none()


async def ids_by_name(on: On, names: Sequence[str]) -> dict[str, int]:
    """The ids of the users with these names, keyed by the lower-case name; unknown names are left out."""
    if not names:
        return {}
    lowered = sorted({name.lower() for name in names if storable_text(name)})
    if not lowered:
        return {}
    query = select(func.lower(users.c.username).label("name"), users.c.id).where(
        func.lower(users.c.username).in_(lowered)
    )
    return {row["name"]: row["id"] for row in await fetch(on, query)}


async def user_created_at(on: On, user_id: int) -> str | None:
    """When the user signed up (their root folder's time)."""
    return await fetch_value(on, select(users.c.created_at).where(users.c.id == user_id))


async def quota_of(on: On, user_id: int) -> Row | None:
    """The user's own quota setting (``quota_bytes``, None: the gateway's); None when there is no such user."""
    return await fetch_one(on, select(users.c.id, users.c.quota_bytes).where(users.c.id == user_id))


async def lock_user(conn: AsyncConnection, user_id: int) -> None:
    """Lock the user's row until ``conn`` commits (FOR UPDATE; SQLite's writer lock holds every row)."""
    await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
