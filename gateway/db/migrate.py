"""Bring the schema up to date at start-up, with Alembic (revisions in gateway/db/migrations/versions).

Safe when several gateways start at once: on PostgreSQL the upgrade runs in
one transaction holding an advisory lock, so the first gateway migrates and
the others, once let in, find nothing left to do; on SQLite the upgrade's
transaction holds the writer lock (BEGIN IMMEDIATE) the same way.

A SQLite database made before Alembic (numbered SQL files, which
counted in ``PRAGMA user_version``) is stamped with the revision it had
reached, then upgraded in place.

Most starts find the schema current: one read says so, and Alembic is not
even imported (its import and its reading of every revision file took
0.15 to 0.27 CPU s of a gateway's start here, about 1.4 s in all, paid by
every gateway process, every restart and every test that opens a database).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = structlog.get_logger("gateway.db")

SCRIPT_LOCATION = "gateway.db:migrations"
VERSIONS = Path(__file__).parent / "migrations" / "versions"
# Any fixed number: the lock every gateway takes around its schema upgrade.
MIGRATION_LOCK_KEY = 0x64_72_6F_70_62_6F_78  # "dropbox"
# Alembic's own log lines are plain text; ours (structlog JSON) say what happened.
logging.getLogger("alembic").setLevel(logging.WARNING)


def newest_revision() -> str:
    """The head revision, from the revision files' names: revisions are numbered in order in a single line
    (tests/test_db.py checks that, and that this is Alembic's own head)."""
    return max(path.name[:4] for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


async def is_current(db) -> bool:
    """Whether ``db`` is at the newest revision already: one read, no lock, no Alembic. The schema only
    moves forward, so a gateway that finds it current while another upgrades it has nothing to wait for."""
    try:
        async with db.read() as conn:
            found = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    except DBAPIError:
        return False  # no such table: a new database, or one made before Alembic
    return found == [newest_revision()]


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    from alembic import command

    config = alembic_config(connection)
    if connection.dialect.name == "sqlite" and not inspect(connection).has_table("alembic_version"):
        legacy = connection.exec_driver_sql("PRAGMA user_version").scalar() or 0
        if legacy:
            command.stamp(config, f"{legacy:04d}")
            log.info("legacy_database_stamped", user_version=legacy)
    before = current_revision(connection)
    command.upgrade(config, "head")
    return before, current_revision(connection)


async def upgrade(db) -> None:
    """Upgrade ``db`` (a gateway.db.Database) to the newest revision."""
    if await is_current(db):
        return
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        before, after = await conn.run_sync(_upgrade)
    if before != after:
        log.info("database_migrated", engine=db.dialect, from_revision=before, to_revision=after)
