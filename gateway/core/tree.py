"""The tree as the API serves it: folders and their entries, paths, metadata, search, copies, versions
and the trash. Every change goes through gateway/core/namespace.py; this module reads, decides who may
do what (gateway/core/permissions.py for files), and collects content no file refers to any more.
"""
from __future__ import annotations

from dataclasses import dataclass

import structlog

from gateway.config import Config
from gateway.core.clock import Clock, stamp_ago, stamp_now
from gateway.core.deletion import Deletion
from gateway.core.errors import NodeNotFound, NotAVersion, NotUploaded, PathNotFound
from gateway.core.limits import Limits
from gateway.core.namespace import Namespace, checked_name, new_node_id, root_node
from gateway.core.permissions import Permissions
from gateway.db import Database
from gateway.db import files as files_db
from gateway.db import nodes as nodes_db
from gateway.db import users as users_db
from gateway.db.files import FileRow
from gateway.db.nodes import FILE, FOLDER, ROOT, NodeRow
from protocol import paths
from protocol.paths import name_key
from protocol.states import FileStatus

log = structlog.get_logger("gateway.tree")
# Files or folders deleted for good per retention round, at most (the rest wait for the next round).
PURGE_BATCH = 100


@dataclass(frozen=True)
class Entry:
    """A folder (``node``) or a file (``file``, its row) with its path: what the API renders."""

    node: NodeRow
    path: str
    file: FileRow | None = None


@dataclass(frozen=True)
class EntriesPage:
    entries: list[Entry]
    cursor: tuple[str, str, str] | None  # (kind, name_key, id) of the last entry; None on the last page


class Tree:
    def __init__(self, config: Config, db: Database, namespace: Namespace, permissions: Permissions,
                 deletion: Deletion, limits: Limits, clock: Clock):
        self.config = config
        self.db = db
        self.namespace = namespace
        self.permissions = permissions
        self.deletion = deletion
        self.limits = limits
        self.clock = clock

    # --- paths and entries ------------------------------------------------------------------------------

    async def entries_of(self, owner_id: int, nodes: list[NodeRow]) -> list[Entry]:
        """Folder and file nodes as entries, paths and file rows read a page at a time: the paths of their
        folders (one, for a page of a folder's entries), each entry's path its folder's and its name."""
        folders = await self.namespace.paths_of(node["parent_id"] for node in nodes)
        rows = await files_db.files_by_ids(self.db, [node["id"] for node in nodes if node["kind"] == FILE])
        entries = []
        for node in nodes:
            path = paths.join_path(folders[node["parent_id"]], node["name"])
            row = rows.get(node["id"])
            if row is not None:
                row["path"] = path
            entries.append(Entry(node, path, row))
        return entries

    async def folder(self, owner_id: int, folder_id: str) -> Entry:
        """The owner's folder (``root`` too); NodeNotFound otherwise."""
        if folder_id == ROOT:
            return Entry(await self._root(owner_id), paths.ROOT_PATH)
        node = await self.namespace.node(owner_id, folder_id, FOLDER)
        return (await self.entries_of(owner_id, [node]))[0]

    async def _root(self, owner_id: int) -> NodeRow:
        user = await users_db.user_created_at(self.db, owner_id)
        return root_node(owner_id, user or stamp_now(self.clock))

    async def entries(self, owner_id: int, folder_id: str, limit: int,
                      after: tuple[str, str, str] | None) -> EntriesPage:
        """A page of the folder's live entries: folders, then files, each by name without regard to case.

        Keyset paging on (kind, name_key, id), one index range per kind: never OFFSET, so the last page
        of 100,000 entries costs what the first does.
        """
        await self.namespace.node(owner_id, folder_id, FOLDER)
        kind, position = (after[0], (after[1], after[2])) if after else (FOLDER, None)
        found: list[NodeRow] = []
        if kind == FOLDER:
            found = await nodes_db.entries_page(self.db, owner_id, folder_id, FOLDER, position, limit + 1)
            position = None
        if len(found) <= limit:
            found += await nodes_db.entries_page(self.db, owner_id, folder_id, FILE, position, limit + 1 - len(found))
        more = len(found) > limit
        page = found[:limit]
        cursor = (page[-1]["kind"], page[-1]["name_key"], page[-1]["id"]) if more else None
        return EntriesPage(await self.entries_of(owner_id, page), cursor)

    async def metadata(self, owner_id: int, path: str) -> Entry:
        """The folder or file at ``path``; PathNotFound (404) when nothing is there."""
        node = await self.namespace.resolve(owner_id, path)
        if node is None:
            raise PathNotFound(path)
        if node["id"] == ROOT:
            return await self.folder(owner_id, ROOT)
        return (await self.entries_of(owner_id, [node]))[0]

    async def search(self, owner_id: int, query: str, limit: int) -> list[Entry]:
        """The owner's folders and uploaded files whose name holds ``query`` without regard to case."""
        return await self.entries_of(owner_id, await nodes_db.search(self.db, owner_id, name_key(query), limit))

    # --- changes the API asks for -------------------------------------------------------------------------

    async def move(self, owner_id: int, node_id: str, kind: str, *, name: str | None, parent_id: str | None,
                   autorename: bool) -> Entry:
        node = await self.namespace.move(owner_id, node_id, kind, name=name, parent_id=parent_id, autorename=autorename)
        if kind == FILE:
            await self.permissions.invalidate(node_id)  # its cached row has the old name
        return (await self.entries_of(owner_id, [node]))[0]

    async def make_folder(self, owner_id: int, *, path: str | None, parent_id: str | None, name: str | None,
                          autorename: bool) -> tuple[Entry, bool]:
        """(the folder, whether it was made): by ``path`` (mkdir -p) or by ``parent_id`` and ``name``."""
        if path is not None:
            node, made = await self.namespace.make_path(owner_id, path)
            if node["id"] == ROOT:
                return await self.folder(owner_id, ROOT), False
        else:
            node, made = await self.namespace.make_folder(owner_id, parent_id or ROOT, name or "", autorename=autorename), True
        return (await self.entries_of(owner_id, [node]))[0], made

    async def copy(self, user_id: int, file_id: str, *, parent_id: str | None, name: str | None,
                   autorename: bool) -> Entry:
        """A new file of the caller's with the same content: no bytes move. Readable by the caller is
        enough; it lands in the caller's own tree (the file's own folder for its owner, else the root),
        counts toward the caller's quota, and takes ``name`` (default: the file's) or, with
        ``autorename``, the next free one (NameTaken otherwise)."""
        source, _ = await self.permissions.readable(user_id, file_id)
        if source["status"] != FileStatus.UPLOADED:
            raise NotUploaded(source["status"])
        target = parent_id or (source["parent_id"] if source["owner_id"] == user_id and source["parent_id"] else ROOT)
        wanted = checked_name(name if name is not None else source["file_name"])
        copy_id = new_node_id()
        async with self.namespace.changing(user_id) as journal:
            await self.namespace.node(user_id, target, FOLDER, on=journal.conn)
            await self.limits.check_start(journal.conn, user_id, source["file_size"], uploading=False)
            await self.db.lock_content(journal.conn, source["fingerprint"])
            free = await self.namespace.free_name(journal, target, wanted, autorename=autorename)
            if not await files_db.copy_file(journal.conn, file_id, copy_id, user_id, free, stamp_now(self.clock)):
                raise NodeNotFound(file_id, FILE)  # deleted for good since it was read
            node, _ = await self.namespace.place_file(journal, copy_id, target, free, "add", None)
        return (await self.entries_of(user_id, [node]))[0]

    # --- versions ---------------------------------------------------------------------------------------

    async def versions(self, user_id: int, file_id: str) -> list[FileRow]:
        """The files this one replaced, newest first; for whoever may read it."""
        await self.permissions.readable(user_id, file_id)
        older = await nodes_db.versions_of(self.db, file_id)
        rows = await files_db.files_by_ids(self.db, [node["id"] for node in older])
        return await self.namespace.with_paths([rows[node["id"]] for node in older if node["id"] in rows], user_id)

    async def restore_version(self, owner_id: int, version_id: str) -> FileRow:
        """A new file with the version's content (no bytes move) at the path of the file it is a version
        of; that file becomes a version in turn. Owner only."""
        version, _ = await self.permissions.owned(owner_id, version_id)
        if version["replaced_by"] is None:
            raise NotAVersion(version_id)
        current_id = await nodes_db.current_of(self.db, version_id)
        restored = new_node_id()
        async with self.namespace.changing(owner_id) as journal:
            current = await self.namespace.node(owner_id, current_id, FILE, on=journal.conn)
            await self.limits.check_start(journal.conn, owner_id, version["file_size"], uploading=False)
            await self.db.lock_content(journal.conn, version["fingerprint"])
            if not await files_db.copy_file(journal.conn, version_id, restored, owner_id, current["name"],
                                            stamp_now(self.clock)):
                raise NodeNotFound(version_id, FILE)  # deleted for good since it was read
            _, replaced = await self.namespace.place_file(journal, restored, current["parent_id"], current["name"],
                                                          "update", current_id)
        if replaced:
            await self.permissions.invalidate(replaced)
        row = await files_db.get_file(self.db, restored)
        assert row is not None, "committed above"
        return (await self.namespace.with_paths([row], owner_id))[0]

    # --- the trash --------------------------------------------------------------------------------------

    async def delete_file(self, owner_id: int, file_id: str) -> None:
        """``DELETE /dropbox/v1/files/{id}``: a file in the tree goes to the trash; a version is deleted for
        good; an upload in progress (or a failed one), which is in no tree yet, is deleted at once."""
        row, _ = await self.permissions.owned(owner_id, file_id)
        if row["replaced_by"] is not None:
            await self._purged(*await self.namespace.purge(owner_id, file_id, expired=True))
        elif row["status"] != FileStatus.UPLOADED and await self.deletion.delete(owner_id, file_id):
            return
        else:
            await self.trash(owner_id, file_id, FILE)

    async def trash(self, owner_id: int, node_id: str, kind: str) -> None:
        """To the trash, with all it holds; the shares and links of every file in it end."""
        for file_id in await self.namespace.trash(owner_id, node_id, kind):
            await self.permissions.invalidate(file_id)

    async def trash_page(self, owner_id: int, limit: int, before: tuple[str, str] | None) -> tuple[list[Entry], tuple[str, str] | None]:
        found = await nodes_db.trash_page(self.db, owner_id, before, limit + 1)
        page = found[:limit]
        cursor = (page[-1]["deleted_at"] or "", page[-1]["id"]) if len(found) > limit else None
        entries = []
        rows = await files_db.files_by_ids(self.db, [node["id"] for node in page if node["kind"] == FILE])
        for node in page:
            row = rows.get(node["id"])
            if row is not None:
                row["path"] = node["deleted_path"]
            entries.append(Entry(node, node["deleted_path"] or "/", row))
        return entries, cursor

    async def restore(self, owner_id: int, entry_id: str) -> Entry:
        node = await self.namespace.restore(owner_id, entry_id)
        for file_id in await nodes_db.subtree_files(self.db, entry_id):
            await self.permissions.invalidate(file_id)
        return (await self.entries_of(owner_id, [node]))[0]

    async def delete_for_good(self, owner_id: int, entry_id: str) -> None:
        """A trash entry deleted for good, with what it holds and the versions of its files; content no
        live file, version or trashed file refers to any more is collected."""
        await self._purged(*await self.namespace.purge(owner_id, entry_id))

    async def _purged(self, file_ids: list[str], fingerprints: list[str]) -> None:
        """After files were deleted for good: their cached facts forgotten (a version's may be cached),
        and content nothing refers to any more collected."""
        for file_id in file_ids:
            await self.permissions.invalidate(file_id)
        for fingerprint in fingerprints:
            await self.deletion.drop_unreferenced_content(fingerprint)

    async def purge_expired(self) -> dict[str, int]:
        """One round of retention: trash entries older than ``trash_retention`` and versions older than
        ``version_retention`` are deleted for good (at most PURGE_BATCH of them), their content collected."""
        due = await nodes_db.expired(self.db, stamp_ago(self.clock, self.config.trash_retention),
                                     stamp_ago(self.clock, self.config.version_retention), PURGE_BATCH)
        counts = {"trash": 0, "versions": 0}
        for node in due:
            purged = await self.namespace.purge(node["owner_id"], node["id"], expired=True)
            counts["trash" if node["trashed_with"] == node["id"] else "versions"] += 1
            await self._purged(*purged)
        if due:
            log.info("purged", **counts)
        return counts
