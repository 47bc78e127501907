"""The planner: three trees in, operations out. Pure: no I/O, no clock, no randomness.

Input: the remote tree (as last read from the journal), the local tree (as
last scanned) and the synced tree (the last state both sides agreed on), see
``client.sync.trees``. Output: a batch of operations that can run in any order,
each of which, once carried out and recorded, brings the two sides closer.
The engine plans again after every batch; when a plan is empty both sides
agree. Nothing here is remembered between plans: work is always derived anew
from what was observed, so a client killed at any moment plans the rest of
it, and nothing twice, when it starts again.

**Identity.** A synced node is found on each side by its key first (the remote
id, the local inode): wherever it is now, it is the same node, so a rename or
a move is a rename or a move on the other side, never a transfer. A local
inode counts only for the same content or the same place (inodes are reused).
A node not found by key is looked for at its old place: new content at a path
is a new remote id (the old file became a version), and editors that save by
writing a new file and renaming it over the old give a new inode.

**What each node becomes** (the target tree):

- place (parent and name): the side that moved it wins; when both moved it,
  the remote side wins (the server has already told other clients);
- content: the side that edited it; an edit on both sides to different content
  is a conflict: the remote content keeps the name, the local file becomes a new
  node of its own that is uploaded, under ``name (conflicted copy YYYY-MM-DD).ext``
  when it would otherwise take the same name (``protocol.paths``); both sides
  end with both files;
- existence: a node deleted on one side is deleted on the other only if the
  other side did not change it (edit, rename or move): **an edit is never lost
  to a deletion**. A deleted folder that still holds something kept (an edit
  inside it, or something moved into it) is kept, made again where needed;
- a cycle (a folder moved into the other on each side) is broken by taking the
  remote side's place for the local side's move;
- two nodes that end with the same name in one folder (compared as the tree
  compares names: ``protocol.paths.name_key``, so case-only differences count)
  are merged when they are the same thing made on both sides (two new folders,
  or two new files with the same content: no transfer), else the one that holds
  the name on the server keeps it and the other takes the next conflicted-copy
  name (a folder: ``name (1)``). Case-only renames are renames.

**Operations** are made only where they are safe to run in any order within
the batch, at most one per node: the destination parent exists on that side
and in the synced tree, the name is free on that side and in the synced tree,
a folder is not moved under itself, a transfer starts only once its node is
in place on both sides,
a folder is deleted locally only once it is empty, and remotely only when
nothing below it is kept. What waits is counted in ``Plan.blocked``; it is made
in a later batch. Names that block one another in a cycle (a swap of two names)
are freed by moving one node to a temporary name first.

**Safety valve.** A plan that would delete more than half of the files on
either side, and more than :data:`MASS_DELETE_MIN`, makes no operation at all
unless allowed (``Plan.mass_delete`` says what it would have deleted): a folder
on an unmounted disk must not empty the user's tree. (The scanner refuses a
folder that is gone or replaced before the planner sees it.)
"""
from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from client.sync.trees import SYNCED_ROOT, Entry, Trees
from protocol.paths import conflicted_copy_names, free_names, name_key

MASS_DELETE_MIN = 10  # a pass may always delete this many files


class Action(StrEnum):
    MKDIR = "mkdir"
    UPLOAD = "upload"
    DOWNLOAD = "download"
    MOVE = "move"
    DELETE = "delete"
    RECORD = "record"  # both sides already agree: only the synced tree changes
    FORGET = "forget"  # gone from both sides: only the synced tree changes


class Side(StrEnum):
    REMOTE = "remote"
    LOCAL = "local"

    @property
    def other(self) -> Side:
        return Side.LOCAL if self is Side.REMOTE else Side.REMOTE


SIDES = (Side.REMOTE, Side.LOCAL)  # iterating an Enum builds a generator each time; the planner does it per node


@dataclass(frozen=True)
class Op:
    """One operation on one side (``side`` None: on the synced tree only).

    ``remote`` and ``local`` are the node's keys on each side as planned (the node
    acted on, or the source of a transfer); ``parent``/``name`` its destination on
    ``side``, ``parent_nid`` the same folder in the synced tree. ``replaces``: the
    file whose content a transfer replaces (an upload in ``update`` mode names it
    to the server). ``forget``: the synced nodes gone from both sides once it is done.
    """

    action: Action
    side: Side | None
    nid: int | None
    folder: bool
    path: str
    remote: str | None = None
    local: str | None = None
    parent: str | None = None
    parent_nid: int | None = None
    name: str | None = None
    fingerprint: str | None = None
    size: int = 0
    replaces: str | None = None
    forget: tuple[int, ...] = ()
    reason: str = ""

    def key(self, side: Side) -> str | None:
        return self.remote if side is Side.REMOTE else self.local


@dataclass(frozen=True)
class MassDelete:
    side: Side
    deleted: int
    total: int

    def __str__(self) -> str:
        return (f"this pass would delete {self.deleted} of the {self.total} files on the {self.side.value} side; "
                "nothing was deleted (sync with --allow-mass-delete if that is what you want)")


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)
    blocked: int = 0  # operations that wait for others in this batch
    notes: list[str] = field(default_factory=list)
    mass_delete: MassDelete | None = None

    @property
    def done(self) -> bool:
        return not self.ops and not self.blocked and self.mass_delete is None


class _Node:
    """A node of the target tree: a synced node and/or a node on each side."""

    __slots__ = ("nid", "r", "l", "folder", "parent", "name", "fingerprint", "size", "kept", "from_local")

    def __init__(self, nid: int | None, r: str | None, l: str | None, folder: bool):  # noqa: E741
        self.nid, self.r, self.l, self.folder = nid, r, l, folder
        self.parent: _Node | None = None
        self.name = ""
        self.fingerprint: str | None = None
        self.size = 0
        self.kept = False
        self.from_local = False  # its place was taken from the local side (the side yielding in a cycle)

    def key(self, side: Side) -> str | None:
        return self.r if side is Side.REMOTE else self.l

    def order(self) -> tuple:
        return (self.nid is None, self.nid or 0, self.r or "", self.l or "")


def plan(trees: Trees, *, today: datetime.date, allow_mass_delete: bool = False) -> Plan:
    """The next batch of operations (see the module's docstring)."""
    return _Planner(trees, today, allow_mass_delete).run()


class _Planner:
    def __init__(self, trees: Trees, today: datetime.date, allow_mass_delete: bool):
        self.t = trees
        self.today = today
        self.allow_mass_delete = allow_mass_delete
        self.result = Plan()
        self.by: dict[Side, dict[str, _Node]] = {Side.REMOTE: {}, Side.LOCAL: {}}
        self.synced_nodes: dict[int, _Node] = {}
        self.nodes: list[_Node] = []
        self.busy: set[tuple[Side, str]] = set()  # (side, key) already acted on in this batch
        self.blockers: list[tuple[Side | None, _Node | None]] = []  # what held a name a node needed
        self.names: dict[Side, dict[tuple[str, str], str]] = {
            side: {(e.parent, name_key(e.name)): k for k, e in self.tree(side).items() if e.parent is not None}
            for side in SIDES}
        self.synced_names = {(s.parent, name_key(s.name)): nid for nid, s in trees.synced.items()
                             if s.parent is not None}

    def tree(self, side: Side) -> dict[str, Entry]:
        return self.t.remote if side is Side.REMOTE else self.t.local  # type: ignore[return-value]

    def run(self) -> Plan:
        self._match()
        self._add_new_nodes()
        self._split_conflicts()
        for node in self.nodes:
            self._target(node)
        self._break_cycles()
        self._decide_existence()
        self._resolve_names()
        self._make_ops()
        self._check_mass_delete()
        if not self.result.ops and self.result.blocked:
            self._break_deadlock()
        return self.result

    # -- identity ------------------------------------------------------------------------------------

    def _match(self) -> None:
        """Each synced node's counterpart on each side: by key, then (for what was not found) by place."""
        synced = self.t.synced
        root = self.synced_nodes[SYNCED_ROOT] = _Node(SYNCED_ROOT, self.t.remote_root, self.t.local_root, True)
        self.by[Side.REMOTE][self.t.remote_root] = root
        self.by[Side.LOCAL][self.t.local_root] = root
        self.nodes.append(root)
        order = self._synced_parents_first()
        for nid in order:
            s = synced[nid]
            node = self.synced_nodes[nid] = _Node(nid, None, None, s.folder)
            self.nodes.append(node)
            for side in SIDES:
                key = s.remote if side is Side.REMOTE else s.local
                entry = self.tree(side).get(key) if key is not None else None
                if key is None or entry is None or entry.folder != s.folder or key in self.by[side]:
                    continue
                if side is Side.LOCAL and not s.folder and entry.fingerprint != s.fingerprint:
                    parent_local = synced[s.parent].local if s.parent is not None else None
                    if entry.parent != parent_local or name_key(entry.name) != name_key(s.name):
                        continue  # an inode seen elsewhere with other content: reused, not this file
                self._claim(node, side, key)
        for nid in order:
            s, node = synced[nid], self.synced_nodes[nid]
            parent = self.synced_nodes[s.parent] if s.parent is not None else None
            for side in SIDES:
                parent_key = parent.key(side) if parent is not None else None
                if node.key(side) is not None or parent_key is None:
                    continue
                key = self.names[side].get((parent_key, name_key(s.name)))
                if key is not None and key not in self.by[side] and self.tree(side)[key].folder == s.folder:
                    self._claim(node, side, key)

    def _synced_parents_first(self) -> list[int]:
        return list(self.t.descendants("synced", SYNCED_ROOT))

    def _claim(self, node: _Node, side: Side, key: str) -> None:
        if side is Side.REMOTE:
            node.r = key
        else:
            node.l = key
        self.by[side][key] = node

    def _add_new_nodes(self) -> None:
        """A node for everything on one side that no synced node claims (parents first, as keys were walked)."""
        for side in SIDES:
            root = self.t.remote_root if side is Side.REMOTE else self.t.local_root
            for key in self.t.descendants(side.value, root):
                if key in self.by[side]:
                    continue
                node = _Node(None, None, None, self.tree(side)[key].folder)
                self._claim(node, side, key)
                self.nodes.append(node)

    def _split_conflicts(self) -> None:
        """Edited on both sides to different content: the local file becomes a node of its own."""
        for node in list(self.nodes):
            if node.nid is None or node.folder or node.r is None or node.l is None:
                continue
            was = self.t.synced[node.nid].fingerprint
            remote, local = self.t.remote[node.r].fingerprint, self.t.local[node.l].fingerprint
            if remote != was and local != was and remote != local:
                copy = _Node(None, None, node.l, False)
                node.l = None
                self.by[Side.LOCAL][copy.l] = copy  # type: ignore[index]
                self.nodes.append(copy)
                self.result.notes.append(f"{self._side_path(Side.LOCAL, copy.l)}: edited on both sides; "  # type: ignore[arg-type]
                                         "both versions are kept")

    # -- the target tree -------------------------------------------------------------------------

    def _place(self, node: _Node, side: Side) -> tuple[_Node | None, str]:
        entry = self.tree(side)[node.key(side)]  # type: ignore[index]
        return self.by[side].get(entry.parent), entry.name  # type: ignore[arg-type]

    def _synced_place(self, node: _Node) -> tuple[_Node | None, str]:
        s = self.t.synced[node.nid]  # type: ignore[index]
        return (self.synced_nodes.get(s.parent) if s.parent is not None else None), s.name

    def _target(self, node: _Node) -> None:
        if node.nid == SYNCED_ROOT:
            return
        remote = self._place(node, Side.REMOTE) if node.r is not None else None
        local = self._place(node, Side.LOCAL) if node.l is not None else None
        place: tuple[_Node | None, str] | None
        if node.nid is None:
            place = remote if remote is not None else local
            node.from_local = remote is None
        else:
            was = self._synced_place(node)
            if remote is not None and remote != was and remote[0] is not None:
                place = remote
            elif local is not None and local != was and local[0] is not None:
                place, node.from_local = local, True
            else:
                place = was
        assert place is not None  # a node comes from a side, or from the synced tree
        node.parent, node.name = place
        if node.folder:
            return
        content = [self.tree(side)[node.key(side)] for side in SIDES if node.key(side) is not None]  # type: ignore[index]
        was_fp = self.t.synced[node.nid].fingerprint if node.nid is not None else None
        changed = [e for e in content if e.fingerprint != was_fp] or content
        if changed:
            node.fingerprint, node.size = changed[0].fingerprint, changed[0].size

    def _break_cycles(self) -> None:
        """A folder moved into another on one side and that one into it on the other: the remote side's moves win."""
        safe: set[_Node] = set()  # nodes known to lead up to the root
        for node in self.nodes:
            seen: list[_Node] = []
            walk: _Node | None = node
            while walk is not None and walk not in safe and walk not in seen:
                seen.append(walk)
                walk = walk.parent
            if walk is None or walk in safe:
                safe.update(seen)
                continue
            cycle = seen[seen.index(walk):]
            loser = next((n for n in cycle if n.from_local and n.r is not None), None)
            if loser is None:  # cannot happen: a cycle needs a move from each side
                loser = max(cycle, key=_Node.order)
                loser.parent = self.synced_nodes[SYNCED_ROOT]
                continue
            loser.parent, loser.name = self._place(loser, Side.REMOTE)
            loser.from_local = False
            self.result.notes.append(f"{loser.name}: moved into each other on the two sides; the server's move is kept")

    def _decide_existence(self) -> None:
        for node in self.nodes:
            if node.kept or not self._wanted(node):
                continue
            walk: _Node | None = node
            while walk is not None and not walk.kept:
                walk.kept = True
                walk = walk.parent

    def _wanted(self, node: _Node) -> bool:
        """Kept for its own sake: new, on both sides, or changed on the one side that still has it."""
        if node.nid is None or (node.r is not None and node.l is not None):
            return True
        side = Side.REMOTE if node.r is not None else Side.LOCAL if node.l is not None else None
        if side is None:
            return False
        s = self.t.synced[node.nid]
        entry = self.tree(side)[node.key(side)]  # type: ignore[index]
        return self._place(node, side) != self._synced_place(node) or entry.fingerprint != s.fingerprint

    def _resolve_names(self) -> None:
        """Top-down: in each folder, nodes ending with the same name are merged or one takes another name."""
        children: dict[_Node, list[_Node]] = defaultdict(list)
        for node in self.nodes:
            if node.kept and node.parent is not None:
                children[node.parent].append(node)
        todo = [self.synced_nodes[SYNCED_ROOT]]
        while todo:
            folder = todo.pop()
            groups: dict[str, list[_Node]] = defaultdict(list)
            for child in sorted(children[folder], key=_Node.order):
                groups[name_key(child.name)].append(child)
            for group in list(groups.values()):
                if len(group) > 1:
                    self._resolve_group(folder, group, groups, children)
            todo.extend(child for child in children[folder] if child.folder and child.kept)

    def _resolve_group(self, folder: _Node, group: list[_Node], groups: dict[str, list[_Node]],
                       children: dict[_Node, list[_Node]]) -> None:
        remote_new = [n for n in group if n.nid is None and n.l is None]
        local_new = [n for n in group if n.nid is None and n.r is None]
        for r in remote_new:
            twin = next((n for n in local_new if n.folder == r.folder and (n.folder or n.fingerprint == r.fingerprint)),
                        None)
            if twin is not None:  # made on both sides: one node, nothing to transfer
                local_new.remove(twin)
                group.remove(twin)
                twin.kept = False
                r.l = twin.l
                self.by[Side.LOCAL][r.l] = r  # type: ignore[index]
                for child in children.pop(twin, []):
                    child.parent = r
                    children[r].append(child)
        if len(group) < 2:
            return
        group.sort(key=lambda n: (not self._holds_name(n, Side.REMOTE, folder), not self._holds_name(n, Side.LOCAL, folder),
                                  n.order()))
        present = {side: {name_key(self.tree(side)[k].name): k for k in self.t.children(side.value, folder.key(side))}
                   for side in SIDES if folder.key(side) is not None}
        for loser in group[1:]:
            candidates = free_names(loser.name, folder=True) if loser.folder else \
                conflicted_copy_names(loser.name, self.today)
            for name in candidates:
                k = name_key(name)
                if k not in groups and all(names.get(k) in (None, loser.key(side)) for side, names in present.items()):
                    break
            loser.name = name
            groups[name_key(name)] = [loser]
        del group[1:]

    def _holds_name(self, node: _Node, side: Side, folder: _Node) -> bool:
        return self._holds(node, side, folder, node.name)

    def _holds(self, node: _Node, side: Side, folder: _Node, name: str) -> bool:
        key, parent = node.key(side), folder.key(side)
        return key is not None and parent is not None and self.names[side].get((parent, name_key(name))) == key

    # -- operations ------------------------------------------------------------------------------

    def _make_ops(self) -> None:
        for node in self.nodes:
            if node.nid == SYNCED_ROOT:
                continue
            if node.kept:
                acted = [self._side_op(node, side) for side in SIDES]
                if not any(acted):
                    self._record(node)
            elif node.nid is not None:
                self._removal(node)

    def _side_op(self, node: _Node, side: Side) -> bool:
        """The operation ``node`` needs on ``side`` if it can be made now; True if it needs one at all."""
        parent = node.parent
        assert parent is not None
        key = node.key(side)
        if key is None:
            source = node.key(side.other)
            if source is None or not self._in_place(node, side.other):
                return self._wait()
            if not self._can_land(node, side):
                return self._wait()
            action = Action.MKDIR if node.folder else Action.UPLOAD if side is Side.REMOTE else Action.DOWNLOAD
            return self._emit(node, action, side, why="new on the other side")
        if not self._in_place(node, side):
            if not self._can_land(node, side) or self._under(self.tree(side), parent.key(side), key):
                return self._wait()
            return self._emit(node, Action.MOVE, side, why="moved or renamed on the other side")
        if not node.folder and self.tree(side)[key].fingerprint != node.fingerprint:
            other = node.key(side.other)
            if other is None or not self._in_place(node, side.other):
                return self._wait()
            action = Action.UPLOAD if side is Side.REMOTE else Action.DOWNLOAD
            return self._emit(node, action, side, replaces=key, why="edited on the other side")
        return False

    def _in_place(self, node: _Node, side: Side) -> bool:
        key, parent = node.key(side), node.parent
        if key is None or parent is None:
            return False
        entry = self.tree(side)[key]
        return entry.parent == parent.key(side) and entry.name == node.name

    def _can_land(self, node: _Node, side: Side) -> bool:
        """The destination exists on ``side`` and in the synced tree, and the name is free in both.

        What holds the name is remembered: if nothing can be made at all, it is moved aside.
        """
        parent = node.parent
        assert parent is not None
        if parent.key(side) is None or parent.nid is None:
            return False
        holder = self.names[side].get((parent.key(side), name_key(node.name)))  # type: ignore[arg-type]
        if holder is not None and holder != node.key(side):
            self.blockers.append((side, self.by[side].get(holder)))
            return False
        synced_holder = self.synced_names.get((parent.nid, name_key(node.name)))
        if synced_holder is not None and synced_holder != node.nid:
            self.blockers.append((None, self.synced_nodes.get(synced_holder)))
            return False
        return node.nid is None or not self._under(self.t.synced, parent.nid, node.nid)

    @staticmethod
    def _under(tree, key, ancestor) -> bool:
        """``key`` is ``ancestor`` or below it in ``tree``."""
        while key is not None:
            if key == ancestor:
                return True
            key = tree[key].parent
        return False

    def _wait(self) -> bool:
        self.result.blocked += 1
        return True

    def _emit(self, node: _Node, action: Action, side: Side | None, *, replaces: str | None = None,
              forget: tuple[int, ...] = (), why: str = "") -> bool:
        keys = [(s, node.key(s)) for s in SIDES if node.key(s) is not None]
        if any(k in self.busy for k in keys):
            return self._wait()
        self.busy.update(keys)  # type: ignore[arg-type]
        parent = node.parent
        self.result.ops.append(Op(
            action, side, node.nid, node.folder, self._target_path(node), remote=node.r, local=node.l,
            parent=parent.key(side) if parent is not None and side is not None else None,
            parent_nid=parent.nid if parent is not None else None, name=node.name,
            fingerprint=node.fingerprint, size=node.size, replaces=replaces, forget=forget, reason=why,
        ))
        return True

    def _record(self, node: _Node) -> None:
        """Both sides agree: make the synced tree say so, if it does not yet."""
        parent = node.parent
        assert parent is not None
        if node.nid is not None:
            s = self.t.synced[node.nid]
            if (s.parent, s.name, s.fingerprint, s.remote, s.local) == (parent.nid, node.name, node.fingerprint,
                                                                           node.r, node.l):
                return
        if not self._can_land(node, Side.REMOTE) or not self._can_land(node, Side.LOCAL):
            self._wait()
            return
        self._emit(node, Action.RECORD, None, why="the same on both sides")

    def _removal(self, node: _Node) -> None:
        """A synced node that is not kept: delete it where it still is, then forget it."""
        assert node.nid is not None
        if node.r is not None:
            parent = self.by[Side.REMOTE].get(self.t.remote[node.r].parent)  # type: ignore[arg-type]
            if parent is not None and not parent.kept and parent.r is not None:
                return  # deleted with its folder
        below = list(self.t.descendants("synced", node.nid))
        if node.r is not None:
            if any(self.by[Side.REMOTE][k].kept for k in self.t.descendants("remote", node.r)) or \
                    any(self.synced_nodes[n].kept for n in below):
                self._wait()
                return
            self._emit(node, Action.DELETE, Side.REMOTE, forget=(node.nid, *below), why="deleted on the other side")
        elif node.l is not None:
            if self.t.children("local", node.l) or below:
                self._wait()
                return
            self._emit(node, Action.DELETE, Side.LOCAL, forget=(node.nid,), why="deleted on the other side")
        elif not below:
            self._emit(node, Action.FORGET, None, forget=(node.nid,), why="deleted on both sides")
        else:
            self._wait()

    # -- safety valve and deadlocks ----------------------------------------------------------------

    def _check_mass_delete(self) -> None:
        if self.allow_mass_delete:
            return
        for side in SIDES:
            files = [n for n in self.by[side].values() if not n.folder]
            deleted = sum(1 for n in files if not n.kept and n.nid is not None)
            if deleted > MASS_DELETE_MIN and deleted * 2 > len(files):
                self.result.mass_delete = MassDelete(side, deleted, len(files))
                self.result.ops.clear()
                return

    def _break_deadlock(self) -> None:
        """Nothing could be made, yet something waits: names held in a cycle (a swap). Move one holder aside."""
        for side, holder in self.blockers:
            if holder is None or holder.nid is None or holder.nid == SYNCED_ROOT:
                continue
            s = self.t.synced[holder.nid]
            if side is None:  # held in the synced tree only: give it a free name there
                parent = self.synced_nodes[s.parent]  # type: ignore[index]
                taken = {name_key(self.t.synced[n].name) for n in self.t.children("synced", s.parent)}
            else:
                key = holder.key(side)
                if key is None or (holder.kept and self._in_place(holder, side)):
                    continue
                entry = self.tree(side)[key]
                parent = self.by[side][entry.parent]  # type: ignore[index]
                if parent.nid is None:
                    continue
                taken = {name_key(self.tree(side)[k].name) for k in self.t.children(side.value, entry.parent)}
                taken |= {name_key(self.t.synced[n].name) for n in self.t.children("synced", parent.nid)}
            name = next(n for n in free_names(s.name, folder=holder.folder) if name_key(n) not in taken)
            self.busy.clear()
            holder.parent, holder.name = parent, name
            if side is None:
                holder.r, holder.l, holder.fingerprint, holder.size = s.remote, s.local, s.fingerprint, s.size
                self._emit(holder, Action.RECORD, None, why="renamed aside to free a name another node needs")
            else:
                self._emit(holder, Action.MOVE, side, why="moved aside to free a name another node needs")
            return

    # -- paths, for people ---------------------------------------------------------------------

    def _target_path(self, node: _Node) -> str:
        names, walk = [], node
        while walk is not None and walk.nid != SYNCED_ROOT:
            names.append(walk.name)
            walk = walk.parent  # type: ignore[assignment]
        return "/".join(reversed(names))

    def _side_path(self, side: Side, key: str) -> str:
        tree, names = self.tree(side), []
        while key in tree and tree[key].parent is not None:
            names.append(tree[key].name)
            key = tree[key].parent  # type: ignore[assignment]
        return "/".join(reversed(names))


@dataclass(frozen=True)
class Record:
    """What the synced tree learns when an operation is done: the executor writes exactly this.

    ``put``: fields of synced node ``nid`` (None: a new node); ``release``: a key no
    synced node may name any more; ``forget``: synced nodes gone from both sides.
    """

    nid: int | None = None
    put: dict | None = None
    release: tuple[Side, str] | None = None
    forget: tuple[int, ...] = ()


TRANSFERS = (Action.MKDIR, Action.UPLOAD, Action.DOWNLOAD)


def record_for(op: Op, new_key: str | None = None) -> Record:
    """The synced tree's change once ``op`` is done; ``new_key``: the key a transfer or mkdir made on its side."""
    if op.action in (Action.DELETE, Action.FORGET):
        return Record(forget=op.forget)
    if op.action is Action.MOVE:
        assert op.side is not None
        key = op.key(op.side)
        assert key is not None
        if op.nid is None:
            return Record(release=(op.side, key))
        return Record(op.nid, {"parent": op.parent_nid, "name": op.name, op.side.value: key})
    fields = {"parent": op.parent_nid, "name": op.name, "folder": op.folder, "fingerprint": op.fingerprint,
              "size": op.size}
    if op.action is Action.RECORD:
        return Record(op.nid, {**fields, "remote": op.remote, "local": op.local})
    assert op.action in TRANSFERS and op.side is not None and new_key is not None
    return Record(op.nid, {**fields, op.side.value: new_key, op.side.other.value: op.key(op.side.other)})


def op_counts(ops: Iterable[Op]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for op in ops:
        counts[op.action.value] += 1
    return dict(counts)
