"""SQLite for SQLAlchemy's asyncio engine with one thread hand-off a statement, not four.

aiosqlite, which SQLAlchemy's aiosqlite dialect drives, runs each call on the
connection's thread and hands its result back through the event loop: opening a
cursor, executing, fetching the rows and closing the cursor are four hand-offs
for every statement, BEGIN included. A hand-off costs about 50 us of CPU and a
wake-up of the loop on a 2-core VM (issue 26 measured it; ``SELECT 1`` through
aiosqlite took 223 us), and the gateway's statements are point lookups and
small writes that SQLite itself runs in a few microseconds. Here a statement
is one hand-off to the connection's thread, which executes it, fetches its
rows and closes its cursor there; commit and rollback are one each. A
transaction's ``BEGIN`` (or ``BEGIN IMMEDIATE``) is not a hand-off of its own:
it is kept (:meth:`Connection.begin_with_next`) and run on the thread just
before the transaction's first statement, in that statement's hand-off; a
transaction that ran no statement commits or rolls back without one. The
statements of a write transaction after its first run on the event loop's
thread, without a hand-off (:meth:`Connection.holds_write_lock` says why), and
so do those of a read of point lookups after its first (:meth:`Connection.runs_here`)
and the end of a read's transaction (:meth:`Connection.rollback`).

Other work stays off the event loop, on a thread per connection as with
aiosqlite: SQLite lets go of Python's lock while it works, so the loop goes on
meanwhile (a version that ran SQLite on the loop's own thread spent less CPU a
statement, but handled fewer requests a second on 2 cores: the database's work
no longer ran beside the loop's). Waiting for another writer's lock
(``busy_timeout``) happens on that thread too. A hand-off is a queue the thread
waits on and a future of the loop's (:class:`Thread`), not ``run_in_executor``:
a thread pool's submit, its two futures chained across threads and its idle
semaphore took 31-38 us of the loop's CPU a hand-off on this 2-core VM, this
11-12 us (14% of the gateway's samples were in ``ThreadPoolExecutor.submit`` when
upload starts were profiled, issue 26).

:class:`Connection` has the coroutines of an aiosqlite connection that the
dialect calls, so the dialect is used unchanged, through ``async_creator``
(gateway/db/engine.py).
"""
from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
Parameters = Sequence[Any] | dict[str, Any]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool,
         begin: str | None) -> tuple[Any, int, int | None, list[Any]]:
    """On the connection's thread: the transaction's ``begin`` if it is the first statement, the statement,
    its rows, and its cursor closed."""
    if begin is not None:
        conn.execute(begin)
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class Thread:
    """A connection's thread: runs the calls handed to it one after another, each call's result set on the
    loop's future (:meth:`Connection.hop`). A call whose future was cancelled before it began is skipped, as
    ``run_in_executor`` skips a call cancelled while queued."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[asyncio.Future, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """``call()`` on the thread; the future of its result (or its exception). RuntimeError once stopped."""
        if self._stopped:
            raise RuntimeError("the connection's thread has stopped")
        future = self._loop.create_future()
        self._calls.put((future, call))
        return future

    def stop(self) -> None:
        """No more calls: the thread ends after those already queued."""
        if not self._stopped:
            self._stopped = True
            self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if future.cancelled():  # read across threads: at worst a cancelled call still runs
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as run_in_executor does
                self._deliver(future, None, exc)
            else:
                self._deliver(future, result, None)

    def _deliver(self, future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(_settle, future, result, exc)
        except RuntimeError:  # the loop is closed: no one waits any more
            pass


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    """On the loop: the hand-off's future done, unless its waiter gave up on it (cancelled)."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Cursor:
    """An aiosqlite cursor's coroutines: ``execute`` is the one hand-off, the rest reads what it brought."""

    def __init__(self, owner: Connection):
        self._owner = owner
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        self._rows: list[Any] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._rows = []

    async def execute(self, sql: str, parameters: Parameters = ()) -> Cursor:
        return await self._execute(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Parameters]) -> Cursor:
        return await self._execute(sql, list(parameters), many=True)

    async def _execute(self, sql: str, parameters: Any, *, many: bool) -> Cursor:
        owner = self._owner
        if owner.runs_here():  # nothing to wait for: run it here (Connection.runs_here)
            self.description, self.rowcount, self.lastrowid, self._rows = _run(owner.sqlite, sql, parameters,
                                                                                 many, None)
        else:
            self.description, self.rowcount, self.lastrowid, self._rows = await owner.hop(
                _run, owner.sqlite, sql, parameters, many, owner.take_begin())
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._rows = []


class _AtOnce:
    """What the dialect puts a call on to set the isolation level (aiosqlite's queue to its thread): run at
    once, while the connection is being set up and nothing else uses it."""

    def put_nowait(self, item: tuple[asyncio.Future, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # the dialect awaits the future and handles the error
            future.set_exception(exc)


class Connection:
    """An aiosqlite connection's interface: a sqlite3 connection used only on its own thread."""

    def __init__(self, conn: sqlite3.Connection, thread: Thread):
        self.sqlite = conn
        self._thread = thread
        self._tx = _AtOnce()
        self._begin: str | None = None  # the BEGIN the next statement runs first (begin_with_next)
        self._writing = False  # the transaction under way began with BEGIN IMMEDIATE
        self._point = False  # the transaction under way is a read of point lookups (begin_with_next)

    @classmethod
    async def connect(cls, path: str) -> Connection:
        thread = Thread(asyncio.get_running_loop())
        # check_same_thread=False: made on the connection's thread and used there, but closed by stop() too.
        try:
            conn = await thread.run(functools.partial(sqlite3.connect, path, check_same_thread=False))
        except BaseException:
            thread.stop()
            raise
        return cls(conn, thread)

    def begin_with_next(self, begin: str, *, point: bool = False) -> None:
        """Begin a transaction with ``begin`` (``BEGIN``, ``BEGIN IMMEDIATE``) in the next statement's hand-off;
        ``point``: a read of point lookups (:meth:`runs_here`)."""
        self._begin = begin
        self._writing = begin == "BEGIN IMMEDIATE"
        self._point = point and not self._writing

    def runs_here(self) -> bool:
        """Whether the next statement runs on the event loop's thread, without a hand-off: in a write
        transaction that holds the writer's lock (:meth:`holds_write_lock`), or in a read of point lookups
        (``Database.read(point=True)``: a few rows by key through an index, microseconds each) once its
        first statement has taken its snapshot. In WAL a read that holds its snapshot waits for no lock,
        so its later statements cannot wait either, and each costs less than a hand-off (on a busy 2-core
        machine a wake-up of the connection's thread and one of the loop, which queue behind everything
        else). A read that may scan (a listing, a search) keeps every statement on the connection's
        thread, where SQLite works without holding up the loop."""
        if self._point and self._begin is None and self.sqlite.in_transaction:
            return True
        return self.holds_write_lock()

    def holds_write_lock(self) -> bool:
        """Whether a write transaction has begun here, so it holds SQLite's writer lock (BEGIN IMMEDIATE).

        Its statements up to the commit then run on the event loop's thread, without a hand-off: they
        cannot wait for another connection (the lock is held; in WAL, readers never block a writer, and
        the pages it changes go to the WAL only at the commit) and take microseconds of CPU, while a
        hand-off costs more than that and, on a busy 2-core machine, a wait for the connection's thread
        to be scheduled, every one of them inside the writers' turn (gateway/db/engine.py), which all the
        process's writes queue for. The BEGIN IMMEDIATE itself (which may wait for another process's
        writer, up to busy_timeout) and the commit (which may checkpoint the WAL: disk writes and an
        fsync) stay on the connection's thread."""
        return self._writing and self._begin is None and self.sqlite.in_transaction

    def take_begin(self) -> str | None:
        begin, self._begin = self._begin, None
        return begin

    async def hop(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the connection's thread: the one hand-off."""
        return await self._thread.run(functools.partial(call, *args))

    @property
    def _conn(self) -> sqlite3.Connection:  # what the dialect sets the isolation level on
        return self.sqlite

    @property
    def _connection(self) -> sqlite3.Connection:  # what the dialect checks before a commit or rollback
        return self.sqlite

    @property
    def isolation_level(self) -> str | None:
        return self.sqlite.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Parameters = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._begin, self._writing, self._point = None, False, False  # one that ran no statement: nothing began
        if self.sqlite.in_transaction:
            await self.hop(self.sqlite.commit)

    async def rollback(self) -> None:
        """End the transaction under way, undoing what it wrote.

        A connection goes back to the pool with a rollback after every use (SQLAlchemy's reset on return),
        most often with nothing to undo: no hand-off then. A read's transaction (begun with ``BEGIN``, never
        ``BEGIN IMMEDIATE``) ends on the event loop's thread too: ending it lets go of its snapshot and
        waits for nothing, in microseconds, while a hand-off costs more than that (the end of every read
        of several statements, one a file in ``dbx upload -r``). A write transaction's rollback stays on
        the connection's thread. Nothing else runs on the connection meanwhile."""
        writing = self._writing
        self._begin, self._writing, self._point = None, False, False
        if not self.sqlite.in_transaction:
            return
        if writing:
            await self.hop(self.sqlite.rollback)
        else:
            self.sqlite.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.hop(functools.partial(self.sqlite.create_function, *args, **kwargs))

    async def close(self) -> None:
        try:
            await self.hop(self.sqlite.close)
        finally:
            self._thread.stop()

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's terminate of a connection it gave up on)."""
        try:
            self._thread.run(self.sqlite.close)
        except RuntimeError:  # closed already: the thread is gone
            return
        self._thread.stop()
