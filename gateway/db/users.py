"""Queries on users. Usernames compare without regard to case, on both engines: lower() = lower()
(the users_by_lower_username index)."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.engine import Database, Row, change, fetch, fetch_one, fetch_value, storable_text
from gateway.db.plain import Plain
from gateway.db.tables import invitations, users

On = Database | AsyncConnection


class DuplicateUsername(Exception):
    """The username is taken (the unique index said so)."""


class InvitationUnusable(Exception):
    """No invitation with that code that is unused and unexpired."""


def same_name(name: str):
    return func.lower(users.c.username) == func.lower(name)


async def insert_user(db: Database, username: str, email: str, password_hash: str, now: str,
                      invitation_hash: str | None = None) -> int:
    """The new user's id; DuplicateUsername if the name is taken, however it is written.

    With ``invitation_hash``, the invitation is used up in the same transaction
    (InvitationUnusable when it is used, expired or unknown): a sign-up that
    fails leaves it unused, and two sign-ups with one code cannot both win.
    """
    statement = (
        insert(users)
        .values(username=username, email=email, password_hash=password_hash, created_at=now)
        .returning(users.c.id)
    )
    try:
        async with db.transaction() as conn:
            if invitation_hash is not None and not await _use_invitation(conn, invitation_hash, now):
                raise InvitationUnusable()
            user_id = (await conn.execute(statement)).scalar_one()
            if invitation_hash is not None:
                await conn.execute(update(invitations).where(invitations.c.code_hash == invitation_hash)
                                   .values(used_by=user_id))
            return user_id
    except IntegrityError as exc:
        raise DuplicateUsername(username) from exc


async def _use_invitation(conn: AsyncConnection, code_hash: str, now: str) -> bool:
    usable = (invitations.c.code_hash == code_hash, invitations.c.used_at.is_(None), invitations.c.expires_at > now)
    return (await conn.execute(update(invitations).where(*usable).values(used_at=now))).rowcount == 1


async def insert_invitation(db: Database, code_hash: str, now: str, expires_at: str) -> None:
    await change(db, insert(invitations).values(code_hash=code_hash, created_at=now, expires_at=expires_at))


CREDENTIAL_COLUMNS = (users.c.id, users.c.username, users.c.password_hash, users.c.token_generation,
                      users.c.disabled_at)


async def user_by_name(on: On, username: str) -> Row | None:
    """What a log-in needs: id, username, password_hash, token_generation, disabled_at."""
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


async def lock_user(conn: AsyncConnection, user_id: int) -> None:
    """Lock the user's row until ``conn`` commits (FOR UPDATE). On SQLite nothing is sent: a write
    transaction's writer lock (``BEGIN IMMEDIATE``) already holds every row, and a SELECT would lock nothing."""
    if conn.dialect.name == "sqlite":
        return
    await LOCK_USER.rows(conn, {"user_id": user_id})


# A plain statement (gateway/db/plain.py): every upload start on PostgreSQL runs it.
LOCK_USER = Plain(select(users.c.id).where(users.c.id == bindparam("user_id")).with_for_update())


async def list_users(on: On) -> list[Row]:
    """Every user, oldest first: id, username, email, created_at, quota_bytes, disabled_at."""
    return await fetch(on, select(users.c.id, users.c.username, users.c.email, users.c.created_at,
                                  users.c.quota_bytes, users.c.disabled_at).order_by(users.c.id))


async def set_disabled(db: Database, username: str, disabled_at: str | None) -> int | None:
    """Disable the user (``disabled_at``: when) or enable them again (None); their id, None: no such user.

    Disabling also moves the token generation on: every access token issued
    before stops working, and enabling again does not bring them back.
    """
    values: dict = {"disabled_at": disabled_at}
    if disabled_at is not None:
        values["token_generation"] = users.c.token_generation + 1
    statement = update(users).where(same_name(username)).values(**values).returning(users.c.id)
    async with db.transaction() as conn:
        return (await conn.execute(statement)).scalar_one_or_none()


async def set_quota(db: Database, username: str, quota_bytes: int | None) -> int | None:
    """The user's own quota (None: the gateway's setting, 0: unlimited); their id, None: no such user."""
    statement = update(users).where(same_name(username)).values(quota_bytes=quota_bytes).returning(users.c.id)
    async with db.transaction() as conn:
        return (await conn.execute(statement)).scalar_one_or_none()
