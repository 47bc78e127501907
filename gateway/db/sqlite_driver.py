"""SQLite for SQLAlchemy's asyncio engine with one thread hand-off a statement, not four.

aiosqlite, which SQLAlchemy's aiosqlite dialect drives, runs each call on the
connection's thread and hands its result back through the event loop: opening a
cursor, executing, fetching the rows and closing the cursor are four hand-offs
for every statement, BEGIN included. A hand-off costs about 50 us of CPU and a
wake-up of the loop on a 2-core VM (issue 26 measured it; ``SELECT 1`` through
aiosqlite took 223 us), and the gateway's statements are point lookups and
small writes that SQLite itself runs in a few microseconds. Here a statement
is one hand-off to the connection's thread, which executes it, fetches its
rows and closes its cursor there. A read's ``BEGIN`` is not a hand-off of its
own: it is kept (:meth:`Connection.begin_with_next`) and run on the thread just
before the read's first statement, in that statement's hand-off. A read of point
lookups (a few rows by key) runs on the event loop's thread, its first statement
too unless it would wait for a lock (:meth:`Connection.first_lookup`,
:meth:`Connection.runs_here`), and so does the end of every read's transaction
(:meth:`Connection.rollback`).

A write transaction runs on the event loop's thread from its ``BEGIN IMMEDIATE``
to its ``COMMIT`` (:meth:`Connection.write_here` says why), without a hand-off,
unless another process holds SQLite's writer lock: then its ``BEGIN IMMEDIATE``
waits for it on the connection's thread. The WAL is checkpointed by a thread of
its own (:class:`Checkpointer`), not by whichever commit finds it long.

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

import structlog

log = structlog.get_logger("gateway.db")
T = TypeVar("T")
Parameters = Sequence[Any] | dict[str, Any]

BEGIN_WRITE = "BEGIN IMMEDIATE"
BUSY_TIMEOUT_MS = 5000  # how long a connection's thread waits for a lock another connection holds
SQLITE_BUSY = 5
# Write transactions committed between two checkpoints of the WAL (Checkpointer): an upload start writes
# a handful of pages, so the WAL stays within a few MiB.
CHECKPOINT_EVERY = 200


def configure(conn: sqlite3.Connection) -> None:
    """What every connection of the gateway's needs: no BEGIN or COMMIT of the driver's own (ours are
    explicit), WAL, foreign keys, a writer lock waited for (on a connection's thread), and no checkpoint run
    by a commit (the Checkpointer's thread runs them)."""
    conn.isolation_level = None
    conn.execute("PRAGMA journal_mode = WAL")  # a property of the file; a no-op once set
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed data
    conn.execute("PRAGMA wal_autocheckpoint = 0")


def _without_waiting(conn: sqlite3.Connection, call: Callable[[], T]) -> tuple[bool, T | None]:
    """``call()`` with busy_timeout 0 (the event loop's thread must not wait for a lock): (True, its result),
    or (False, None) if SQLite answered busy, having done nothing."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        return True, call()
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY:
            return False, None
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _run_at_once(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool,
                 begin: str | None) -> tuple[Any, int, int | None, list[Any]] | None:
    """:func:`_run` on the calling thread (the event loop's) unless the statement would wait for a lock (None:
    nothing was read; a ``begin``, which takes no lock, stays begun)."""
    if begin is not None:
        conn.execute(begin)
    return _without_waiting(conn, functools.partial(_run, conn, sql, parameters, many, None))[1]


def begin_write_at_once(conn: sqlite3.Connection) -> bool:
    """``BEGIN IMMEDIATE`` if SQLite's writer lock is free now; False, with nothing begun, if another
    connection holds it."""
    return _without_waiting(conn, functools.partial(conn.execute, BEGIN_WRITE))[0]


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
    future of the loop that handed it over (:meth:`Connection.hop`). A call whose future was cancelled before
    it began is skipped, as ``run_in_executor`` skips a call cancelled while queued."""

    def __init__(self, name: str = "sqlite"):
        self._calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._stopped = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """``call()`` on the thread; the running loop's future of its result (or its exception).
        RuntimeError once stopped."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((loop, future, call))
        return future

    def run_and_forget(self, call: Callable[[], Any]) -> None:
        """``call()`` on the thread, without waiting for it or hearing of it (from anywhere, a loop or none)."""
        self._put((None, None, call))

    def stop(self) -> None:
        """No more calls: the thread ends after those already queued."""
        if not self._stopped:
            self._stopped = True
            self._calls.put(None)

    def _put(self, item: Call) -> None:
        if self._stopped:
            raise RuntimeError("the connection's thread has stopped")
        self._calls.put(item)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, call = item
            if future is not None and future.cancelled():  # read across threads: at worst a cancelled call runs
                continue
            try:
                result, exc = call(), None
            except BaseException as error:  # noqa: BLE001 - handed to the caller, as run_in_executor does
                result, exc = None, error
            if loop is not None and future is not None:
                try:
                    loop.call_soon_threadsafe(_settle, future, result, exc)
                except RuntimeError:  # the loop is closed: no one waits any more
                    pass


# What a Thread runs: the loop and its future to set (both None: no one waits), and the call.
Call = tuple[asyncio.AbstractEventLoop | None, asyncio.Future | None, Callable[[], Any]]


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
        owner.write_here()
        done = None
        if owner.runs_here():  # nothing to wait for: run it here (Connection.runs_here)
            done = _run(owner.sqlite, sql, parameters, many, None)
        elif owner.first_lookup():  # a point read's first statement: here unless it would wait for a lock
            done = _run_at_once(owner.sqlite, sql, parameters, many, owner.take_begin())
        if done is None:
            done = await owner.hop(_run, owner.sqlite, sql, parameters, many, owner.take_begin())
        self.description, self.rowcount, self.lastrowid, self._rows = done
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
    """An aiosqlite connection's interface: a sqlite3 connection used on its own thread, and on the event loop's
    where nothing can wait (write transactions, point lookups: the module docs); never on both at once, as the
    loop awaits each hand-off."""

    def __init__(self, conn: sqlite3.Connection, thread: Thread, checkpointer: Checkpointer | None = None):
        self.sqlite = conn
        self._thread = thread
        self._checkpointer = checkpointer
        self._tx = _AtOnce()
        self._begin: str | None = None  # the BEGIN the next statement runs first (begin_with_next)
        self._writing = False  # the transaction under way began with BEGIN IMMEDIATE
        self._point = False  # the transaction under way is a read of point lookups (begin_with_next)

    @classmethod
    async def connect(cls, path: str, checkpointer: Checkpointer | None = None) -> Connection:
        thread = Thread()
        # check_same_thread=False: made on the connection's thread and used there and on the event loop's
        # (write transactions, point lookups after the first: Connection.runs_here), and closed by stop() too.
        try:
            conn = await thread.run(functools.partial(_connect_configured, path))
        except BaseException:
            thread.stop()
            raise
        return cls(conn, thread, checkpointer)

    def begin_with_next(self, begin: str, *, point: bool = False) -> None:
        """Begin a transaction with ``begin`` (``BEGIN``, ``BEGIN IMMEDIATE``) in the next statement's hand-off;
        ``point``: a read of point lookups (:meth:`runs_here`)."""
        self._begin = begin
        self._writing = begin == BEGIN_WRITE
        self._point = point and not self._writing

    def lookup_alone(self) -> None:
        """The next statement is a point lookup run alone, outside a transaction (:meth:`first_lookup`)."""
        self._point = True

    def first_lookup(self) -> bool:
        """Whether the next statement is the first of a read of point lookups (``Database.read(point=True)``),
        or one such lookup alone: it runs on the event loop's thread too, unless it would wait for a lock
        (:func:`_run_at_once`; in WAL a read waits only while another connection recovers or restarts the WAL),
        so a request's read of a few rows by key takes no hand-off at all. A point lookup costs SQLite a few
        microseconds, a hand-off 25-50 us of CPU and a wake-up of two threads (issue 26: an uncached GET made
        two, an upload start two)."""
        if self._point and not self.sqlite.in_transaction:
            if self._begin is None:  # alone: this statement only
                self._point = False
            return True
        return False

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
        """Whether a write transaction has begun here, so it holds SQLite's writer lock (BEGIN IMMEDIATE):
        its statements then run on the event loop's thread (:meth:`write_here`)."""
        return self._writing and self._begin is None and self.sqlite.in_transaction

    def write_here(self) -> None:
        """Begin the write transaction that is due (BEGIN IMMEDIATE) on the event loop's thread if SQLite's
        writer lock is free; if another process holds it, the BEGIN stays due and waits for the lock on the
        connection's thread, with the first statement.

        A write transaction then runs on the loop's thread to its commit: its statements cannot wait for
        another connection (the lock is held; in WAL, readers never block a writer, and the pages it changes
        go to the WAL only at the commit), and neither can its COMMIT, which writes those pages to the WAL
        without an fsync (``synchronous = NORMAL``) and no longer checkpoints it (:class:`Checkpointer`).
        Each takes microseconds of CPU, while a hand-off costs more than that and, on a busy 2-core machine,
        a wait for the connection's thread to be scheduled and for Python's lock (the switch interval, 5 ms),
        every one of them inside the writers' turn (gateway/db/engine.py), which all the process's writes
        queue for: with the BEGIN and the COMMIT on the thread, a process did about 70 upload starts a second
        at a load of 10, each write transaction's turn two hand-offs long (issue 26)."""
        if self._begin == BEGIN_WRITE and begin_write_at_once(self.sqlite):
            self._begin = None

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
        """Commit the transaction under way: a write transaction's on the event loop's thread
        (:meth:`write_here`), any other on the connection's thread."""
        writing = self._writing
        self._begin, self._writing, self._point = None, False, False  # one that ran no statement: nothing began
        if not self.sqlite.in_transaction:
            return
        if not writing:
            await self.hop(self.sqlite.commit)
            return
        self.sqlite.commit()
        if self._checkpointer is not None:
            self._checkpointer.committed()

    async def rollback(self) -> None:
        """End the transaction under way, undoing what it wrote, on the event loop's thread: a read's lets
        go of its snapshot and waits for nothing, a write transaction's drops the pages it kept in memory
        (:meth:`write_here`); each in microseconds, while a hand-off costs more than that. A connection goes
        back to the pool with a rollback after every use (SQLAlchemy's reset on return), most often with
        nothing to undo. Nothing else runs on the connection meanwhile."""
        self._begin, self._writing, self._point = None, False, False
        if self.sqlite.in_transaction:
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
            self._thread.run_and_forget(self.sqlite.close)
        except RuntimeError:  # closed already: the thread is gone
            return
        self._thread.stop()


class Checkpointer:
    """Checkpoints the WAL of one database file on a thread and connection of its own, every
    CHECKPOINT_EVERY write transactions, one at a time.

    SQLite's own checkpoint runs in the commit that finds the WAL over 1,000 pages: on the event loop's
    thread, where commits run (:meth:`Connection.write_here`), it would copy those pages into the database
    and fsync both files while every request waits. The gateway's connections turn it off
    (:func:`configure`) and a PASSIVE checkpoint runs here instead: it copies what no reader still needs,
    waits for no one, and lets the next writer start the WAL over."""

    def __init__(self, path: str):
        self.path = path
        self.since = 0  # write transactions committed since the last checkpoint began
        self._thread: Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._running: asyncio.Task | None = None

    def committed(self) -> None:
        """A write transaction committed (on the event loop); a checkpoint begins when one is due."""
        self.since += 1
        if self.since >= CHECKPOINT_EVERY and (self._running is None or self._running.done()):
            self.since = 0
            self._running = asyncio.get_running_loop().create_task(self.checkpoint())

    async def checkpoint(self) -> None:
        """One PASSIVE checkpoint on the thread; a failure (a full disk) is logged, and the next is tried."""
        try:
            if self._thread is None:
                self._thread = Thread("sqlite-checkpoint")
                self._conn = await self._thread.run(functools.partial(_connect_configured, self.path))
            conn = self._conn
            assert conn is not None, "opened above"
            await self._thread.run(functools.partial(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)"))
        except sqlite3.Error as exc:
            log.warning("wal_checkpoint_failed", error=str(exc))

    async def close(self) -> None:
        """Wait for a checkpoint under way; close the connection and end the thread."""
        if self._running is not None:
            await asyncio.shield(self._running)
        if self._thread is not None:
            if self._conn is not None:
                await self._thread.run(self._conn.close)
            self._thread.stop()
            self._thread = self._conn = None


def _connect_configured(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    configure(conn)
    return conn
