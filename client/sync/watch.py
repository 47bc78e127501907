"""Watch mode's local half: which folders may have changed, from the file system's events.

``dbx sync`` without ``--once`` follows the local folder with the operating
system's events (inotify, FSEvents, ReadDirectoryChangesW) through watchfiles
(its Rust ``notify`` backend, watching the whole tree and the folders made in
it), and the remote tree with ``/changes/wait``; a pass runs as soon as either
has news.

The events decide nothing: they only say *which folders to list again*
(:func:`folders_to_list`), and the scan reads those folders exactly as a full
scan would (scan.py, ``rescan``). So an event that is late, doubled or
reordered costs at most a listing, and the planner stays pure. What an event
cannot say is made up for by scanning the whole folder:

- before the first pass, with the watcher already started (so that nothing
  changed during that scan is missed);
- when the watcher fails or cannot start (too many folders for the system's
  inotify watches, a folder it cannot read: it says so, and scans the whole
  folder on every pass, every 30 seconds (command.RETRY), trying to start
  again each time);
- when ``.dbxignore`` changes (what is synced changed everywhere);
- every ``--interval`` seconds, as a safety net: an event queue that
  overflowed in the kernel is not reported by the backend, so events can be
  lost without a word.

Bursts are debounced by the backend: it hands over a batch once no new event
came for ``step_ms`` (50 ms), or at most ``debounce_ms`` (1.6 s) after the
first, so a folder copied in is one pass, not thousands. The client's own
partial downloads (``scan.PARTIAL_PREFIX``) are not news: their rename into
place is.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from client.sync.scan import IGNORE_FILE, PARTIAL_PREFIX

log = logging.getLogger("dbx.sync")
DEBOUNCE_MS = 1600  # the longest a burst of events is gathered before a pass
STEP_MS = 50  # a batch is handed over once no new event came for this long
TIMEOUT_MS = 5000  # the backend's wait returns this often, so that stopping it takes no longer
DELETED = 3  # watchfiles.Change.deleted


@dataclass
class Changed:
    """What the next scan must read: these folders (paths relative to the top, "" the top), or all of it."""

    folders: set[str] = field(default_factory=set)
    full: bool = False
    reasons: list[str] = field(default_factory=list)  # why the whole folder is scanned, in words for people

    def __bool__(self) -> bool:
        return self.full or bool(self.folders)

    def merge(self, other: Changed) -> None:
        self.folders |= other.folders
        self.full = self.full or other.full
        self.reasons += [reason for reason in other.reasons if reason not in self.reasons]

    def to_scan(self) -> set[str] | None:
        """The engine's ``changed`` argument: None for a full scan."""
        return None if self.full else set(self.folders)


def folders_to_list(root: Path, events: Iterable[tuple[int, str]]) -> Changed:
    """The folders to list again for a batch of ``(change, absolute path)`` events under ``root``.

    A path's folder is listed (a new, changed, renamed or deleted name is seen there; a folder that is new
    there is walked whole). The top itself deleted, or ``.dbxignore`` changed, needs a full scan.
    Paths outside ``root`` and the client's partial downloads are no news.
    """
    changed = Changed()
    for change, path in events:
        relative = os.path.relpath(path, root)
        if relative == ".":
            if change == DELETED:
                changed.full = True  # the scan says the folder is gone, and stops
            else:
                changed.folders.add("")
            continue
        parts = Path(relative).parts
        if not parts or parts[0] == ".." or os.path.isabs(relative):
            continue
        if parts[-1].startswith(PARTIAL_PREFIX):
            continue
        if parts == (IGNORE_FILE,):
            changed.full = True
            if "the .dbxignore file changed" not in changed.reasons:
                changed.reasons.append("the .dbxignore file changed")
            continue
        changed.folders.add("/".join(parts[:-1]))
    return changed


class EventSource(Protocol):
    """What the watcher needs of watchfiles' ``RustNotify``: a blocking wait for a batch of events."""

    def watch(self, debounce_ms: int, step_ms: int, timeout_ms: int, stop_event: Any) -> Any: ...

    def close(self) -> None: ...


def rust_notify(root: Path) -> EventSource:
    """watchfiles' backend on ``root`` and everything below it (raises if it cannot watch it)."""
    from watchfiles._rust_notify import RustNotify  # the documented "Rust backend direct usage"

    return RustNotify([str(root)], False, False, 300, True, False)


class LocalWatcher:
    """Gathers the local folder's events in a task of its own; :meth:`take` hands over what gathered.

    :meth:`start` begins watching before it returns (call it before the first scan), and never raises: a
    watcher that cannot start or fails later asks for full scans (:attr:`Changed.reasons` says why) and
    is started again by the next :meth:`start`.
    """

    def __init__(self, root: Path, source: Callable[[Path], EventSource] = rust_notify, *,
                 debounce_ms: int = DEBOUNCE_MS, step_ms: int = STEP_MS):
        self.root = root
        self.source = source
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.pending = Changed(full=True)  # the first pass scans everything
        self.news = asyncio.Event()
        self._stop = threading.Event()
        self._task: asyncio.Task | None = None

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.watching:
            return
        try:
            notify = self.source(self.root)
        except Exception as exc:  # noqa: BLE001 - whatever the backend raises, the fallback is the same
            self._failed(f"cannot follow the folder's events ({exc})")
            return
        self._stop.clear()
        self._task = asyncio.create_task(self._run(notify), name="dbx sync: local events")

    async def _run(self, notify: EventSource) -> None:
        try:
            while not self._stop.is_set():
                batch = await asyncio.to_thread(notify.watch, self.debounce_ms, self.step_ms, TIMEOUT_MS, self._stop)
                if isinstance(batch, str):  # 'timeout', 'stop' (or 'signal', which a thread never gets)
                    continue
                changed = folders_to_list(self.root, batch)
                log.debug("local events: %d, folders to list: %s", len(batch), sorted(changed.folders))
                if changed:
                    self.pending.merge(changed)
                    self.news.set()
        except Exception as exc:  # noqa: BLE001 - the backend's errors (RuntimeError, OSError) alike
            self._failed(f"the folder's events stopped ({exc})")
        finally:
            notify.close()

    def _failed(self, why: str) -> None:
        log.info("%s; scanning the whole folder instead", why)
        self.pending.merge(Changed(full=True, reasons=[f"{why}; scanning the whole folder instead"]))
        self.news.set()

    def take(self) -> Changed:
        """What changed since the last call (a full scan if the watcher is down)."""
        taken, self.pending = self.pending, Changed(full=not self.watching)
        self.news.clear()
        return taken

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
