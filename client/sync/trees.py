"""The three trees the planner reads: plain values, no I/O.

A tree maps a node's key to its :class:`Entry`. Keys are what identifies a node
on its side for as long as it exists there:

- remote: the id the gateway gives (``folder_id`` / ``file_id``; renames and
  moves keep it, new content at a path is a new id);
- local: ``"<st_dev>:<st_ino>"`` of the file or folder (renames and moves within
  the folder keep it), the synced folder itself is :data:`LOCAL_ROOT`;
- synced: a number of the index's own (``nid``), the root is :data:`SYNCED_ROOT`;
  each synced node names the remote and local keys it had when both sides last
  agreed on it (:class:`Synced`).

Every entry but a tree's root names its parent, which is a folder of the same
tree; the index refuses any other state, so the planner may rely on it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

LOCAL_ROOT = "/"
SYNCED_ROOT = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """A file or folder as one side has it: where it is, and for a file its content's fingerprint."""

    parent: str | None
    name: str
    folder: bool
    fingerprint: str | None = None
    size: int = 0


@dataclass(frozen=True, slots=True)
class Synced:
    """A node as both sides last agreed on it, with the key it had on each side then.

    ``remote`` or ``local`` is None once that side's key is known not to be this
    node's any more (an edit-vs-edit conflict hands the local file to a copy of its own).
    """

    parent: int | None
    name: str
    folder: bool
    fingerprint: str | None
    size: int
    remote: str | None
    local: str | None


@dataclass
class Trees:
    """The planner's input: the remote subtree being synced, the local folder, the synced tree."""

    remote: Mapping[str, Entry]
    remote_root: str
    local: Mapping[str, Entry]
    synced: Mapping[int, Synced]
    local_root: str = LOCAL_ROOT
    _children: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)

    def children(self, side: str, key: object) -> list:
        """The keys of the nodes whose parent is ``key`` in tree ``side`` ('remote', 'local' or 'synced')."""
        index = self._children.get(side)
        if index is None:
            index = {}
            tree: Mapping = getattr(self, side)
            for child, entry in tree.items():
                if entry.parent is not None:
                    index.setdefault(entry.parent, []).append(child)
            self._children[side] = index
        return index.get(key, [])

    def descendants(self, side: str, key: object) -> Iterator:
        """Every key below ``key`` in tree ``side``, parents before what they hold."""
        stack = list(self.children(side, key))
        while stack:
            child = stack.pop()
            yield child
            stack.extend(self.children(side, child))


def pruned(tree: Mapping[str, Entry], root: str,
           skip: Callable[[str, Entry], str | None]) -> tuple[dict[str, Entry], list[str]]:
    """``tree`` without the nodes ``skip`` names and without what they hold, and why (notes for people).

    ``skip(path, entry)`` gets each node's path below ``root`` ("a/b"), parents first: None keeps it,
    a reason leaves it out with a note, "" leaves it out without a word.
    """
    children: dict[str, list[str]] = {}
    for key, entry in tree.items():
        if entry.parent is not None:
            children.setdefault(entry.parent, []).append(key)
    kept: dict[str, Entry] = {root: tree[root]}
    notes: list[str] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        for key in children.get(folder, ()):
            entry = tree[key]
            path = prefix + entry.name
            why = skip(path, entry)
            if why is not None:
                if why:
                    notes.append(f"{path}: {why}; not synced")
                continue
            kept[key] = entry
            if entry.folder:
                stack.append((key, path + "/"))
    return kept, notes
