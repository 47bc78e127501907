"""Bring the schema up to date at start-up, with Alembic (revisions in gateway/db/migrations/versions).

Safe when several gateways start at once: on PostgreSQL the upgrade runs in
one transaction holding an advisory lock, so the first gateway migrates and
the others, once let in, find nothing left to do; on SQLite the upgrade's
transaction holds the writer lock (BEGIN IMMEDIATE) the same way.

A SQLite database made before Alembic (numbered SQL files, which
counted in ``PRAGMA user_version``) is stamped with the revision it had
reached, then upgraded in place.
"""
from __future__ import annotations

import logging

import structlog
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

log = structlog.get_logger("gateway.db")

SCRIPT_LOCATION = "gateway.db:migrations"
# Any fixed number: the lock every gateway takes around its schema upgrade.
MIGRATION_LOCK_KEY = 0x64_72_6F_70_62_6F_78  # "dropbox"
# Alembic's own log lines are plain text; ours (structlog JSON) say what happened.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
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
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        before, after = await conn.run_sync(_upgrade)
    if before != after:
        log.info("database_migrated", engine=db.dialect, from_revision=before, to_revision=after)
