"""The metadata database: an SQLAlchemy asyncio engine on SQLite (the default) or PostgreSQL.

SQLite, from ``GATEWAY_DATABASE_PATH``: WAL, so readers go on while one
writer writes. SQLAlchemy's aiosqlite dialect drives it, over a driver that
hands each statement to the connection's thread once, not four times, a
transaction's BEGIN with its first statement, and runs write transactions and
reads of point lookups on the event loop, where they wait for nothing
(gateway/db/sqlite_driver.py).
Every write transaction starts with ``BEGIN IMMEDIATE``, before its first
statement: it takes SQLite's writer lock at once (across processes too), so
two writers never both read and then fail to upgrade, and whatever a write
transaction reads stays true until it commits. Within one process the writers
also queue on an asyncio lock, so they wait their turn instead of spinning on
``busy_timeout``; that lock is an economy, the database's lock is what is correct.

PostgreSQL (asyncpg), from ``GATEWAY_DATABASE_URL=postgresql://...``: READ
COMMITTED transactions; what must not change under a transaction is locked
explicitly (``SELECT ... FOR UPDATE`` and :meth:`Database.lock_content`).

The few reads every request makes run on the driver itself, their SQL written by SQLAlchemy
(gateway/db/plain.py: SQLAlchemy's execution cost more CPU than the statements); everything else goes
through SQLAlchemy Core.

Reads run start to finish on a connection checked out for them alone: a read
left open across awaits would pin its snapshot, and later reads would miss rows
other requests committed since.

When the database is not there (PostgreSQL stopped, restarting, failing over)
or a write finds no room, :meth:`Database.read` and :meth:`Database.transaction`
raise :class:`DatabaseUnavailable` or :class:`DiskFull` instead of the driver's
error (the HTTP layer answers both 503). The pool checks a connection before
handing it out (``pool_pre_ping``), so connections a restarted server ended are
replaced, not used: the gateway works again as soon as the database answers.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Table, event, exc as sa_exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from gateway.db import sqlite_driver
from gateway.db.plain import Plain
from gateway.disk import out_of_space

log = structlog.get_logger("gateway.db")

Row = dict[str, Any]
Params = Mapping[str, Any] | None

# Seconds to wait for PostgreSQL to accept a connection: a server that does not answer is a 503, not a hang.
CONNECT_TIMEOUT = 5
# PostgreSQL's SQLSTATEs for a server that is not there for us now: a connection exception (class 08),
# an administrator's or a crash's shutdown, a server still starting (57P01-57P03), no connection slot left.
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
POSTGRES_DISK_FULL = "53100"
# Connections to SQLite the pool keeps (and as many more it makes while they are all out, closed on their
# return). A connection made for one checkout and closed after it costs about 2 ms of CPU (its thread,
# the open, the pragmas), more than the request's own statements: at 32 requests at a time, a pool of
# SQLAlchemy's default 5 made and closed one every few requests (issue 26, bench control). An idle one
# costs a thread waiting and SQLite's page cache.
SQLITE_POOL_SIZE = 32
# PostgreSQL's pool when the settings say nothing (gateway/config.py's database_pool_size).
POSTGRES_POOL_SIZE = 10
SQLITE_FULL = 13  # "database or disk is full": no room for the write (a full disk, or max_page_count)


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used now (stopped, restarting, connection lost); trying again later may work."""


class DiskFull(Exception):
    """A write found no room on the database's disk. Reads still work."""


def _fault(exc: BaseException, *, connecting: bool) -> Exception | None:
    """What ``exc`` says about the database, as DatabaseUnavailable or DiskFull; None for anything else.

    While connecting, a refused or timed-out connection or any driver error means the database
    is not there. Afterwards only what the driver says about the connection or the disk counts:
    an error of the caller's own (a constraint, a domain error raised inside a transaction)
    passes through unchanged.
    """
    if isinstance(exc, (DatabaseUnavailable, DiskFull)):
        return None
    if out_of_space(exc):
        return DiskFull(str(exc))
    cause: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        cause = exc.orig  # the driver's error, without the SQL statement
        sqlite_code = getattr(cause, "sqlite_errorcode", None)
        sqlstate = getattr(cause, "sqlstate", None) or ""
        if (sqlite_code is not None and sqlite_code & 0xFF == SQLITE_FULL) or sqlstate == POSTGRES_DISK_FULL:
            return DiskFull(str(cause))
        if exc.connection_invalidated or sqlstate.startswith(UNAVAILABLE_SQLSTATES):
            return DatabaseUnavailable(f"{type(cause).__name__}: {cause}")
    if connecting and isinstance(exc, (OSError, TimeoutError, sa_exc.DBAPIError, sa_exc.TimeoutError)):
        return DatabaseUnavailable(f"{type(cause).__name__}: {cause}")
    return None


def database_url(url: str, path: str) -> str:
    """The SQLAlchemy URL: ``url`` when set (postgresql://... or sqlite:///...), else SQLite at ``path``."""
    if not url:
        return f"sqlite+aiosqlite:///{path}"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    raise ValueError(f"GATEWAY_DATABASE_URL: use postgresql://user:password@host:port/db or sqlite:///path, not {scheme}://")


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """Our own BEGINs (IMMEDIATE for writes) instead of the driver's (every connection is set up by
    gateway/db/sqlite_driver.py's ``configure``: WAL, foreign keys, no BEGIN of the driver's own)."""

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection) -> None:
        # Run by the driver with the transaction's first statement, in its hand-off (gateway/db/sqlite_driver.py).
        options = connection.get_execution_options()
        driver = connection.connection.driver_connection
        if options.get("alone"):  # one statement, which SQLite runs as a transaction of its own (Database.read)
            if options.get("point"):
                driver.lookup_alone()
            return
        if options.get("write"):
            driver.begin_with_next("BEGIN IMMEDIATE")
        else:
            driver.begin_with_next("BEGIN", point=bool(options.get("point")))


# Set in the tasks that work in the background (the app's periodic rounds, the journal's follower):
# DatabaseWork counts their statements apart, so that a request's figures are its own.
_BACKGROUND: ContextVar[bool] = ContextVar("background_work", default=False)


def in_background() -> None:
    """Mark the running task, and the tasks it starts from now on, as background work (DatabaseWork)."""
    _BACKGROUND.set(True)


class DatabaseWork:
    """What the gateway has asked of the database so far: statements sent (each a round trip to the
    driver's thread or the server; an executemany is one; a BEGIN is not one: SQLite's goes with the first
    statement, PostgreSQL's is asyncpg's own) and transactions begun
    (reads and writes), for requests and for background work (in_background) apart. Read by the metrics
    (gateway/core/metrics.py): ``bench control`` divides the requests' by the requests it made; with the
    background's in the same count, a polling round landing in a short run showed as part of every
    request. A few integer additions per statement; nothing is kept per statement."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.background_statements = 0
        self.background_transactions = 0

    def watch(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine, "begin", self._begin)

    def _statement(self, *_args: Any) -> None:
        if _BACKGROUND.get():
            self.background_statements += 1
        else:
            self.statements += 1

    def _begin(self, *_args: Any) -> None:
        if _BACKGROUND.get():
            self.background_transactions += 1
        else:
            self.transactions += 1


class Database:
    """The engine, and the two ways in: a short read, or a write transaction."""

    def __init__(self, engine: AsyncEngine, checkpointer: sqlite_driver.Checkpointer | None = None):
        self.engine = engine
        self._checkpointer = checkpointer  # SQLite's WAL checkpoints (gateway/db/sqlite_driver.py)
        self.dialect: str = engine.dialect.name  # "sqlite" or "postgresql"
        # The same pool with the options of a read of one statement and of a write transaction, set once here
        # rather than on each connection checked out (an awaited call of its own, about 30 us of CPU each).
        self._alone = engine.execution_options(
            **({"alone": True} if self.dialect == "sqlite" else {"isolation_level": "AUTOCOMMIT"}))
        self._writing = engine.execution_options(write=True)
        self._point = engine.execution_options(point=True) if self.dialect == "sqlite" else engine
        self._alone_point = self._alone.execution_options(point=True) if self.dialect == "sqlite" else self._alone
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        # What the last write transaction found when the disk was full; None since one committed.
        self.out_of_space: str | None = None
        self.work = DatabaseWork()
        self.work.watch(engine)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, pool_size: int = POSTGRES_POOL_SIZE) -> Database:
        """Connect and bring the schema up to date (gateway/db/migrate.py). ``pool_size``: PostgreSQL's
        connections kept open, and as many more opened while all are in use (``GATEWAY_DATABASE_POOL_SIZE``)."""
        from gateway.db.migrate import upgrade

        sa_url = make_url(url)
        checkpointer = None
        if sa_url.get_backend_name() == "sqlite":
            database = sa_url.database or ""
            if not database or database == ":memory:":
                raise ValueError("the SQLite database must be a file: several connections share it")
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            checkpointer = sqlite_driver.Checkpointer(database)
            engine = create_async_engine(sa_url, pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE,
                                         async_creator=functools.partial(sqlite_driver.Connection.connect, database,
                                                                         checkpointer))
            _prepare_sqlite(engine)
        else:
            # pool_pre_ping: a pooled connection is checked before use, so the connections a
            # restarted server ended are replaced instead of failing the next requests.
            engine = create_async_engine(sa_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                                         connect_args={"timeout": CONNECT_TIMEOUT})
        db = cls(engine, checkpointer)
        if migrate:
            try:
                await upgrade(db)
            except BaseException:
                await engine.dispose()
                raise
        return db

    async def close(self) -> None:
        await self.engine.dispose()
        if self._checkpointer is not None:
            await self._checkpointer.close()

    @contextlib.asynccontextmanager
    async def read(self, *, alone: bool = False, point: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for a few reads that see one snapshot; released (and the snapshot with it) at the end.

        ``alone``: for exactly one statement, which both engines run as a transaction of its own (its own
        snapshot), so no BEGIN and no ROLLBACK go with it: a hand-off to SQLite's thread instead of two,
        a round trip to PostgreSQL instead of three (asyncpg's autocommit).

        ``point``: every statement is a point lookup (a few rows by key, through an index): on SQLite they
        run on the event loop's thread, without a hand-off (gateway/db/sqlite_driver.py, Connection.runs_here
        and first_lookup), the first unless it would wait for a lock. Never for a read that may scan."""
        if alone:
            view = self._alone_point if point else self._alone
        else:
            view = self._point if point else self.engine
        async with self._connection(view) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed at the end or rolled back if the block raises."""
        try:
            async with self._writer_turn(), self._connection(self._writing) as conn:
                async with conn.begin():
                    yield conn
        except DiskFull as exc:
            self.out_of_space = str(exc)
            raise
        self.out_of_space = None

    @contextlib.asynccontextmanager
    async def _connection(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A pooled connection of ``engine`` (this database's, or one with options); the database's absence or a
        full disk raise DatabaseUnavailable or DiskFull."""
        connected = False
        try:
            async with engine.connect() as conn:
                connected = True
                yield conn
        except Exception as exc:
            fault = _fault(exc, connecting=not connected)
            if fault is None:
                raise
            raise fault from exc

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
        else:
            async with self._write_lock:
                yield

    async def lock_content(self, conn: AsyncConnection, fingerprint: str) -> None:
        """Serialise, until ``conn`` commits, the transactions that add or drop references to this content.

        SQLite's writer lock already serialises every write transaction. On
        PostgreSQL a transaction-scoped advisory lock keyed on the fingerprint
        does it for this content only (gateway/core/deletion.py says why).
        """
        if self.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": content_lock_key(fingerprint)})

    # Conveniences: one statement, start to finish, rows as dicts.

    async def fetchall(self, statement: str | Executable, params: Params = None) -> list[Row]:
        return await fetch(self, _statement(statement), params)

    async def fetchval(self, statement: str | Executable, params: Params = None) -> Any:
        return await fetch_value(self, _statement(statement), params)

    async def execute(self, statement: str | Executable, params: Params = None) -> int:
        """One write statement in its own transaction; the number of rows it changed."""
        return await change(self, _statement(statement), params)

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")


def _statement(statement: str | Executable) -> Executable:
    return text(statement) if isinstance(statement, str) else statement


def content_lock_key(fingerprint: str) -> int:
    """A signed 64-bit advisory lock key from a hex fingerprint (its first 15 hex digits)."""
    return int(fingerprint[:15] or "0", 16)


def storable_text(value: str) -> bool:
    """Whether both engines can hold ``value``: no NUL (PostgreSQL refuses it), valid UTF-8 (no lone surrogates)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def insert_or(dialect: str, table: Table):
    """The ``dialect``'s INSERT, with ``on_conflict_do_nothing``/``_do_update`` (the same SQL on both engines)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def fetch(on: Database | AsyncConnection, statement: Executable | Plain, params: Params = None) -> list[Row]:
    """The rows of a query as dicts: on a connection (inside its transaction), or a read of its own (of this
    statement alone: Database.read). A :class:`~gateway.db.plain.Plain` read runs on the driver itself."""
    if isinstance(on, Database):
        async with on.read(alone=True) as conn:
            return await fetch(conn, statement, params)
    if isinstance(statement, Plain):
        return await statement.rows(on, params or {})
    result = await on.execute(statement, params or {})
    return [dict(row._mapping) for row in result]


async def fetch_one(on: Database | AsyncConnection, statement: Executable | Plain, params: Params = None) -> Row | None:
    found = await fetch(on, statement, params)
    return found[0] if found else None


async def fetch_value(on: Database | AsyncConnection, statement: Executable, params: Params = None) -> Any:
    found = await fetch(on, statement, params)
    return next(iter(found[0].values())) if found else None


async def change(on: Database | AsyncConnection, statement: Executable, params: Params = None) -> int:
    """Run a write statement on a connection, or in a transaction of its own; the rows it changed."""
    if isinstance(on, Database):
        async with on.transaction() as conn:
            return await change(conn, statement, params)
    return (await on.execute(statement, params or {})).rowcount
