"""An in-memory server with the contract's tree and journal (v1.2: The tree, Upload into the tree, Trash, Changes).

It implements ``client.sync.remote.Remote`` for the sync engine, and is what
"another client" changes in the simulation. Small, and faithful to the
contract where the engine depends on it:

- ids survive renames and moves; new content at a path is a new file id, and
  the file it replaced becomes a version (kept, downloadable by its id);
- names compare by ``protocol.paths.name_key``; ``mkdir``/``move`` answer
  ``name_taken`` (409) and ``cycle``; uploads take ``add`` (a free name
  ``name (1).ext``, or the file already there when it has the same content) or
  ``update`` with ``replaces`` (replace only if the file there still is that
  one, else ``name (conflicted copy YYYY-MM-DD).ext``); a folder is never
  replaced by a file;
- the journal: without a cursor, the whole tree in pages (parents first) as
  one snapshot, then the cursor of that moment; with a cursor, each change in
  order: an object as it is now, ``deleted`` for a trashed node (one entry
  for a folder), ``deleted`` at the old path then the object for a move, no
  entries for what a moved folder holds, no ``deleted`` for a replaced file;
- what is deleted goes to the trash: nothing the server ever held is lost
  (``kept`` lists the fingerprints of the trash and of versions).
"""
from __future__ import annotations

import datetime
import itertools
import os
from dataclasses import dataclass

from client.sync.remote import ChangesPage, CursorReset, LocalSource, RemoteFailure, SourceChanged
from protocol.fingerprints import fingerprint_bytes
from protocol.paths import check_name, conflicted_copy_names, free_names, name_key, InvalidName

ROOT = "root"


@dataclass
class Node:
    parent: str | None
    name: str
    folder: bool
    data: bytes | None = None
    fingerprint: str | None = None


class MemoryServer:
    def __init__(self, chunk_size: int, page_size: int = 100, today: datetime.date = datetime.date(2026, 12, 4)):
        self.chunk_size = chunk_size
        self.page_size = page_size
        self.today = today
        self.nodes: dict[str, Node] = {ROOT: Node(None, "", True)}
        self.journal: list[dict] = []
        self.versions: dict[str, Node] = {}  # replaced files, by their own id
        self.kept: set[str] = set()  # fingerprints in the trash or among versions
        self._listings: dict[str, tuple[list[dict], int]] = {}
        self._ids = itertools.count(1)
        self.oldest = 0  # journal entries before this index are pruned: older cursors get cursor_reset

    # -- reading ---------------------------------------------------------------------------------

    def path(self, node_id: str) -> str:
        names, walk = [], node_id
        while self.nodes[walk].parent is not None:
            names.append(self.nodes[walk].name)
            walk = self.nodes[walk].parent  # type: ignore[assignment]
        return "/" + "/".join(reversed(names))

    def obj(self, node_id: str) -> dict:
        node = self.nodes[node_id]
        common = {"name": node.name, "path": self.path(node_id), "parent_id": node.parent}
        if node.folder:
            return {"type": "folder", "folder_id": node_id, **common}
        return {"type": "file", "file_id": node_id, "file_name": node.name, "fingerprint": node.fingerprint,
                "file_size": len(node.data or b""), "status": "uploaded", **common}

    def children(self, node_id: str) -> list[str]:
        return sorted(k for k, n in self.nodes.items() if n.parent == node_id)

    def subtree(self, node_id: str) -> list[str]:
        out = [node_id]
        for child in self.children(node_id):
            out += self.subtree(child)
        return out

    def holder(self, parent: str, name: str) -> str | None:
        return next((k for k in self.children(parent) if name_key(self.nodes[k].name) == name_key(name)), None)

    def listing(self, top: str = ROOT) -> dict[str, str | None]:
        """path below ``top`` -> fingerprint (None for folders)."""
        base = self.path(top).rstrip("/")
        return {self.path(k)[len(base):]: self.nodes[k].fingerprint for k in self.subtree(top) if k != top}

    def _new_id(self, kind: str) -> str:
        return f"{kind}{next(self._ids)}"

    def _folder(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or not node.folder:
            raise RemoteFailure(f"no folder {node_id}", code="not_found", gone=True)

    def _valid(self, name: str) -> None:
        try:
            check_name(name)
        except InvalidName as exc:
            raise RemoteFailure(str(exc), code="invalid_name") from None

    # -- the journal -----------------------------------------------------------------------------

    async def changes(self, cursor: str | None) -> ChangesPage:
        if cursor is None:
            token = self._new_id("L")
            snapshot = [self.obj(k) for k in self.subtree(ROOT) if k != ROOT]
            self._listings[token] = (snapshot, len(self.journal))
            cursor = f"{token}:0"
        kind, _, rest = cursor.partition(":")
        if kind.startswith("L"):
            snapshot, seq = self._listings[kind]
            offset = int(rest)
            page = snapshot[offset:offset + self.page_size]
            more = offset + self.page_size < len(snapshot)
            return ChangesPage(page, f"{kind}:{offset + self.page_size}" if more else f"J:{seq}", more)
        seq = int(rest)
        if seq < self.oldest:
            raise CursorReset("the journal no longer reaches back to this cursor")
        page = self.journal[seq:seq + self.page_size]
        end = seq + len(page)
        return ChangesPage(page, f"J:{end}", end < len(self.journal))

    async def wait(self, cursor: str, timeout: float) -> bool:  # noqa: ASYNC109
        return int(cursor.partition(":")[2]) < len(self.journal)

    # -- changing the tree -----------------------------------------------------------------------

    async def folder_at(self, path: str) -> str:
        node = ROOT
        for name in [n for n in path.split("/") if n]:
            found = self.holder(node, name)
            node = found if found is not None else (await self.mkdir(node, name))["folder_id"]
        return node

    async def mkdir(self, parent_id: str, name: str) -> dict:
        self._folder(parent_id)
        self._valid(name)
        if self.holder(parent_id, name) is not None:
            raise RemoteFailure(f"{name} is taken", code="name_taken")
        node_id = self._new_id("d")
        self.nodes[node_id] = Node(parent_id, name, True)
        self.journal.append(self.obj(node_id))
        return self.obj(node_id)

    async def move(self, node_id: str, folder: bool, parent_id: str, name: str) -> dict:
        node = self.nodes.get(node_id)
        if node is None or node.folder != folder or node_id == ROOT:
            raise RemoteFailure(f"no such node {node_id}", code="not_found", gone=True)
        self._folder(parent_id)
        self._valid(name)
        if parent_id in self.subtree(node_id):
            raise RemoteFailure("a folder cannot move into itself", code="cycle")
        holder = self.holder(parent_id, name)
        if holder is not None and holder != node_id:
            raise RemoteFailure(f"{name} is taken", code="name_taken")
        old_path = self.path(node_id)
        node.parent, node.name = parent_id, name
        self.journal.append({"type": "deleted", "id": node_id, "path": old_path})
        self.journal.append(self.obj(node_id))
        return self.obj(node_id)

    async def delete(self, node_id: str, folder: bool) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.folder != folder or node_id == ROOT:
            raise RemoteFailure(f"no such node {node_id}", code="not_found", gone=True)
        self.journal.append({"type": "deleted", "id": node_id, "path": self.path(node_id)})
        for key in self.subtree(node_id):
            gone = self.nodes.pop(key)
            if gone.fingerprint:
                self.kept.add(gone.fingerprint)

    async def upload(self, source: LocalSource, parent_id: str, name: str, replaces: str | None) -> dict:
        try:
            with open(source.path, "rb") as f:  # noqa: ASYNC230 - a test server reading a small local file
                data = f.read()
        except OSError as exc:
            raise SourceChanged(str(exc)) from None
        if fingerprint_bytes(data, self.chunk_size)[0] != source.fingerprint:
            raise SourceChanged(f"{source.path} is not the content announced")  # the store refuses such chunks
        return self.commit(parent_id, name, data, "update" if replaces else "add", replaces)

    def commit(self, parent_id: str, name: str, data: bytes, mode: str = "add", replaces: str | None = None,
               node_id: str | None = None) -> dict:
        """A file becomes ``uploaded`` and takes its place in the tree (contract v1.2, Upload into the tree).

        ``node_id``: the id the upload was given when it was announced (an upload's file id is the file's).
        """
        self._folder(parent_id)
        self._valid(name)
        fingerprint = fingerprint_bytes(data, self.chunk_size)[0]
        holder = self.holder(parent_id, name)
        held = self.nodes[holder] if holder is not None else None
        if held is not None and holder is not None and not held.folder and mode == "update" and holder == replaces:
            self.versions[holder] = self.nodes.pop(holder)
            self.kept.add(held.fingerprint)  # type: ignore[arg-type]
        elif held is not None and mode == "update" and not held.folder:
            name = self._free(parent_id, conflicted_copy_names(name, self.today))
        elif held is not None and mode == "add" and not held.folder and held.fingerprint == fingerprint:
            return self.obj(holder)  # type: ignore[arg-type]
        elif held is not None:
            name = self._free(parent_id, free_names(name))
        node_id = node_id or self._new_id("f")
        self.nodes[node_id] = Node(parent_id, name, False, data, fingerprint)
        self.journal.append(self.obj(node_id))
        return self.obj(node_id)

    def _free(self, parent_id: str, names) -> str:
        return next(n for n in names if self.holder(parent_id, n) is None)

    async def download(self, file_id: str, fingerprint: str, size: int, target: str) -> None:
        node = self.nodes.get(file_id) or self.versions.get(file_id)
        if node is None or node.folder:
            raise RemoteFailure(f"file {file_id} was not found", code="not_found", gone=True)
        assert node.fingerprint == fingerprint, "a file id names one content"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, node.data or b"")
        finally:
            os.close(fd)
