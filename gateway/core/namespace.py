"""The tree: folders, names, paths, and every change to a user's tree, in one place.

Every change (a folder made, an upload committed, a copy, a rename or move, a
file replaced, something trashed, restored or deleted for good) runs through
:meth:`Namespace.changing`, which opens the write transaction, takes the lock on
the owner's tree, and gives the change a :class:`Journal` on that same
transaction: whatever the change reports there is written (issue 23: the change
journal) in the transaction that makes the change, or not at all.

Why a lock on the owner's tree, and which. Names are unique among the live
entries of a folder by the database itself (gateway/db/nodes.py: a partial
unique index on both engines): two gateways creating one name at once cannot
both win, whatever this module does. But a move must also not make a cycle,
and that is a fact about several rows: A into B and B into A at once, on two
gateways, each find no cycle in the tree as it was. So every change first
locks the owner's row (``SELECT ... FOR UPDATE`` on PostgreSQL, held until the
transaction ends; on SQLite every write transaction already holds the single
writer lock, ``BEGIN IMMEDIATE``). Changes to one user's tree therefore run one
at a time, whichever gateway they reach: the second move sees the first one
done and refuses with :class:`~gateway.core.errors.Cycle`, and the second
creation of a name sees it taken (409 ``name_taken``, or the next free name
with autorename). Other users' trees are not held up.
"""
from __future__ import annotations

import contextlib
import datetime
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.core.clock import Clock, stamp_now
from gateway.core.errors import CannotChangeRoot, Cycle, InvalidName, NameTaken, NodeNotFound, ReplacesMismatch
from gateway.core.permissions import FILE_ID_PATTERN
from gateway.db import Database
from gateway.db import changes as changes_db
from gateway.db import files as files_db
from gateway.db import nodes as nodes_db
from gateway.db import users as users_db
from gateway.db.files import FileRow
from gateway.db.nodes import FILE, FOLDER, ROOT, NameInUse, NodeRow
from protocol import paths
from protocol.paths import name_key

log = structlog.get_logger("gateway.tree")
ID_LENGTH = 32  # ids are 32 lowercase hex digits, files and folders alike (gateway/core/permissions.py)
# Anything else names no node, and is never sent to the database (PostgreSQL refuses text with NUL in it).
NODE_ID = re.compile(FILE_ID_PATTERN)


def new_node_id() -> str:
    return secrets.token_hex(ID_LENGTH // 2)


def checked_name(name: str) -> str:
    """``name`` if the contract allows it (protocol/paths.py); InvalidName (400) otherwise."""
    try:
        return paths.check_name(name)
    except paths.InvalidName as exc:
        raise InvalidName(str(exc)) from None


def checked_path(path: str) -> list[str]:
    try:
        return paths.split_path(path)
    except paths.InvalidName as exc:
        raise InvalidName(str(exc)) from None


@dataclass(frozen=True)
class Change:
    """One change to a tree, as the journal will record it: what happened to which node, and where it was."""

    kind: str  # created, moved, replaced, trashed, restored, purged
    node_id: str
    node_kind: str  # folder or file
    old_path: str | None = None


@dataclass
class Journal:
    """The changes one transaction makes, each written to the change journal (gateway/db/changes.py) on
    the change's own connection as it is reported: the record commits or rolls back with the change.

    At the end of the change, on PostgreSQL, :meth:`Namespace.changing` queues a ``NOTIFY`` with the last
    seq (gateway/core/changes.py), which PostgreSQL delivers to every gateway when, and only if, the
    transaction commits.
    """

    conn: AsyncConnection
    owner_id: int
    now: str
    changes: list[Change] = field(default_factory=list)
    last_seq: int = 0

    async def record(self, change: Change) -> None:
        self.changes.append(change)
        self.last_seq = await changes_db.record(self.conn, {
            "owner_id": self.owner_id, "kind": change.kind, "node_id": change.node_id,
            "node_kind": change.node_kind, "path": change.old_path, "recorded_at": self.now,
        })

    async def record_many(self, new: Sequence[Change]) -> None:
        """Several changes, one journal statement for them all (a batch of files placed at once)."""
        if not new:
            return
        self.changes.extend(new)
        self.last_seq = await changes_db.record_many(self.conn, [{
            "owner_id": self.owner_id, "kind": change.kind, "node_id": change.node_id,
            "node_kind": change.node_kind, "path": change.old_path, "recorded_at": self.now,
        } for change in new])

    async def notify(self) -> None:
        if self.changes:
            await changes_db.notify(self.conn, self.owner_id, self.last_seq)


def root_node(owner_id: int, created_at: str) -> NodeRow:
    """The owner's root, which has no row: id ``root``, path ``/``."""
    return NodeRow(id=ROOT, owner_id=owner_id, kind=FOLDER, parent_id="", name="", name_key="",
                   created_at=created_at, modified_at=created_at, replaced_by=None, replaced_at=None,
                   deleted_at=None, deleted_path=None, trashed_with=None)


def file_node(owner_id: int, file_id: str, parent_id: str, name: str, now: str) -> NodeRow:
    """A file's new live node: its place in the tree."""
    return NodeRow(id=file_id, owner_id=owner_id, kind=FILE, parent_id=parent_id, name=name, name_key=name_key(name),
                   created_at=now, modified_at=now, replaced_by=None, replaced_at=None, deleted_at=None,
                   deleted_path=None, trashed_with=None)


def live(node: NodeRow | None) -> bool:
    return node is not None and node["deleted_at"] is None and node["replaced_by"] is None


class Namespace:
    def __init__(self, db: Database, clock: Clock, on_committed: Callable[[int, int], None] | None = None):
        self.db = db
        self.clock = clock
        # Called with the owner's id and the last seq once a change to their tree has committed: wake-ups of
        # ``GET /dropbox/v1/changes/wait`` (gateway/core/changes.py).
        self.on_committed = on_committed

    # --- the one way to change a tree -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def changing(self, owner_id: int, conn: AsyncConnection | None = None) -> AsyncIterator[Journal]:
        """A write transaction holding the lock on ``owner_id``'s tree (module docstring), and its journal.

        ``conn``: a transaction the caller already holds (an upload committing its file, under the
        content lock): the change joins it, and the journal is the caller's to commit.
        """
        if conn is not None:
            await users_db.lock_user(conn, owner_id)
            joined = Journal(conn, owner_id, stamp_now(self.clock))
            yield joined
            await joined.notify()
            return
        async with self.db.transaction() as own:
            await users_db.lock_user(own, owner_id)
            journal = Journal(own, owner_id, stamp_now(self.clock))
            yield journal
            await journal.notify()
        self.committed(journal)

    def committed(self, journal: Journal) -> None:
        """After the commit of a change (by :meth:`changing`, or by the caller that held the transaction)."""
        if journal.changes and self.on_committed is not None:
            self.on_committed(journal.owner_id, journal.last_seq)
        for change in journal.changes:
            log.info("tree_changed", owner_id=journal.owner_id, change=change.kind, node_id=change.node_id,
                     node_kind=change.node_kind, old_path=change.old_path)

    # --- reading ----------------------------------------------------------------------------------------

    async def node(self, owner_id: int, node_id: str, kind: str | None = None, *, on: AsyncConnection | None = None) -> NodeRow:
        """The owner's live folder or file (``kind``); NodeNotFound (404) for anything else, anyone else's too."""
        if node_id == ROOT and kind in (None, FOLDER):
            return root_node(owner_id, "")
        found = await nodes_db.get_node(on or self.db, owner_id, node_id) if NODE_ID.fullmatch(node_id) else None
        if found is None or not live(found) or (kind is not None and found["kind"] != kind):
            raise NodeNotFound(node_id, kind)
        return found

    async def paths_of(self, node_ids: Iterable[str], *, on: AsyncConnection | None = None) -> dict[str, str]:
        """The path of each node (``root`` included), in one query."""
        wanted = sorted({node_id for node_id in node_ids if node_id and node_id != ROOT})
        names = await nodes_db.ancestry(on or self.db, wanted)
        found = {node_id: "/" + "/".join(segments) for node_id, segments in names.items()}
        found[ROOT] = paths.ROOT_PATH
        return found

    async def with_paths(self, rows: list[FileRow], viewer: int, *, on: AsyncConnection | None = None) -> list[FileRow]:
        """Each file row with its ``path``: where it is, or where it is headed while uploading (None: a failed
        upload). Only for the owner: a reader of a shared file learns nothing of the owner's folders (its
        ``path`` and ``parent_id`` are None). ``on``: the transaction that just wrote the rows."""
        own = [row for row in rows if row["owner_id"] == viewer]
        found = await self.paths_of((row["parent_id"] for row in own if row["parent_id"]), on=on)
        for row in rows:
            parent = row["parent_id"] if row["owner_id"] == viewer else None
            row["path"] = paths.join_path(found[parent], row["file_name"]) if parent in found else None
            row["parent_id"] = parent
        return rows

    async def resolve(self, owner_id: int, path: str) -> NodeRow | None:
        """The live node at ``path`` (the root for ``/``); None when nothing is there."""
        node = root_node(owner_id, "")
        for segment in checked_path(path):
            if node["kind"] != FOLDER:
                return None
            child = await nodes_db.live_child(self.db, owner_id, node["id"], name_key(segment))
            if child is None:
                return None
            node = child
        return node

    # --- folders ----------------------------------------------------------------------------------------

    async def make_folder(self, owner_id: int, parent_id: str, name: str, *, autorename: bool = False) -> NodeRow:
        """A new folder in ``parent_id``: NameTaken (409) when the name is taken, unless ``autorename``."""
        checked_name(name)
        async with self.changing(owner_id) as journal:
            await self.node(owner_id, parent_id, FOLDER, on=journal.conn)
            name = await self.free_name(journal, parent_id, name, autorename=autorename, folder=True)
            return await self._insert_folder(journal, parent_id, name)

    async def make_path(self, owner_id: int, path: str) -> tuple[NodeRow, bool]:
        """The folder at ``path``, made with every missing parent; (folder, whether it was made).

        An existing folder at exactly that path is answered as it is; a file in the way is NameTaken.
        """
        segments = checked_path(path)
        async with self.changing(owner_id) as journal:
            return await self.folders_along(journal, segments)

    async def folders_along(self, journal: Journal, segments: list[str]) -> tuple[NodeRow, bool]:
        """Walk ``segments`` from the root, making the folders that are missing (inside ``journal``'s change)."""
        node, made = root_node(journal.owner_id, ""), False
        for segment in segments:
            child = await nodes_db.live_child(journal.conn, journal.owner_id, node["id"], name_key(segment))
            if child is not None and child["kind"] != FOLDER:
                raise NameTaken(segment, child["kind"])
            if child is None:
                child, made = await self._insert_folder(journal, node["id"], segment), True
            node = child
        return node, made

    async def _insert_folder(self, journal: Journal, parent_id: str, name: str) -> NodeRow:
        now = stamp_now(self.clock)
        node = NodeRow(id=new_node_id(), owner_id=journal.owner_id, kind=FOLDER, parent_id=parent_id, name=name,
                       name_key=name_key(name), created_at=now, modified_at=now, replaced_by=None, replaced_at=None,
                       deleted_at=None, deleted_path=None, trashed_with=None)
        try:
            await nodes_db.insert_node(journal.conn, dict(node))
        except NameInUse:
            raise NameTaken(name, FOLDER) from None
        await journal.record(Change("created", node["id"], FOLDER))
        return node

    async def free_name(self, journal: Journal, parent_id: str, name: str, *, autorename: bool,
                         folder: bool = False, ignore: str | None = None) -> str:
        """``name`` if the folder does not hold it (``ignore``: the node being renamed, which may keep it);
        with ``autorename`` the first free of ``name (1)``, ``name (2)``, ...; NameTaken otherwise."""
        return await self.first_free(journal, parent_id, paths.free_names(name, folder=folder),
                                     ignore=ignore, stop_after=None if autorename else 1)

    async def first_free(self, journal: Journal, parent_id: str, names: Iterable[str], *,
                         ignore: str | None = None, stop_after: int | None = None) -> str:
        """The first of ``names`` free in the folder, looked up a batch at a time: the first name alone (it is
        free nearly always, and a batch costs 32 names made and keyed), then 32 at a time."""
        batch: list[str] = []
        tried = 0
        for candidate in names:
            batch.append(candidate)
            tried += 1
            if len(batch) < (32 if tried > 1 else 1) and (stop_after is None or tried < stop_after):
                continue
            free = await self._first_free_of(journal, parent_id, batch, ignore)
            if free is not None:
                return free
            if stop_after is not None and tried >= stop_after:
                holder = await nodes_db.live_child(journal.conn, journal.owner_id, parent_id, name_key(batch[0]))
                raise NameTaken(batch[0], holder["kind"] if holder else None)
            batch = []
        raise AssertionError("free_names never ends")

    async def _first_free_of(self, journal: Journal, parent_id: str, batch: list[str], ignore: str | None) -> str | None:
        keys = [name_key(n) for n in batch]
        taken = await nodes_db.taken_keys(journal.conn, journal.owner_id, parent_id, keys)
        if ignore is not None:
            own = await nodes_db.get_node(journal.conn, journal.owner_id, ignore)
            if own is not None and own["parent_id"] == parent_id:
                taken.discard(own["name_key"])
        return next((candidate for candidate, key in zip(batch, keys, strict=True) if key not in taken), None)

    # --- rename, move ---------------------------------------------------------------------------------

    async def move(self, owner_id: int, node_id: str, kind: str, *, name: str | None = None,
                   parent_id: str | None = None, autorename: bool = False) -> NodeRow:
        """Rename and/or move a folder or file, keeping its id. The root: CannotChangeRoot (400); a folder
        into itself or below itself: Cycle (409); a taken name: NameTaken (409) unless ``autorename``."""
        if node_id == ROOT:
            raise CannotChangeRoot()
        if name is not None:
            checked_name(name)
        async with self.changing(owner_id) as journal:
            node = await self.node(owner_id, node_id, kind, on=journal.conn)
            target = parent_id or node["parent_id"]
            await self.node(owner_id, target, FOLDER, on=journal.conn)
            if kind == FOLDER and target != ROOT and await nodes_db.is_below(journal.conn, target, node_id):
                raise Cycle(node_id, target)
            new_name = await self.free_name(journal, target, name or node["name"], autorename=autorename,
                                             folder=kind == FOLDER, ignore=node_id)
            if (target, new_name) == (node["parent_id"], node["name"]):
                return node
            old_path = (await self.paths_of([node_id], on=journal.conn))[node_id]
            now = stamp_now(self.clock)
            try:
                await nodes_db.place(journal.conn, node_id, target, new_name, name_key(new_name), now)
            except NameInUse:
                raise NameTaken(new_name, None) from None
            await journal.record(Change("moved", node_id, kind, old_path))
            return {**node, "parent_id": target, "name": new_name, "name_key": name_key(new_name), "modified_at": now}

    # --- placing files ----------------------------------------------------------------------------------

    async def same_content_at(self, owner_id: int, parent_id: str, name: str, fingerprint: str, *,
                              on: AsyncConnection | None = None) -> str | None:
        """The id of the file holding ``name`` in the folder if it has this content (an ``add`` of it
        uploads nothing: contract v1.2)."""
        holder = await nodes_db.live_child(on or self.db, owner_id, parent_id, name_key(name))
        if holder is None or holder["kind"] != FILE:
            return None
        row = await files_db.get_file(on or self.db, holder["id"])
        return holder["id"] if row is not None and row["fingerprint"] == fingerprint else None

    async def check_replaces(self, owner_id: int, replaces: str, parent_id: str, name: str) -> None:
        """ReplacesMismatch unless ``replaces`` is a file of the owner's at this place, now or as a version
        (a sync client's edit of a file replaced meanwhile gets a conflicted copy, not this error)."""
        node = await nodes_db.get_node(self.db, owner_id, replaces) if NODE_ID.fullmatch(replaces) else None
        if node is None or node["kind"] != FILE or (node["parent_id"], node["name_key"]) != (parent_id, name_key(name)):
            raise ReplacesMismatch(replaces)

    async def place_file(self, journal: Journal, file_id: str, parent_id: str, name: str, mode: str,
                         replaces: str | None) -> tuple[NodeRow, str | None]:
        """A file takes its place in the tree (an upload committed, a copy, a version restored); (its node,
        the id of the file it replaced or None). The name is decided now, by ``mode`` (contract v1.2,
        Upload into the tree): ``add`` takes the first free name; ``overwrite`` replaces the file there;
        ``update`` replaces it only if it is ``replaces``, else takes a conflicted-copy name. A folder is
        never replaced. A destination folder gone meanwhile (trashed, say) puts the file in the root.
        """
        if parent_id != ROOT and not live(await nodes_db.get_node(journal.conn, journal.owner_id, parent_id)):
            parent_id = ROOT
        # Only a file to replace matters here; an ``add`` takes the first free name below whatever holds it.
        holder = None if mode == "add" else await nodes_db.live_child(journal.conn, journal.owner_id, parent_id,
                                                                      name_key(name))
        replaced = None
        if holder is not None and holder["kind"] == FILE:
            if mode == "overwrite" or (mode == "update" and holder["id"] == replaces):
                replaced = holder["id"]
        if mode == "update" and replaced is None:  # not (or no longer) the file it was meant to replace
            day = self.clock().astimezone(datetime.UTC).date()
            name = await self.first_free(journal, parent_id, paths.conflicted_copy_names(name, day))
        now = stamp_now(self.clock)
        if replaced is not None:
            await nodes_db.mark_replaced(journal.conn, replaced, file_id, now)
            await nodes_db.hand_over_sharing(journal.conn, replaced, file_id)
        else:
            name = await self.first_free(journal, parent_id, paths.free_names(name))
        node = file_node(journal.owner_id, file_id, parent_id, name, now)
        try:
            await nodes_db.insert_node(journal.conn, dict(node))
        except NameInUse:
            raise NameTaken(name, None) from None
        await journal.record(Change("replaced" if replaced else "created", file_id, FILE))
        return node, replaced

    async def place_new_files(self, journal: Journal, placed: Sequence[tuple[str, str, str]]) -> list[NodeRow]:
        """New files take their places as :meth:`place_file` places each in mode ``add`` (a batch of small
        files, gateway/core/uploads.py's store_batch): ``placed`` is (file id, folder id, name) each, their
        nodes come back in that order. Each folder is looked at once and its names in one query; a name
        taken (in the folder, or by a file placed before it here) gets the first free one, as one file's
        would; then one statement inserts the nodes and one the journal's records."""
        if not placed:
            return []
        folders = {}
        for parent_id in dict.fromkeys(parent for _, parent, _ in placed):
            gone = parent_id != ROOT and not live(await nodes_db.get_node(journal.conn, journal.owner_id, parent_id))
            folders[parent_id] = ROOT if gone else parent_id
        wanted: dict[str, list[str]] = {}
        for _, parent, name in placed:
            wanted.setdefault(folders[parent], []).append(name_key(name))
        taken = {folder: await nodes_db.taken_keys(journal.conn, journal.owner_id, folder, keys)
                 for folder, keys in wanted.items()}
        now = stamp_now(self.clock)
        made: list[NodeRow] = []
        for file_id, parent, name in placed:
            folder = folders[parent]
            if name_key(name) in taken[folder]:
                name = await self.first_free(journal, folder, (free for free in paths.free_names(name)
                                                               if name_key(free) not in taken[folder]))
            taken[folder].add(name_key(name))
            made.append(file_node(journal.owner_id, file_id, folder, name, now))
        try:
            await nodes_db.insert_nodes(journal.conn, [dict(node) for node in made])
        except NameInUse:
            raise NameTaken(", ".join(node["name"] for node in made), None) from None
        await journal.record_many([Change("created", node["id"], FILE) for node in made])
        return made

    # --- the trash --------------------------------------------------------------------------------------

    async def trash(self, owner_id: int, node_id: str, kind: str) -> list[str]:
        """The folder or file, and all it holds, to the trash as one entry; the ids of the files that went
        (their shares end and their links are revoked: a restore does not bring them back)."""
        if node_id == ROOT:
            raise CannotChangeRoot()
        async with self.changing(owner_id) as journal:
            node = await self.node(owner_id, node_id, kind, on=journal.conn)
            path = (await self.paths_of([node_id], on=journal.conn))[node_id]
            now = stamp_now(self.clock)
            await nodes_db.trash(journal.conn, node_id, path, now)
            file_ids = await nodes_db.subtree_files(journal.conn, node_id)
            await nodes_db.end_sharing(journal.conn, file_ids)
            await journal.record(Change("trashed", node_id, node["kind"], path))
        return file_ids

    async def trash_entry(self, owner_id: int, entry_id: str, on: AsyncConnection | None = None) -> NodeRow:
        """The owner's trash entry ``entry_id``; NodeNotFound otherwise."""
        found = await nodes_db.get_node(on or self.db, owner_id, entry_id)
        if found is None or found["trashed_with"] != entry_id:
            raise NodeNotFound(entry_id, None)
        return found

    async def restore(self, owner_id: int, entry_id: str) -> NodeRow:
        """A trash entry back at the path it had, with the id it had: missing parents made again, a taken
        name replaced by the next free one (as in ``add``)."""
        async with self.changing(owner_id) as journal:
            entry = await self.trash_entry(owner_id, entry_id, journal.conn)
            # The folders along the path it had (made by this API, so valid names); its own name is the
            # node's: a name kept from v1.1 may hold what a path cannot (a `/`, say).
            had = entry["deleted_path"] or "/" + entry["name"]
            parent_path = had[: len(had) - len(entry["name"]) - 1] or paths.ROOT_PATH
            parent, _ = await self.folders_along(journal, checked_path(parent_path))
            name = await self.first_free(journal, parent["id"], paths.free_names(entry["name"], folder=entry["kind"] == FOLDER))
            now = stamp_now(self.clock)
            try:
                await nodes_db.untrash(journal.conn, entry_id, parent["id"], name, name_key(name), now)
            except NameInUse:
                raise NameTaken(name, None) from None
            # Everything it brings back, parents first (contract v1.2: a restored folder's contents are new
            # to a client that saw it go).
            for node in await changes_db.live_subtree(journal.conn, journal.owner_id, entry_id):
                await journal.record(Change("restored", node["id"], node["kind"]))
            return {**entry, "parent_id": parent["id"], "name": name, "name_key": name_key(name), "modified_at": now,
                    "deleted_at": None, "deleted_path": None, "trashed_with": None}

    # --- deleting for good ------------------------------------------------------------------------------

    async def purge(self, owner_id: int, node_id: str, *, expired: bool = False) -> tuple[list[str], list[str]]:
        """A trash entry (or, with ``expired``, a version) deleted for good: its rows, what it held, and the
        versions of its files; (the ids of the files deleted, the fingerprints their content had), to be
        forgotten and collected once committed (gateway/core/deletion.py). NodeNotFound for anything else
        (nothing, with ``expired``: a retention round that lost a race to a restore leaves it)."""
        async with self.changing(owner_id) as journal:
            node = await nodes_db.get_node(journal.conn, owner_id, node_id)
            entry = node is not None and node["trashed_with"] == node_id
            version = expired and node is not None and node["replaced_by"] is not None and node["deleted_at"] is None
            if not (entry or version):
                if expired:
                    return [], []
                raise NodeNotFound(node_id, None)
            assert node is not None
            if entry:
                ids = await nodes_db.trashed_with(journal.conn, node_id)
                ids += [older["id"] for file_id in ids for older in await nodes_db.versions_of(journal.conn, file_id)]
            else:
                ids = [node_id]
                await nodes_db.bypass(journal.conn, node_id, node["replaced_by"])
            # Under the content locks, as every change to a content's references is (gateway/core/deletion.py).
            for fingerprint in await files_db.fingerprints_of(journal.conn, ids):
                await self.db.lock_content(journal.conn, fingerprint)
            fingerprints = await files_db.delete_files(journal.conn, ids)
            await nodes_db.purge_nodes(journal.conn, ids)
            if entry:  # a version was in no tree: no change to record
                await journal.record(Change("purged", node_id, node["kind"], node["deleted_path"]))
        return ids, fingerprints
