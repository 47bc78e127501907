"""A model world for the sync planner's properties: three trees in dicts, and a perfect executor.

``World.apply(op)`` carries an operation out the way a server and a file system
that never fail would, checking as it goes every promise the planner makes
about a batch (the destination parent exists, the name is free, a folder is not
moved under itself, a deleted local folder is empty, ...), and then writes the
operation's ``record_for`` into the synced tree exactly as the index would,
with the index schema's rules checked after each write. What the server
keeps (the trash and replaced versions) is collected in ``kept``: content there
is not lost.
"""
from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator
from dataclasses import replace

from client.sync.plan import Action, Op, Record, Side, plan, record_for
from client.sync.trees import LOCAL_ROOT, SYNCED_ROOT, Entry, Synced, Trees
from protocol.paths import name_key

REMOTE_ROOT = "root"
TODAY = datetime.date(2026, 12, 4)


class Broken(AssertionError):
    """The planner broke one of its promises (or the model's tree rules)."""


class World:
    def __init__(self) -> None:
        self.remote: dict[str, Entry] = {REMOTE_ROOT: Entry(None, "", True)}
        self.local: dict[str, Entry] = {LOCAL_ROOT: Entry(None, "", True)}
        self.synced: dict[int, Synced] = {SYNCED_ROOT: Synced(None, "", True, None, 0, REMOTE_ROOT, LOCAL_ROOT)}
        self.kept: set[str] = set()  # content the server still keeps: in the trash, or as a version
        self._ids = itertools.count(1000)  # above the keys tests give by hand

    def new_key(self, side: str) -> str:
        return f"{side[0]}{next(self._ids)}"

    def trees(self) -> Trees:
        return Trees(dict(self.remote), REMOTE_ROOT, dict(self.local), dict(self.synced))

    def tree(self, side: Side | str) -> dict[str, Entry]:
        return self.remote if Side(side) is Side.REMOTE else self.local

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def children(tree: dict, key: object) -> list:
        return [k for k, e in tree.items() if e.parent == key]

    @classmethod
    def subtree(cls, tree: dict, key: object) -> Iterator:
        yield key
        for child in cls.children(tree, key):
            yield from cls.subtree(tree, child)

    @staticmethod
    def path(tree: dict, key: object) -> str:
        names = []
        while tree[key].parent is not None:
            names.append(tree[key].name)
            key = tree[key].parent
        return "/" + "/".join(reversed(names))

    @classmethod
    def listing(cls, tree: dict) -> dict[str, str | None]:
        """path -> fingerprint (None for a folder): what a person sees."""
        return {cls.path(tree, k): e.fingerprint for k, e in tree.items() if e.parent is not None}

    def contents(self) -> set[str]:
        return {e.fingerprint for tree in (self.remote, self.local) for e in tree.values() if e.fingerprint}

    def check_tree(self, tree: dict, what: str) -> None:
        """The index schema's rules: a parent that is a folder, unique names in a folder, no cycle."""
        seen: set = set()
        for key, entry in tree.items():
            if entry.parent is None:
                continue
            parent = tree.get(entry.parent)
            if parent is None or not parent.folder:
                raise Broken(f"{what}: {key} has no folder for a parent")
            slot = (entry.parent, name_key(entry.name))
            if slot in seen:
                raise Broken(f"{what}: two nodes named {entry.name!r} in one folder")
            seen.add(slot)
            walk, steps = entry.parent, 0
            while walk is not None:
                steps += 1
                if walk == key or steps > len(tree):
                    raise Broken(f"{what}: {key} is inside itself")
                walk = tree[walk].parent

    def check_synced(self) -> None:
        self.check_tree(self.synced, "synced")
        for side in ("remote", "local"):
            keys = [getattr(s, side) for s in self.synced.values() if getattr(s, side) is not None]
            if len(keys) != len(set(keys)):
                raise Broken(f"synced: two nodes name the same {side} key")

    # -- the perfect executor ----------------------------------------------------------------------

    def apply(self, op: Op, record: bool = True) -> None:
        """Carry ``op`` out, then record it (``record`` False: the client died in between)."""
        new_key = None
        if op.side is not None:
            new_key = self._carry_out(op, op.side, self.tree(op.side))
        if record:
            self.write(record_for(op, new_key))

    def _free(self, tree: dict, parent: str, name: str, mine: str | None) -> None:
        if parent not in tree or not tree[parent].folder:
            raise Broken(f"no folder {parent} to put {name!r} in")
        for key in self.children(tree, parent):
            if key != mine and name_key(tree[key].name) == name_key(name):
                raise Broken(f"{name!r} is taken in {parent}")

    def _carry_out(self, op: Op, side: Side, tree: dict[str, Entry]) -> str | None:
        key = op.key(side)
        if op.action is Action.MKDIR:
            assert op.parent is not None and op.name is not None
            self._free(tree, op.parent, op.name, None)
            new = self.new_key(side)
            tree[new] = Entry(op.parent, op.name, True)
            return new
        if op.action in (Action.UPLOAD, Action.DOWNLOAD):
            source = self.tree(side.other)[op.key(side.other)]  # type: ignore[index]
            if source.fingerprint != op.fingerprint:
                raise Broken(f"{op.path}: the source's content is not what was planned")
            new = self.new_key(side)
            if op.replaces is not None:
                old = tree.pop(op.replaces)
                if side is Side.REMOTE:
                    self.kept.add(old.fingerprint)  # type: ignore[arg-type]
                tree[new] = replace(old, fingerprint=op.fingerprint, size=op.size)
            else:
                assert op.parent is not None and op.name is not None
                self._free(tree, op.parent, op.name, None)
                tree[new] = Entry(op.parent, op.name, False, op.fingerprint, op.size)
            return new
        if op.action is Action.MOVE:
            assert key is not None and op.parent is not None and op.name is not None
            self._free(tree, op.parent, op.name, key)
            if op.parent in self.subtree(tree, key):
                raise Broken(f"{op.path}: moved into itself")
            tree[key] = replace(tree[key], parent=op.parent, name=op.name)
            return None
        if op.action is Action.DELETE:
            assert key is not None
            gone = list(self.subtree(tree, key))
            if side is Side.LOCAL and len(gone) > 1:
                raise Broken(f"{op.path}: a local folder deleted while it holds something")
            for k in gone:
                entry = tree.pop(k)
                if side is Side.REMOTE and entry.fingerprint:
                    self.kept.add(entry.fingerprint)
            return None
        raise Broken(f"{op.action} on a side")

    def write(self, record: Record) -> None:
        """What Index.put_synced / release / forget do."""
        if record.release is not None:
            side, key = record.release
            self._release(side.value, key, None)
        for nid in record.forget:
            if any(s.parent == nid for n, s in self.synced.items() if n not in record.forget):
                raise Broken(f"synced {nid} forgotten while it holds something")
        for nid in record.forget:
            self.synced.pop(nid, None)
        if record.put is not None:
            fields = dict(record.put)
            for column in ("remote", "local"):
                if fields.get(column) is not None:
                    self._release(column, fields[column], record.nid)
            if record.nid is None:
                nid = max(self.synced) + 1
                self.synced[nid] = Synced(**{"remote": None, "local": None, **fields})
            else:
                self.synced[record.nid] = replace(self.synced[record.nid], **fields)
        self.check_synced()

    def _release(self, side: str, key: str, keep: int | None) -> None:
        for nid, s in list(self.synced.items()):
            if getattr(s, side) == key and nid != keep:
                self.synced[nid] = replace(s, **{side: None})  # type: ignore[arg-type]

    # -- convergence -----------------------------------------------------------------------------

    def run(self, shuffle, rounds: int = 200, recorded=lambda op: True) -> int:
        """Plan, shuffle the batch, carry it out, again, until a plan is empty; the number of rounds.

        ``recorded(op)`` False: that operation is done but its record lost (the client was killed).
        """
        for n in range(rounds):
            batch = plan(self.trees(), today=TODAY, allow_mass_delete=True)
            if not batch.ops:
                if batch.blocked:
                    raise Broken(f"stuck: {batch.blocked} operations wait and none can be made\n{self.describe()}")
                return n
            for op in shuffle(batch.ops):
                self.apply(op, recorded(op))
        raise Broken(f"not done after {rounds} rounds\n{self.describe()}")

    def describe(self) -> str:
        def lines(tree: dict) -> str:
            return "\n".join(f"    {self.path(tree, k)} {k} {e.fingerprint or ''}" for k, e in sorted(tree.items()))
        return "\n".join([f"  remote:\n{lines(self.remote)}", f"  local:\n{lines(self.local)}",
                          f"  synced:\n{lines(self.synced)}"])

    def check_agreed(self) -> None:
        remote, local = self.listing(self.remote), self.listing(self.local)
        if remote != local:
            raise Broken(f"the sides differ:\n  remote {sorted(remote.items())}\n  local  {sorted(local.items())}")
        synced = {self.path(self.synced, n): s.fingerprint for n, s in self.synced.items() if s.parent is not None}
        if synced != remote:
            raise Broken(f"the synced tree differs from both sides:\n  synced {sorted(synced.items())}")
        for nid, s in self.synced.items():
            for side in ("remote", "local"):
                key = getattr(s, side)
                if key not in self.tree(side) or self.path(self.tree(side), key) != self.path(self.synced, nid):
                    raise Broken(f"synced {nid} does not name its {side} node")
