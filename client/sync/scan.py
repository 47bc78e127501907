"""The local tree: one walk of the synced folder, reading only what changed.

Each file and folder is known by its inode (``"<st_dev>:<st_ino>"``), which a
rename or a move inside the folder keeps: that is how a renamed file is told
from a deleted one and a new one. A file whose size, mtime and inode are what
the last scan saw keeps the fingerprint it had; only the others are read and
fingerprinted, exactly as an upload would (``protocol.fingerprints``), so a
pass with nothing to do reads no file's content. An mtime within
:data:`RACY_NS` of the scan is not trusted for that (the file may change again
within the same clock tick): such a file is read again next time.

What is not synced, and why it must never look like a deletion:

- what ``.dbxignore`` (gitignore syntax, at the top of the folder) names, and
  the client's own partial downloads (:data:`PARTIAL_PREFIX`); the engine sees
  the remote tree through the same ``.dbxignore`` (apply.py, ``Engine.trees``),
  so a file made on the server under an ignored name is not downloaded (and
  then, missed by the next scan, deleted on the server);
- symbolic links and special files (FIFOs, sockets, devices): skipped, with a note;
- a second hard link to a file already seen: skipped, with a note;
- names the server refuses (``protocol.paths``: ``\\``, control characters,
  over 255 bytes) and names that differ from another in the same folder only
  by case or Unicode form (the tree compares names that way): reported, not
  renamed; of such twins the one synced before is kept;
- the other way, names on the server this system cannot hold
  (:func:`local_name_problem`: ``:`` and the like on Windows): reported, not
  synced, never renamed on either side (apply.py, ``Engine.trees``);
- a file that changes while it is being read, or cannot be read: the last
  fingerprint seen is kept (it is read again next pass), or it is left out if
  it is new;
- a folder that cannot be listed stops the scan (:class:`ScanError`): reading
  it as empty would read as "everything in it was deleted". So does a synced
  folder that is gone (:class:`LocalRootMissing`).

**A partial scan** (:func:`rescan`, for watch mode: watch.py says which
folders may have changed) lists again only those folders and takes the rest of
the tree as last scanned. A folder listed again is read exactly as a full scan
reads it (names, twins, ignores, fingerprints by size, mtime and inode); of its
subfolders, one that is where it was (same inode, same name, same parent, same
mtime) keeps what it held as last scanned (its own events name it if that
changed), and any other (new, or moved in from elsewhere) is walked whole, all
the way down: a
folder moved in from outside the synced folder brings one event, not one per
file, and events inside a renamed folder name paths under its old name. What is no
longer reachable from the top is dropped. A second name (hard link) of a file
found in a folder not listed again is told by the old name still being there.
The mtime is what tells a folder from a new one made where it was: a folder
renamed, removed and made again under its old name often gets its inode back,
and the events of its removal named it under the new name. A folder whose mtime
was within :data:`RACY_NS` of the scan that saw it is walked whole as well,
since the new one's mtime may fall in the same clock tick.
"""
from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from client.sync.trees import LOCAL_ROOT, Entry
from protocol.fingerprints import fingerprint_stream
from protocol.paths import check_name, InvalidName, name_key

IGNORE_FILE = ".dbxignore"
PARTIAL_PREFIX = ".dbxpart-"  # downloads written aside before they are renamed into place
RACY_NS = 2_000_000_000  # an mtime this close to the scan may change again within the same tick
WINDOWS_FORBIDDEN = set('<>:"|?*')
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


class ScanError(Exception):
    """The folder could not be read whole; nothing may be planned from a part of it."""


class _FolderMoved(Exception):
    """A partial scan found a folder to list gone from where it was known: the whole folder is scanned instead."""


class LocalRootMissing(ScanError):
    """The synced folder is gone or is no longer the one synced (an unmounted disk, a replaced folder)."""


def local_key(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}"


def local_name_problem(name: str, platform: str = sys.platform) -> str | None:
    """Why this system cannot hold a name the server can (None: it can). Such names are reported, never changed."""
    if platform == "win32":
        if WINDOWS_FORBIDDEN.intersection(name):
            return "Windows does not allow < > : \" | ? * in names"
        if name.endswith((" ", ".")):
            return "Windows does not allow a name to end with a space or a dot"
        if name.split(".")[0].upper() in WINDOWS_RESERVED:
            return "the name is reserved on Windows"
    return None


@dataclass
class ScanResult:
    root_key: str
    entries: list[tuple[str, Entry, int]] = field(default_factory=list)  # (key, entry, mtime_ns), parents first
    racy: set[str] = field(default_factory=set)  # files whose fingerprint, folders whose listing, must not be trusted next time
    notes: list[str] = field(default_factory=list)
    files_hashed: int = 0
    bytes_read: int = 0
    partials: list[str] = field(default_factory=list)  # downloads left aside by a client that was stopped
    ignore: pathspec.PathSpec | None = None  # .dbxignore as this scan read it (the remote tree is seen through it)
    # key -> (size, mtime_ns, chunk fingerprints) of each file this scan read: an upload of it sends these, the
    # file is not read to fingerprint it twice (the store checks every chunk against them)
    chunks: dict[str, tuple[int, int, tuple[str, ...]]] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, tuple[int, int, str]]:
        """What the next scan may trust: key -> (size, mtime_ns, fingerprint) (as :func:`trusted` gives it)."""
        return {key: (e.size, -1 if key in self.racy else mtime, e.fingerprint)  # type: ignore[misc]
                for key, e, mtime in self.entries if not e.folder}


def load_ignore(root: Path) -> pathspec.PathSpec | None:
    try:
        lines = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        raise ScanError(f"cannot read {root / IGNORE_FILE}: {exc.strerror}") from None
    return pathspec.GitIgnoreSpec.from_lines(lines)


class Scanner:
    """Scans one folder; ``previous`` is key -> (size, mtime_ns, fingerprint) of the last scan's files."""

    def __init__(self, root: Path, chunk_size: int, previous: dict[str, tuple[int, int, str]],
                 expected_root: str | None = None):
        self.root = root
        self.chunk_size = chunk_size
        self.previous = previous
        self.expected_root = expected_root
        self.now_ns = time.time_ns()
        self.known: KnownTree | None = None  # a partial scan's tree as last scanned (None: a full scan)
        self.listed: list[str] = []  # the folders (keys) this scan listed
        self.target: str | None = None  # the folder a partial scan lists again
        self.seen: set[str] = set()  # keys met in this walk: a second name is a hard link

    def scan(self) -> ScanResult:
        result = self._start()
        self._walk(self.root, "", LOCAL_ROOT, result)
        return result

    def rescan(self, known: KnownTree, folders: Iterable[str]) -> ScanResult:
        """The tree with only ``folders`` (paths relative to the root, "" the root) listed again (see the module)."""
        result = self._start()
        self.known = known
        done: set[str] = set()
        try:
            for folder in sorted(set(folders), key=lambda path: (path.count("/"), path)):
                key, relative = known.nearest(folder)
                if key in done:
                    continue  # listed already, with whatever of ``folder`` is still there
                done.add(key)
                self._relist(key, relative, result)
        except _FolderMoved:
            # Moved by something whose events are still to come (or were lost): read everything instead.
            self.known = None
            return self.scan()
        result.entries = known.entries()
        result.racy = {key for key, _, _ in result.entries if known.rows[key][2]}
        return result

    def _relist(self, key: str, relative: str, result: ScanResult) -> None:
        """List the folder ``key`` (at ``relative``) again and put what it holds now in the known tree."""
        assert self.known is not None
        try:
            info = os.lstat(self.root / relative)
        except OSError:
            raise _FolderMoved from None
        if key != LOCAL_ROOT and local_key(info) != key:
            raise _FolderMoved
        self.known.restat(key, info.st_mtime_ns, self._racy(info))
        found = ScanResult(root_key=result.root_key, notes=result.notes, partials=result.partials)
        self.listed, self.target = [], key
        self.seen = {result.root_key}  # a folder listed again may list what an earlier listing found: no hard link
        self._walk(self.root / relative, relative + "/" if relative else "", key, found)
        for folder in self.listed:
            self.known.drop_children(folder)
        for entry_key, entry, mtime_ns in found.entries:
            self.known.put(entry_key, entry, mtime_ns, entry_key in found.racy)
        result.files_hashed += found.files_hashed
        result.bytes_read += found.bytes_read
        result.chunks.update(found.chunks)

    def _start(self) -> ScanResult:
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            raise LocalRootMissing(f"the synced folder {self.root} is gone; nothing was changed on either side "
                                   "(if its disk is not mounted, mount it and sync again)") from None
        except OSError as exc:
            raise ScanError(f"cannot read the synced folder {self.root}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise LocalRootMissing(f"{self.root} is not a folder any more; nothing was changed on either side")
        if self.expected_root is not None and local_key(info) != self.expected_root:
            raise LocalRootMissing(f"{self.root} is not the folder that was synced before (another disk or a "
                                   "folder put in its place); nothing was changed on either side. Sync it with a new "
                                   "state (--state) if that is what you want")
        self.ignore = load_ignore(self.root)
        result = ScanResult(root_key=local_key(info), ignore=self.ignore)
        self.seen = {result.root_key}
        self.partials = result.partials
        return result

    def _walk(self, folder: Path, relative: str, parent_key: str, result: ScanResult) -> None:
        try:
            with os.scandir(folder) as listing:
                found = sorted(listing, key=lambda e: e.name)
        except FileNotFoundError:
            if self.known is not None:
                raise _FolderMoved from None
            raise ScanError(f"{folder} vanished while it was being scanned; nothing was changed on either side") from None
        except OSError as exc:
            raise ScanError(f"cannot list {folder}: {exc.strerror}; nothing was changed on either side") from None
        self.listed.append(parent_key)
        taken: dict[str, str] = {}
        kept = []
        # Of names that compare equal, the one this client knew before keeps its place.
        found.sort(key=lambda e: (not self._known(e), e.name))
        for item in found:
            path = relative + item.name
            why = self._skip_reason(item, path)
            if why == "":
                continue
            if why is not None:
                result.notes.append(f"{path}: {why}; not synced")
                continue
            twin = taken.get(name_key(item.name))
            if twin is not None:
                result.notes.append(f"{path}: the server cannot hold it beside {relative + twin} (the names differ "
                                    "only in case or Unicode form); rename one of them; not synced")
                continue
            taken[name_key(item.name)] = item.name
            kept.append(item)
        for item in sorted(kept, key=lambda e: e.name):
            self._visit(item, relative, parent_key, result)

    def _known(self, item: os.DirEntry) -> bool:
        try:
            return local_key(item.stat(follow_symlinks=False)) in self.previous
        except OSError:
            return False

    def _skip_reason(self, item: os.DirEntry, path: str) -> str | None:
        """'' to skip without a word, a reason to skip with a note, None to sync."""
        if item.name.startswith(PARTIAL_PREFIX):
            if item.is_file(follow_symlinks=False):
                self.partials.append(path)
            return ""
        try:
            is_dir = item.is_dir(follow_symlinks=False)
            if self.ignore is not None and self.ignore.match_file(path + ("/" if is_dir else "")):
                return ""
            if item.is_symlink():
                return "a symbolic link"
            if not is_dir and not item.is_file(follow_symlinks=False):
                return "a special file (FIFO, socket or device)"
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        try:
            check_name(item.name)
        except InvalidName as exc:
            return f"the server cannot hold this name ({exc})"
        return None

    def _visit(self, item: os.DirEntry, relative: str, parent_key: str, result: ScanResult) -> None:
        path = relative + item.name
        try:
            info = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # gone since the listing: as if it had not been there
        except OSError as exc:
            raise ScanError(f"cannot read {path}: {exc.strerror}; nothing was changed on either side") from None
        key = local_key(info)
        if key in self.seen or (self.known is not None and self.known.still_elsewhere(key, parent_key, self.root)):
            result.notes.append(f"{path}: another name (hard link) of a file synced under its first name; not synced")
            return
        self.seen.add(key)
        if stat.S_ISDIR(info.st_mode):
            # Its mtime, read before it is listed: a change made while it is listed makes it differ next time.
            result.entries.append((key, Entry(parent_key, item.name, True), info.st_mtime_ns))
            if self._racy(info):
                result.racy.add(key)
            # Only the listed folder's own subfolders may be kept: in a folder moved or renamed, events named
            # paths under its old name, which no listing here follows.
            known = self.known
            if (parent_key != self.target or known is None
                    or not known.unmoved_folder(key, parent_key, item.name, info.st_mtime_ns)):
                self._walk(Path(item.path), path + "/", key, result)
            return
        fingerprint, size, trusted = self._fingerprint(item.path, path, key, info, result)
        if fingerprint is not None:
            result.entries.append((key, Entry(parent_key, item.name, False, fingerprint, size), info.st_mtime_ns))
            if not trusted:
                result.racy.add(key)

    def _fingerprint(self, full: str, path: str, key: str, info: os.stat_result,
                     result: ScanResult) -> tuple[str | None, int, bool]:
        """(fingerprint, size, whether the next scan may trust it): from the last scan when unchanged, else read."""
        before = self.previous.get(key)
        if before is not None and before[:2] == (info.st_size, info.st_mtime_ns):
            # Trusted next time unless still within the racy window (see :func:`trusted`'s ``fresh``).
            return before[2], info.st_size, not self._racy(info)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
            try:
                with os.fdopen(fd, "rb", closefd=False) as stream:
                    fingerprint, chunks, size = fingerprint_stream(stream, self.chunk_size)
                after = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return self._unread(path, f"cannot be read ({exc.strerror})", before, result)
        result.files_hashed += 1
        result.bytes_read += size
        if (after.st_size, after.st_mtime_ns, local_key(after)) != (size, info.st_mtime_ns, key):
            return self._unread(path, "changed while it was being read", before, result)
        result.chunks[key] = (size, info.st_mtime_ns, tuple(chunks))
        # A file written within the same clock tick as this scan may change again unseen: read it next time too.
        return fingerprint, size, not self._racy(info)

    def _racy(self, info: os.stat_result) -> bool:
        """Whether ``info``'s mtime is too close to this scan to tell a later change by (see RACY_NS)."""
        return self.now_ns - info.st_mtime_ns <= RACY_NS

    def _unread(self, path: str, why: str, before: tuple[int, int, str] | None,
                result: ScanResult) -> tuple[str | None, int, bool]:
        """A file not read whole: as last seen (read again next pass), or left out if it is new."""
        result.notes.append(f"{path}: {why}; it is read again on the next pass")
        if before is None:
            return None, 0, False
        return before[2], before[0], False


class KnownTree:
    """The local tree as last scanned, changed in place by a partial scan: key -> (entry, mtime_ns, racy)."""

    def __init__(self, rows: Mapping[str, tuple[Entry, int, bool]]):
        self.rows = dict(rows)
        self.children: dict[str | None, dict[str, str]] = {}  # parent key -> name -> key
        for key, (entry, _, _) in self.rows.items():
            self.children.setdefault(entry.parent, {})[entry.name] = key

    def nearest(self, relative: str) -> tuple[str, str]:
        """(key, path) of the folder at ``relative``, or of its nearest ancestor that is a known folder."""
        key, names = LOCAL_ROOT, []
        for name in relative.split("/") if relative else []:
            child = self.children.get(key, {}).get(name)
            if child is None or not self.rows[child][0].folder:
                break
            key = child
            names.append(name)
        return key, "/".join(names)

    def unmoved_folder(self, key: str, parent: str, name: str, mtime_ns: int) -> bool:
        """Whether ``key`` is a folder known as ``name`` in ``parent`` with this mtime, not racy when it was
        seen: what it holds is as last scanned (see the module's docstring)."""
        row = self.rows.get(key)
        return (row is not None and row[0].folder and (row[0].parent, row[0].name) == (parent, name)
                and row[1] == mtime_ns and not row[2])

    def restat(self, key: str, mtime_ns: int, racy: bool) -> None:
        """A known folder listed again: its mtime as read before the listing."""
        row = self.rows.get(key)
        if row is not None:
            self.rows[key] = (row[0], mtime_ns, racy)

    def still_elsewhere(self, key: str, parent: str, root: Path) -> bool:
        """Whether ``key`` is known in another folder and still there under its known name (a hard link)."""
        row = self.rows.get(key)
        if row is None or row[0].parent == parent:
            return False
        try:
            return local_key(os.lstat(root / self.path(key))) == key
        except (OSError, KeyError):
            return False

    def path(self, key: str) -> str:
        names = []
        while key != LOCAL_ROOT:
            entry = self.rows[key][0]
            names.append(entry.name)
            key = entry.parent  # type: ignore[assignment]
        return "/".join(reversed(names))

    def drop_children(self, folder: str) -> None:
        for key in self.children.pop(folder, {}).values():
            self.rows.pop(key, None)

    def put(self, key: str, entry: Entry, mtime_ns: int, racy: bool) -> None:
        old = self.rows.get(key)
        if old is not None and self.children.get(old[0].parent, {}).get(old[0].name) == key:
            del self.children[old[0].parent][old[0].name]
        self.rows[key] = (entry, mtime_ns, racy)
        self.children.setdefault(entry.parent, {})[entry.name] = key

    def entries(self) -> list[tuple[str, Entry, int]]:
        """What is reachable from the top, parents before what they hold (the rest is gone)."""
        out: list[tuple[str, Entry, int]] = []
        stack = [LOCAL_ROOT]
        while stack:
            for key in self.children.get(stack.pop(), {}).values():
                entry, mtime_ns, _ = self.rows[key]
                out.append((key, entry, mtime_ns))
                if entry.folder:
                    stack.append(key)
        return out


def scan(root: Path, chunk_size: int, previous: dict[str, tuple[int, int, str]],
         expected_root: str | None = None) -> ScanResult:
    """The local tree of ``root`` (see the module's docstring)."""
    return Scanner(root, chunk_size, previous, expected_root).scan()


def rescan(root: Path, chunk_size: int, known: Mapping[str, tuple[Entry, int, bool]], folders: Iterable[str],
           expected_root: str | None = None, fresh: Collection[str] = ()) -> ScanResult:
    """The local tree of ``root`` with only ``folders`` listed again (see the module's docstring)."""
    return Scanner(root, chunk_size, trusted(known, fresh), expected_root).rescan(KnownTree(known), folders)


def trusted(known: Mapping[str, tuple[Entry, int, bool]], fresh: Collection[str] = ()) -> dict[str, tuple[int, int, str]]:
    """What a scan need not read again, from the tree as last scanned: key -> (size, mtime_ns, fingerprint) of
    each file (an mtime of -1 for the racy ones, so that they are read again).

    ``fresh``: racy files read moments ago, in an earlier round of the same pass; not read again in this pass
    (a read within the same racy window proves no more than the first did) but still racy, so that the next
    pass reads them. Without it, a large file just written would be read by every round of its pass.
    """
    return {key: (entry.size, -1 if racy and key not in fresh else mtime_ns, entry.fingerprint or "")
            for key, (entry, mtime_ns, racy) in known.items() if not entry.folder}
