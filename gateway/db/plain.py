"""The statements every request makes, run as plain driver SQL: SQLAlchemy Core only writes their SQL.

SQLAlchemy Core costs about 130 us of CPU a statement on top of what the driver takes (its
execution context, the greenlet that adapts the driver's coroutines, its result object): a point
lookup SQLite runs in 12 us took 143 us through it, on a 2-core VM (issue 26, measured inside a
write transaction, where no thread hop is involved). A request starting an upload made nine such
statements, an uncached ``GET /dropbox/v1/files/{id}`` four.

A :class:`Plain` is one such statement (a SELECT, or an INSERT or UPDATE of an upload start's write
transaction: its four write statements took 20% of its CPU through SQLAlchemy), written with SQLAlchemy
Core like every other query (the
tables' description stays the one place that names columns): it is compiled once per dialect into
the SQL SQLAlchemy itself would send, and each run hands that SQL and the parameters, in the
driver's order, to the connection's driver: SQLite's (gateway/db/sqlite_driver.py: its one hand-off
to the connection's thread, or none inside a write transaction) or asyncpg. The rows come back as
dicts keyed by the result's column names, each value through its column type's result processor,
as SQLAlchemy gives them (:func:`gateway.db.engine.fetch`). It runs on the SQLAlchemy connection it
is given and in that connection's transaction:

- a transaction is begun first if the connection has none, as SQLAlchemy begins one before its
  first statement (the ``begin`` event, so SQLite's ``BEGIN`` still goes with this statement and
  a read of one statement still has none: gateway/db/engine.py);
- on PostgreSQL, SQLAlchemy's asyncpg adapter starts its transaction lazily, at its first statement,
  under its lock: this does the same, through the adapter (its ``_execute_mutex``,
  ``_transaction``, ``_start_transaction``: SQLAlchemy is pinned in constraints.txt, and
  tests/test_db.py runs these reads on both engines against SQLAlchemy's own);
- ``before_cursor_execute`` listeners hear of the statement, as of any other
  (gateway/db/engine.py's DatabaseWork counts it);
- the driver's errors are raised as SQLAlchemy's (``DBAPIError`` and its subclasses, the driver's
  error as ``orig``), a lost connection invalidated, so gateway/db/engine.py maps them as before.

A write gives its rows (RETURNING: :meth:`Plain.rows`), the rows it changed (:meth:`Plain.count`), or
runs once for each of several parameter sets (:meth:`Plain.run_many`: executemany). An INSERT names its
columns once (``keys``): every run gives them all, as SQLAlchemy Python-side defaults are not applied
here (the tables have none: their defaults are the server's). Only the few statements every request
runs are written so; everything else stays with SQLAlchemy.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Delete, Insert, Select, Update

Row = dict[str, Any]
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Form:
    """A statement compiled for one dialect: its SQL, its parameters' names in the driver's order with
    their bind processors, the values the statement holds itself (a LIMIT), its columns' result processors."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    held: Mapping[str, Any]
    results: tuple[Processor, ...]


class Plain:
    """A statement run as plain driver SQL (see the module docs); build it once, at import. ``keys``: the
    columns an INSERT gives values for (each run gives them all)."""

    def __init__(self, statement: Select | Insert | Update | Delete, keys: tuple[str, ...] | None = None):
        self.statement = statement
        self.keys = keys
        self._forms: dict[str, Form] = {}

    def form(self, dialect: Dialect) -> Form:
        """The statement compiled for ``dialect``, once."""
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=list(self.keys) if self.keys else None)
            names = tuple(compiled.positiontup or ())
            form = Form(
                sql=str(compiled),
                names=names,
                binds=tuple(compiled.binds[name].type.bind_processor(dialect) for name in names),
                held=dict(compiled.params),
                results=tuple(column.type.result_processor(dialect, None)
                              for column in self.statement.exported_columns),
            )
            self._forms[dialect.name] = form
        return form

    def args(self, form: Form, params: Mapping[str, Any]) -> list[Any]:
        """``params`` (and what the statement holds) in the driver's order, through the bind processors."""
        values = {**form.held, **params}
        return [value if bind is None else bind(value)
                for value, bind in zip((values[name] for name in form.names), form.binds, strict=True)]

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Row]:
        """The statement's rows as dicts, run on ``conn``'s driver in ``conn``'s transaction."""
        form = self.form(conn.dialect)
        columns, records, _ = await _run(conn, form, self.args(form, params), _RETURNS_ROWS)
        processors = form.results
        if not any(processors):
            return [dict(zip(columns, record, strict=True)) for record in records]
        return [{column: value if process is None else process(value)
                 for column, value, process in zip(columns, record, processors, strict=True)}
                for record in records]

    async def count(self, conn: AsyncConnection, params: Mapping[str, Any]) -> int:
        """Run a write statement in ``conn``'s transaction; the number of rows it changed."""
        form = self.form(conn.dialect)
        return (await _run(conn, form, self.args(form, params), _COUNTS))[2]

    async def run_many(self, conn: AsyncConnection, many: Iterable[Mapping[str, Any]]) -> None:
        """Run a write statement once for each parameter set, in one call to the driver (executemany)."""
        form = self.form(conn.dialect)
        await _run(conn, form, [self.args(form, params) for params in many], _MANY)


# How a statement runs on the driver: for its rows, for the rows it changed, or once per parameter set.
_RETURNS_ROWS, _COUNTS, _MANY = "rows", "count", "many"


async def _run(conn: AsyncConnection, form: Form, args: list[Any], how: str) -> tuple[list[str], list[Any], int]:
    """The statement on ``conn``'s driver in its transaction (begun first if due), heard of by the
    ``before_cursor_execute`` listeners; (columns, records, rows changed); the driver's errors as SQLAlchemy's."""
    sync = conn.sync_connection
    assert sync is not None, "an AsyncConnection in use has its connection"
    if not sync.in_transaction():
        # What SQLAlchemy does before a connection's first statement (the module docs). Begun on the sync
        # connection, as AsyncConnection.begin() would begin it but without its greenlet: neither dialect's
        # BEGIN does I/O here (SQLite's goes with the statement, asyncpg's adapter starts its own below).
        sync.begin()
    sync.dispatch.before_cursor_execute(sync, None, form.sql, args, None, how == _MANY)
    # The pooled connection as it is, without a greenlet; one that was invalidated is made again through one.
    raw = sync.connection if not sync.invalidated else await conn.get_raw_connection()
    try:
        if conn.dialect.name == "sqlite":
            return await _on_sqlite(raw, form.sql, args, how)
        return await _on_asyncpg(raw, form.sql, args, how)
    except conn.dialect.loaded_dbapi.Error as error:
        invalidated = conn.dialect.is_disconnect(error, raw, None)
        if invalidated:
            await conn.invalidate()
        raise sa_exc.DBAPIError.instance(form.sql, args, error, conn.dialect.loaded_dbapi.Error,
                                         connection_invalidated=invalidated, dialect=conn.dialect) from error


async def _on_sqlite(raw: PoolProxiedConnection, sql: str, args: list[Any],
                     how: str) -> tuple[list[str], list[Any], int]:
    """The statement through gateway/db/sqlite_driver.py's connection (its BEGIN, if one is due, goes with it)."""
    cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
    if how == _MANY:
        await cursor.executemany(sql, args)
    else:
        await cursor.execute(sql, args)
    return [entry[0] for entry in cursor.description or ()], await cursor.fetchall(), cursor.rowcount


async def _on_asyncpg(raw: PoolProxiedConnection, sql: str, args: list[Any],
                      how: str) -> tuple[list[str], list[Any], int]:
    """The statement on asyncpg, in the transaction SQLAlchemy's adapter keeps (started here if it is due, as the
    adapter starts it before its first statement; none in autocommit); asyncpg's errors as the adapter's."""
    adapter: Any = raw.dbapi_connection
    driver: Any = raw.driver_connection
    records: list[Any] = []
    changed = -1
    async with adapter._execute_mutex:  # noqa: SLF001 - see the module docs
        if adapter._transaction is None:  # noqa: SLF001
            await adapter._start_transaction()  # noqa: SLF001
        try:
            if how == _RETURNS_ROWS:
                records = await driver.fetch(sql, *args)
            elif how == _COUNTS:
                changed = int((await driver.execute(sql, *args)).rsplit(" ", 1)[-1])  # "UPDATE 1", "INSERT 0 1"
            else:
                await driver.executemany(sql, args)
        except Exception as error:  # noqa: BLE001 - the adapter translates it (or raises it as it is)
            adapter._handle_exception(error)  # noqa: SLF001
    columns = list(records[0].keys()) if records else []
    return columns, records, changed
