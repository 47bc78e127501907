"""The change journal as clients read it (contract v1.2, Changes): listings, changes since a cursor, waits.

**Records.** gateway/core/namespace.py writes one journal row per change, in the change's own
transaction (gateway/db/changes.py). They are rendered when read, "as it is now": a created, replaced or
restored node is its object if it is still live (if not, a later row says where it went); a move is
``{type: deleted, id, path: <old path>}`` and then the object; a trashed or purged node is a ``deleted``.
A replaced file is no ``deleted``: the new file's object, at the same path, says it all; a restored
folder has a row for everything it brought back, parents first.

**Cursors** are opaque to clients and checked here: ``v1.changes.<seq>.<mac>`` (the journal after
``seq``) and ``v1.listing.<token>.<pos>.<seq>.<mac>`` (a listing's next page), the MAC an HMAC-SHA256 of
the user's id and the rest under a key derived from the gateway's JWT secret. Another user's cursor, or
a forged one, is :class:`~gateway.core.errors.InvalidCursor` (400): it never reads anyone else's rows.

**A listing** (no cursor) is one snapshot: the owner's tree is read, and the last seq taken, in one
transaction that holds the lock on the owner's tree, so no change can fall between the two. A tree
larger than one page is kept in ``change_listings`` (the objects as they were) and served from there,
page by page; its last page ends with the journal cursor of that moment, after which the journal
replays whatever changed while the pages were read. Nothing is lost and nothing is listed twice,
however the tree changes meanwhile, and a parent always comes before what it holds.

**Waiting** holds no database connection: a waiter registers an :class:`asyncio.Event` in
:class:`Waiters` *before* its one short read of the journal (so a change committed between the read and
the wait still wakes it), then sleeps on the event. Changes made through this process wake it at once
(the namespace's ``on_committed``). Changes made through another gateway: see :meth:`Changes.follow`.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago, stamp_now
from gateway.core.errors import CursorReset, InvalidCursor
from gateway.core.tree import Entry, Tree
from gateway.db import Database, in_background
from gateway.db import changes as changes_db
from gateway.db import users as users_db
from gateway.db.files import FileRow
from gateway.db.nodes import NodeRow
from protocol.states import FileStatus

log = structlog.get_logger("gateway.changes")

CURSOR = re.compile(r"^v1\.(?:changes\.[0-9]{1,18}|listing\.[0-9a-f]{32}\.[0-9]{1,9}\.[0-9]{1,18})\.[0-9a-f]{32}$")
LISTING_KEPT = 24 * 3600  # seconds a listing's pages stay readable
PRUNE_BATCH = 5000  # journal rows pruned per housekeeping round, at most
RENDER_BATCH = 500  # nodes rendered per query while a listing is kept
# Seconds between two reads of the journal's tail by a gateway on SQLite (gateway processes sharing one
# SQLite file wake each other's waiters this way: at most this late, well within the contract's second).
TAIL_POLL = 0.5
RECONNECT_DELAY = 1.0


@dataclass(frozen=True)
class Deleted:
    """``{type: deleted, id, path}``: the node is no longer at ``path``."""

    node_id: str
    path: str


@dataclass(frozen=True)
class ChangesPage:
    items: list[Entry | Deleted]
    cursor: str
    has_more: bool


class Waiters:
    """The waits open in this process, by owner: an event each, set when the owner's tree changed."""

    def __init__(self) -> None:
        self._waiting: dict[int, set[asyncio.Event]] = {}
        # The newest seq a wake-up named for each owner with waits open: a woken wait whose cursor is older
        # answers without reading the database (2,000 waits woken at once are 2,000 reads otherwise).
        self._newest: dict[int, int] = {}
        self.closing = False  # close()

    def wake(self, owner_id: int, seq: int) -> None:
        events = self._waiting.get(owner_id)
        if events:
            self._newest[owner_id] = max(self._newest.get(owner_id, 0), seq)
            for event in events:
                event.set()

    def newest(self, owner_id: int) -> int:
        return self._newest.get(owner_id, 0)

    def wake_all(self) -> None:
        """Every wait looks at the journal again (notifications may have been lost)."""
        for events in self._waiting.values():
            for event in events:
                event.set()

    def close(self) -> None:
        """The process is stopping: every open wait answers {changes: false} now, and so does every new one
        (a client then waits again, on another gateway). Otherwise the server's shutdown waits for each
        held wait to time out: a long poll outlives the client that closed it (aiohttp does not cancel a
        handler when its client goes)."""
        self.closing = True
        self.wake_all()

    def __len__(self) -> int:
        return sum(len(events) for events in self._waiting.values())

    @contextlib.contextmanager
    def waiting(self, owner_id: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(owner_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting[owner_id]
            events.discard(event)
            if not events:
                del self._waiting[owner_id]
                self._newest.pop(owner_id, None)


class Changes:
    def __init__(self, config: Config, db: Database, tree: Tree, clock: Clock, waiters: Waiters):
        self.config = config
        self.db = db
        self.tree = tree
        self.clock = clock
        self.waiters = waiters
        self._key = hashlib.sha256(b"dbx changes cursor\x00" + config.jwt_secret.encode()).digest()

    # --- cursors ------------------------------------------------------------------------------------------

    def _mac(self, owner_id: int, body: str) -> str:
        return hmac.new(self._key, f"{owner_id}.{body}".encode(), hashlib.sha256).hexdigest()[:32]

    def _signed(self, owner_id: int, body: str) -> str:
        return f"v1.{body}.{self._mac(owner_id, body)}"

    def journal_cursor(self, owner_id: int, seq: int) -> str:
        return self._signed(owner_id, f"changes.{seq}")

    def _listing_cursor(self, owner_id: int, token: str, pos: int, seq: int) -> str:
        return self._signed(owner_id, f"listing.{token}.{pos}.{seq}")

    def _read(self, owner_id: int, cursor: str) -> list[str]:
        """The cursor's fields after ``v1.``; InvalidCursor unless this gateway signed it for ``owner_id``."""
        if not CURSOR.match(cursor):
            raise InvalidCursor()
        body, mac = cursor.removeprefix("v1.").rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(owner_id, body)):
            raise InvalidCursor()
        return body.split(".")

    # --- reading ------------------------------------------------------------------------------------------

    async def page(self, owner_id: int, cursor: str | None, limit: int) -> ChangesPage:
        """``GET /dropbox/v1/changes``: a listing's first page, its next page, or the changes since."""
        if cursor is None:
            return await self._start_listing(owner_id, limit)
        fields = self._read(owner_id, cursor)
        if fields[0] == "listing":
            return await self._listing_page(owner_id, fields[1], int(fields[2]), int(fields[3]), limit)
        return await self._since(owner_id, int(fields[1]), limit)

    async def _start_listing(self, owner_id: int, limit: int) -> ChangesPage:
        """The whole tree and the last seq, read under the tree's lock (module docstring)."""
        async with self.db.transaction() as conn:
            await users_db.lock_user(conn, owner_id)
            seq = await changes_db.last_seq(conn)
            nodes = await changes_db.live_tree(conn, owner_id)
            if len(nodes) <= limit:
                return ChangesPage(list(await self.tree.entries_of(owner_id, nodes, on=conn)),
                                   self.journal_cursor(owner_id, seq), False)
            token, now = secrets.token_hex(16), stamp_now(self.clock)
            first: list[Entry] = []
            for start in range(0, len(nodes), RENDER_BATCH):
                entries = await self.tree.entries_of(owner_id, nodes[start:start + RENDER_BATCH], on=conn)
                if start < limit:
                    first += entries
                await changes_db.keep_listing(conn, token, owner_id, [_entry_text(entry) for entry in entries],
                                              now, start)
        return ChangesPage(list(first[:limit]), self._listing_cursor(owner_id, token, limit - 1, seq), True)

    async def _listing_page(self, owner_id: int, token: str, after: int, seq: int, limit: int) -> ChangesPage:
        rows = await changes_db.listing_page(self.db, token, owner_id, after, limit + 1)
        if not rows:  # kept past LISTING_KEPT and dropped: the listing is gone, start again
            raise CursorReset()
        page = rows[:limit]
        items: list[Entry | Deleted] = [_entry_of(row["entry"]) for row in page]
        if len(rows) > limit:
            return ChangesPage(items, self._listing_cursor(owner_id, token, page[-1]["pos"], seq), True)
        return ChangesPage(items, self.journal_cursor(owner_id, seq), False)

    async def _since(self, owner_id: int, after: int, limit: int) -> ChangesPage:
        """Every change after ``after``, in order; CursorReset when the journal was pruned past it."""
        rows = await changes_db.since(self.db, owner_id, after, limit + 1)
        # Read after the rows: a prune that removed rows this read missed has moved the mark already.
        if after < (await changes_db.pruned_through(self.db, owner_id) or 0):
            raise CursorReset()
        page = rows[:limit]
        wanted = [row["node_id"] for row in page if row["kind"] not in ("trashed", "purged")]
        live = await changes_db.nodes_by_ids(self.db, owner_id, wanted)
        entries = {entry.node["id"]: entry for entry in await self.tree.entries_of(owner_id, list(live.values()))}
        items: list[Entry | Deleted] = []
        for row in page:
            if row["kind"] in ("moved", "trashed", "purged"):
                items.append(Deleted(row["node_id"], row["path"] or "/"))
            if row["kind"] not in ("trashed", "purged") and row["node_id"] in entries:
                items.append(entries[row["node_id"]])
        last = page[-1]["seq"] if page else after
        return ChangesPage(items, self.journal_cursor(owner_id, last), len(rows) > limit)

    # --- waiting ------------------------------------------------------------------------------------------

    async def wait(self, owner_id: int, cursor: str, timeout: float) -> bool:  # noqa: ASYNC109 - the contract's
        """``GET /dropbox/v1/changes/wait``: True as soon as something changed after ``cursor``, False after
        ``timeout`` seconds. No database connection is held while it waits (module docstring)."""
        fields = self._read(owner_id, cursor)
        after = int(fields[-1])  # a journal cursor's seq, or the seq a listing ends at
        deadline = asyncio.get_running_loop().time() + timeout
        if self.waiters.closing:
            return False
        with self.waiters.waiting(owner_id) as event:
            if after < (await changes_db.pruned_through(self.db, owner_id) or 0):
                raise CursorReset()
            if await changes_db.any_since(self.db, owner_id, after):
                return True
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                try:
                    async with asyncio.timeout(remaining):  # not wait_for, which can swallow a cancel (3.11)
                        await event.wait()
                except TimeoutError:
                    return False
                if self.waiters.closing:
                    return False
                event.clear()
                if self.waiters.newest(owner_id) > after:
                    return True
                # Woken without a newer seq (the listener came back; everyone looks): read the journal.
                if await changes_db.any_since(self.db, owner_id, after):
                    return True

    @contextlib.asynccontextmanager
    async def follow(self) -> AsyncIterator[None]:
        """While the block runs, wake this process's waiters for changes made through other gateways.

        PostgreSQL: ``LISTEN``, on one connection per gateway process, not one per waiter: 2,000 open waits
        would otherwise need 2,000 connections (PostgreSQL allows 100 by default, and each costs a server
        process), and a NOTIFY would be delivered 2,000 times. The one listener fans a notification out to
        the waiters of its owner in memory. The NOTIFY is sent inside the change's transaction, so
        PostgreSQL delivers it on commit only, to every gateway, in well under a second.

        SQLite: writers are one process's at a time anyway; each gateway process reads the journal's tail
        every TAIL_POLL seconds (one indexed query) and wakes the owners it finds there, which covers
        several processes sharing one database file.
        """
        task = asyncio.create_task(self._listen() if self.db.dialect == "postgresql" else self._poll_tail(),
                                   name="changes-follow")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        in_background()
        while True:
            lost = asyncio.Event()
            try:
                async with changes_db.listening(self.db, self.waiters.wake, lost.set):
                    self.waiters.wake_all()  # whatever was notified while no one listened: everyone looks
                    log.info("changes_listening")
                    await lost.wait()
            except Exception as exc:  # noqa: BLE001 - the database away: try again, never give up
                log.warning("changes_listen_failed", error=str(exc))
            await asyncio.sleep(RECONNECT_DELAY)

    async def _poll_tail(self) -> None:
        in_background()
        last: int | None = None
        while True:
            try:
                if last is None:
                    last = await changes_db.last_seq(self.db)
                for owner_id, seq in (await changes_db.owners_since(self.db, last)).items():
                    self.waiters.wake(owner_id, seq)
                    last = max(last, seq)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("changes_tail_failed", error=str(exc))
            await asyncio.sleep(TAIL_POLL)

    # --- retention ----------------------------------------------------------------------------------------

    async def prune(self) -> dict[str, int]:
        """Journal rows older than ``change_retention`` (their owners' older cursors are reset from now on),
        and listings older than LISTING_KEPT."""
        async with self.db.transaction() as conn:
            rows = await changes_db.prune(conn, stamp_ago(self.clock, self.config.change_retention), PRUNE_BATCH)
        listings = await changes_db.drop_listings_before(self.db, stamp_ago(self.clock, LISTING_KEPT))
        return {"changes": rows, "listing_rows": listings}


def _entry_text(entry: Entry) -> str:
    """An entry as kept in a listing (JSON): the node, its path, its file row."""
    return json.dumps({"node": entry.node, "path": entry.path, "file": entry.file})


def _entry_of(text: str) -> Entry:
    kept = json.loads(text)
    file: FileRow | None = kept["file"]
    if file is not None:
        file["status"] = FileStatus(file["status"])
    node: NodeRow = kept["node"]
    return Entry(node, kept["path"], file)
