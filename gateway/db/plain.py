"""The reads every request makes, run as plain driver SQL: SQLAlchemy Core only writes their SQL.

SQLAlchemy Core costs about 130 us of CPU a statement on top of what the driver takes (its
execution context, the greenlet that adapts the driver's coroutines, its result object): a point
lookup SQLite runs in 12 us took 143 us through it, on a 2-core VM (issue 26, measured inside a
write transaction, where no thread hop is involved). A request starting an upload made nine such
statements, an uncached ``GET /dropbox/v1/files/{id}`` four.

A :class:`Plain` is one such SELECT, written with SQLAlchemy Core like every other query (the
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

Only reads, and only the few every request runs: writes (RETURNING, rowcounts, executemany) and
everything else stay with SQLAlchemy.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select

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
    """A SELECT run as plain driver SQL (see the module docs); build it once, at import."""

    def __init__(self, statement: Select):
        self.statement = statement
        self._forms: dict[str, Form] = {}

    def form(self, dialect: Dialect) -> Form:
        """The statement compiled for ``dialect``, once."""
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            form = Form(
                sql=str(compiled),
                names=names,
                binds=tuple(compiled.binds[name].type.bind_processor(dialect) for name in names),
                held=dict(compiled.params),
                results=tuple(column.type.result_processor(dialect, None)
                              for column in self.statement.selected_columns),
            )
            self._forms[dialect.name] = form
        return form

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Row]:
        """The statement's rows as dicts, run on ``conn``'s driver in ``conn``'s transaction."""
        form = self.form(conn.dialect)
        values = {**form.held, **params}
        args = [value if bind is None else bind(value)
                for value, bind in zip((values[name] for name in form.names), form.binds, strict=True)]
        if not conn.in_transaction():
            await conn.begin()  # what SQLAlchemy does before a connection's first statement (the module docs)
        sync = conn.sync_connection
        assert sync is not None, "an AsyncConnection in use has its connection"
        sync.dispatch.before_cursor_execute(sync, None, form.sql, args, None, False)
        raw = await conn.get_raw_connection()
        try:
            if conn.dialect.name == "sqlite":
                columns, records = await _on_sqlite(raw, form.sql, args)
            else:
                columns, records = await _on_asyncpg(raw, form.sql, args)
        except conn.dialect.loaded_dbapi.Error as error:
            invalidated = conn.dialect.is_disconnect(error, raw, None)
            if invalidated:
                await conn.invalidate()
            raise sa_exc.DBAPIError.instance(form.sql, args, error, conn.dialect.loaded_dbapi.Error,
                                             connection_invalidated=invalidated, dialect=conn.dialect) from error
        processors = form.results
        if not any(processors):
            return [dict(zip(columns, record, strict=True)) for record in records]
        return [{column: value if process is None else process(value)
                 for column, value, process in zip(columns, record, processors, strict=True)}
                for record in records]


async def _on_sqlite(raw: PoolProxiedConnection, sql: str, args: list[Any]) -> tuple[list[str], list[Any]]:
    """The statement through gateway/db/sqlite_driver.py's connection (its BEGIN, if one is due, goes with it)."""
    cursor = await raw.driver_connection.cursor().execute(sql, args)  # type: ignore[union-attr]
    return [entry[0] for entry in cursor.description or ()], await cursor.fetchall()


async def _on_asyncpg(raw: PoolProxiedConnection, sql: str, args: list[Any]) -> tuple[list[str], list[Any]]:
    """The statement on asyncpg, in the transaction SQLAlchemy's adapter keeps (started here if it is due, as the
    adapter starts it before its first statement; none in autocommit); asyncpg's errors as the adapter's."""
    adapter: Any = raw.dbapi_connection
    async with adapter._execute_mutex:  # noqa: SLF001 - see the module docs
        if adapter._transaction is None:  # noqa: SLF001
            await adapter._start_transaction()  # noqa: SLF001
        try:
            records = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - the adapter translates it (or raises it as it is)
            adapter._handle_exception(error)  # noqa: SLF001
    columns = list(records[0].keys()) if records else []
    return columns, records
