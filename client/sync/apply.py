"""The engine: observe both sides, plan, carry the batch out, record each operation done; again until agreed.

A pass is rounds of: read the journal to its end (into the index), scan the
local folder (into the index), plan from the three trees (plan.py), then carry
out the batch. **One thread decides**: all of this runs on one event loop; transfers are
awaited there (``parallel`` of them at a time: a batch is safe in any order),
and each result is recorded there as it comes; so with a seeded server and
file system a run replays exactly (the simulation in the tests relies on it).

**Each operation done is recorded in the transaction that updates the synced
tree for it** (``Index.write`` of ``plan.record_for``, with a line in the
``done`` log). Nothing else is stored: no queue of work. A client killed
between an operation and its record finds, when it starts again, both sides
already agreeing on that node, and the planner records it without doing it
again (a folder made, a file uploaded or downloaded, a rename: the same on
both sides is a record, not a transfer).

What an operation checks before it touches anything, so that nothing a
person did since the scan is lost:

- a local file is deleted, replaced by a download, or uploaded only if it is
  still what the scan saw (inode, size, mtime); an upload whose bytes are not
  the scanned fingerprint any more is not committed (:class:`SourceChanged`):
  the next pass sees the edit and uploads that. A file is read once to
  fingerprint it: an upload sends the chunk fingerprints the scan read
  (``Engine.chunks``), the store checks each chunk's bytes against them, and
  the file is stat'ed again after its chunks are sent, before it is
  committed (remote.py, ``HttpRemote``);
- downloads are written aside (``scan.PARTIAL_PREFIX``, beside the target, so
  the rename is atomic) and renamed into place only then; a new file is
  placed only if the name is still free (a hard link fails if it is taken);
- a local rename or move never replaces something at the destination;
- uploads replace a remote file only in ``update`` mode with ``replaces``:
  an edit made meanwhile elsewhere makes the server keep ours as a conflicted
  copy, which the next plan brings here too.

An operation that fails is reported and planned again from the next
observations; a round in which every operation failed ends the pass
(:class:`PassFailed`). A plan stopped by the mass-deletion valve ends the
pass having deleted nothing (:class:`MassDeletion`), as does a synced folder
that is gone on either side (``scan.LocalRootMissing``, :class:`RemoteRootGone`):
neither is ever read as "delete everything".
"""
from __future__ import annotations

import asyncio
import datetime
import errno
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path


from client.sync.index import Index
from client.sync.plan import Action, Op, Plan, Side, op_counts, plan, record_for
from client.sync.remote import CursorReset, LocalSource, Remote, RemoteFailure, SourceChanged
from client.sync.scan import PARTIAL_PREFIX, ScanResult, local_key, local_name_problem, rescan, scan, trusted
from client.sync.trees import LOCAL_ROOT, Entry, Trees, pruned
from protocol.paths import name_key

# The standard library's logging, as in the rest of dbx: the client's output for people and scripts is the
# pass summary (and --json's events); these records are for debugging.
log = logging.getLogger("dbx.sync")
MAX_ROUNDS = 200  # a plan converges in about as many rounds as the tree is deep; this is far beyond it


class SyncStopped(Exception):
    """The pass stopped without agreement; the message says why and what to do."""


class MassDeletion(SyncStopped):
    pass


class RemoteRootGone(SyncStopped):
    pass


class PassFailed(SyncStopped):
    pass


class LocalFailure(Exception):
    """A local operation that was not done because the file system is not as the scan saw it."""


@dataclass
class PassSummary:
    rounds: int = 0
    done: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_read: int = 0  # local content read to fingerprint files (0 on a pass with nothing to do)
    files_hashed: int = 0  # local files read to fingerprint them
    seconds: float = 0.0  # the pass, from its first journal read to agreement

    def line(self) -> str:
        done = ", ".join(f"{count} {action}" for action, count in sorted(self.done.items())) or "nothing to do"
        failed = f"; {len(self.failures)} failed (retried next pass)" if self.failures else ""
        return f"synced in {self.rounds} round{'s' if self.rounds != 1 else ''}: {done}{failed}"


class LocalFiles:
    """The local side's operations; paths come from the tree as the scan saw it, kept up to date as they run."""

    def __init__(self, root: Path, tree: dict[str, Entry], seen: dict[str, tuple[int, int, str]],
                 chunks: dict[str, tuple[int, int, tuple[str, ...]]] | None = None):
        self.root = root
        self.tree = dict(tree)
        self.seen = seen  # key -> (size, mtime_ns, fingerprint) at the scan
        self.chunks = chunks or {}  # key -> (size, mtime_ns, chunk fingerprints) of the files read in this process
        self.touched: set[str] = set()  # folders (relative paths) these operations changed: what to list again

    def _touch(self, path: Path) -> Path:
        """``path``, its folder noted as changed (before the change: an operation that fails half-way counts)."""
        folder = path.parent.relative_to(self.root).as_posix()
        self.touched.add("" if folder == "." else folder)
        return path

    def path(self, key: str) -> Path:
        names = []
        while key != LOCAL_ROOT:
            entry = self.tree[key]
            names.append(entry.name)
            key = entry.parent  # type: ignore[assignment]
        return self.root.joinpath(*reversed(names))

    def _still(self, key: str) -> os.stat_result:
        """The node's current stat, if it is still the file or folder the scan saw; else LocalFailure."""
        path = self.path(key)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise LocalFailure(f"{path} is gone since the scan") from None
        if local_key(info) != key:
            raise LocalFailure(f"{path} was replaced since the scan")
        seen = self.seen.get(key)
        if seen is not None and (info.st_size, info.st_mtime_ns) != seen[:2]:
            raise LocalFailure(f"{path} changed since the scan")
        return info

    @staticmethod
    def _free(folder: Path, name: str, mine: str | None = None) -> None:
        """Nothing but ``mine`` holds ``name`` in ``folder`` as the tree compares names (a case-sensitive disk
        would let a second ``Readme`` beside ``README`` be made, which the server cannot hold)."""
        for other in os.listdir(folder):
            if name_key(other) != name_key(name) or other.startswith(PARTIAL_PREFIX):
                continue
            if mine is None or local_key(os.lstat(folder / other)) != mine:
                raise LocalFailure(f"{folder / other} is in the way of {name}; it is kept")

    def mkdir(self, parent: str, name: str) -> str:
        path = self._touch(self.path(parent) / name)
        self._free(path.parent, name)
        os.mkdir(path)
        key = local_key(os.lstat(path))
        self.tree[key] = Entry(parent, name, True)
        return key

    def move(self, key: str, parent: str, name: str) -> None:
        self._still(key)
        source, target = self._touch(self.path(key)), self._touch(self.path(parent) / name)
        self._free(target.parent, name, mine=key)
        os.rename(source, target)
        self.tree[key] = Entry(parent, name, self.tree[key].folder, self.tree[key].fingerprint, self.tree[key].size)

    def delete(self, key: str, folder: bool) -> None:
        self._still(key)
        path = self._touch(self.path(key))
        try:
            os.rmdir(path) if folder else os.unlink(path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise LocalFailure(f"{path} holds files that are not synced (ignored or skipped); it is kept") from None
            raise
        del self.tree[key]

    def source(self, key: str) -> LocalSource:
        """The file to upload as the scan saw it, with its chunk fingerprints if this process read them."""
        info = self._still(key)
        seen = self.seen[key]
        chunks = self.chunks.get(key)
        return LocalSource(str(self.path(key)), seen[2], info.st_size, info.st_mtime_ns, key,
                           chunks[2] if chunks is not None and chunks[:2] == seen[:2] else None)

    @staticmethod
    def discard(aside: Path) -> None:
        """Remove a download left aside (failed, or refused its place)."""
        try:
            os.unlink(aside)
        except FileNotFoundError:
            pass

    def aside(self, parent: str) -> Path:
        return self.path(parent) / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"

    def place(self, aside: Path, parent: str, name: str, replaces: str | None, fingerprint: str, size: int) -> str:
        """Rename a finished download into place: over ``replaces`` only if it is unchanged, else onto a free name."""
        target = self._touch(self.path(parent) / name)
        self._free(target.parent, name, mine=replaces)
        if replaces is not None:
            self._still(replaces)
            os.replace(aside, target)
            del self.tree[replaces]
        else:
            try:
                os.link(aside, target, follow_symlinks=False)  # fails if the name was taken meanwhile
            except FileExistsError:
                raise LocalFailure(f"{target} appeared meanwhile; it is kept, the download waits") from None
            os.unlink(aside)
        key = local_key(os.lstat(target))
        self.tree[key] = Entry(parent, name, False, fingerprint, size)
        return key


class Engine:
    """Sync one local folder with one remote folder, using one index (see the module's docstring)."""

    def __init__(self, index: Index, remote: Remote, root: Path, remote_path: str = "/", *, chunk_size: int,
                 today: Callable[[], datetime.date] = datetime.date.today, allow_mass_delete: bool = False,
                 step: Callable[[str], Awaitable[None]] | None = None,
                 arrange: Callable[[list[Op]], list[Op]] | None = None, parallel: int = 1,
                 on_op: Callable[[Op, str | None], None] | None = None, platform: str = sys.platform):
        self.index = index
        self.remote = remote
        self.root = Path(root)
        self.remote_path = remote_path
        self.chunk_size = chunk_size
        self.today = today
        self.allow_mass_delete = allow_mass_delete
        self._step = step
        self.arrange = arrange or list
        self.parallel = parallel
        self.on_op = on_op  # told of each operation done (error None) or failed (the error, in words)
        self.platform = platform  # whose file name rules the local folder follows (scan.local_name_problem)
        # key -> (size, mtime_ns, chunk fingerprints) of the files scans of this process read: uploads send them
        self.chunks: dict[str, tuple[int, int, tuple[str, ...]]] = {}

    async def step(self, what: str) -> None:
        """A point between two steps (a test may stop the client here, or change either side)."""
        if self._step is not None:
            await self._step(what)

    async def prepare(self) -> None:
        """The pairing of folders this index is for, made on first use and checked after."""
        known = self.index.get("remote_path")
        if known is not None and known != self.remote_path:
            raise SyncStopped(f"this sync state is for the remote folder {known}, not {self.remote_path}")
        if self.index.get("remote_root") is None:
            root_id = await self.remote.folder_at(self.remote_path)
            with self.index.transaction():
                self.index.set_roots(root_id)
                self.index.put("remote_path", self.remote_path)
        if self.index.get("chunk_size") != str(self.chunk_size):
            with self.index.transaction():
                self.index.replace_local([])  # fingerprints of another chunk size: read again
                self.index.put("chunk_size", str(self.chunk_size))

    async def read_journal(self) -> None:
        """The journal to its end, page by page, each page and its cursor in one transaction."""
        listing = self.index.get("listing") is not None or self.index.get("cursor") is None
        cursor = None if listing else self.index.get("cursor")
        first = listing
        while True:
            await self.step("journal page")
            try:
                page = await self.remote.changes(cursor)
            except CursorReset:
                log.info("the journal cursor was reset; listing the remote tree again")
                self.index.put("cursor", None)
                cursor, first = None, True
                continue
            self.index.apply_changes(page.changes, page.cursor, not page.has_more, first_of_listing=first)
            cursor, first = page.cursor, False
            if not page.has_more:
                return

    async def scan(self, folders: set[str] | None = None, fresh: Collection[str] = ()) -> ScanResult:
        """The local folder into the index; the walk and the hashing in a thread (the loop stays free).

        ``folders``: list only these again (paths relative to the top; watch mode's events say which), the rest
        as last scanned; None: the whole folder. ``fresh``: files read earlier in this pass (scan.trusted).
        """
        expected, known = self.index.get("local_root"), self.index.local_rows()
        if folders is None or expected is None:
            result = await asyncio.to_thread(scan, self.root, self.chunk_size, trusted(known, fresh), expected)
        else:
            result = await asyncio.to_thread(rescan, self.root, self.chunk_size, known, folders, expected, fresh)
        for partial in result.partials:
            os.unlink(self.root / partial)  # a download a killed client left aside
        self._keep_chunks(result)
        with self.index.transaction():
            if {key: (entry, mtime_ns, key in result.racy) for key, entry, mtime_ns in result.entries} != known:
                self.index.replace_local(result.entries, result.racy)  # else unchanged: 10,000 rows not rewritten
            if self.index.get("local_root") is None:
                self.index.put("local_root", result.root_key)
        return result

    def _keep_chunks(self, result: ScanResult) -> None:
        """The chunk fingerprints the scan read, kept for uploads; those of files no longer there dropped."""
        kept = len(self.chunks)
        self.chunks.update(result.chunks)
        if kept:
            files = {key for key, entry, _ in result.entries if not entry.folder}
            self.chunks = {key: chunks for key, chunks in self.chunks.items() if key in files}

    def trees(self, scanned: ScanResult) -> tuple[Trees, list[str]]:
        """The three trees the planner reads, and notes on what of the remote tree is not synced.

        The remote tree is seen through the local folder's rules, so that neither side syncs what the
        other leaves out: what ``.dbxignore`` names (as the scan read it) and names this system cannot
        hold (``scan.local_name_problem``: reported, never changed) are left out with what they hold.
        Were they not, a file made on the server under an ignored name would be downloaded, then missed
        by the next scan, and deleted on the server as if the person had deleted it here.
        """
        root = self.index.get("remote_root")
        assert root is not None
        if not self.index.has_remote(root):
            raise RemoteRootGone(f"the remote folder {self.remote_path} is gone (deleted or moved); nothing was "
                                 "changed on either side")
        ignore = scanned.ignore

        def skip(path: str, entry: Entry) -> str | None:
            if ignore is not None and ignore.match_file(path + ("/" if entry.folder else "")):
                return ""
            problem = local_name_problem(entry.name, self.platform)
            return None if problem is None else f"on the server, but {problem}"

        remote, notes = pruned(self.index.remote_tree(root), root, skip)
        return Trees(remote, root, self.index.local_tree(), self.index.synced_tree()), notes

    def plan(self, scanned: ScanResult) -> Plan:
        trees, notes = self.trees(scanned)
        batch = plan(trees, today=self.today(), allow_mass_delete=self.allow_mass_delete)
        batch.notes[:0] = notes
        return batch

    async def sync_once(self, max_rounds: int = MAX_ROUNDS, changed: set[str] | None = None) -> PassSummary:
        """Rounds until both sides agree (the summary says what was done), or :class:`SyncStopped`.

        ``changed``: the local folders that may have changed since the last scan (watch mode; see watch.py),
        None when that is not known: every round scans the whole folder. With it, the first round lists
        only those folders again and each later round only the folders its operations changed.
        """
        summary = PassSummary()
        started = time.monotonic()
        read: set[str] = set()  # the files this pass's scans read
        await self.prepare()
        for round_ in range(max_rounds):
            await self.read_journal()
            await self.step("scan")
            scanned = await self.scan(changed, read)
            read.update(scanned.chunks)
            summary.bytes_read += scanned.bytes_read
            summary.files_hashed += scanned.files_hashed
            batch = self.plan(scanned)
            for note in scanned.notes + batch.notes:
                if note not in summary.notes:
                    summary.notes.append(note)
            if batch.mass_delete is not None:
                raise MassDeletion(str(batch.mass_delete))
            if batch.done:
                summary.rounds = round_
                summary.seconds = time.monotonic() - started
                log.info("%s", summary.line())
                return summary
            if not batch.ops:
                raise PassFailed(f"{batch.blocked} operations wait on one another; this is a bug, please report it")
            files = LocalFiles(self.root, self.index.local_tree(), self.index.local_seen(), self.chunks)
            succeeded = await self.run_batch(self.arrange(batch.ops), files, summary)
            if changed is not None:
                changed = files.touched
            if not succeeded:
                raise PassFailed("nothing could be done in this round: " + "; ".join(summary.failures[-3:]))
        raise PassFailed(f"both sides still differ after {max_rounds} rounds")

    async def run_batch(self, ops: list[Op], files: LocalFiles, summary: PassSummary) -> int:
        """Carry out a batch, ``parallel`` operations at a time; how many succeeded.

        The plan made them safe in any order, so they may overlap; each is recorded
        on this loop in its own transaction as it finishes. The first error that is not
        an operation's own failure (a bug, the client stopped) cancels the others.
        """
        if self.parallel <= 1:
            return sum([await self.execute(op, files, summary) for op in ops])
        limit = asyncio.Semaphore(self.parallel)
        succeeded = 0

        async def one(op: Op) -> None:
            nonlocal succeeded
            async with limit:
                succeeded += await self.execute(op, files, summary)

        try:
            async with asyncio.TaskGroup() as group:
                for op in ops:
                    group.create_task(one(op))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return succeeded

    async def execute(self, op: Op, files: LocalFiles, summary: PassSummary) -> bool:
        """Carry ``op`` out, then record it done with the synced tree's change, in one transaction."""
        await self.step(f"before {op.action} {op.path}")
        try:
            new_key = await self._carry_out(op, files)
        except (RemoteFailure, SourceChanged, LocalFailure, OSError) as exc:
            summary.failures.append(f"{op.action} {op.path}: {exc}")
            log.info("failed: %s %s %s: %s", op.side, op.action.value, op.path, exc)
            if self.on_op is not None:
                self.on_op(op, str(exc))
            return False
        await self.step(f"done {op.action} {op.path}")
        with self.index.transaction():
            self.index.write(record_for(op, new_key))
            self.index.log_done(op.action.value, op.side.value if op.side else None, op.path, op.reason)
        for action, count in op_counts([op]).items():
            summary.done[action] = summary.done.get(action, 0) + count
        log.info("done: %s %s %s (%s)", op.side, op.action.value, op.path, op.reason)
        if self.on_op is not None:
            self.on_op(op, None)
        await self.step(f"recorded {op.action} {op.path}")
        return True

    async def _carry_out(self, op: Op, files: LocalFiles) -> str | None:
        if op.side is Side.REMOTE:
            return await self._remote(op, files)
        if op.side is Side.LOCAL:
            return await self._local(op, files)
        return None  # RECORD, FORGET: the synced tree only

    async def _remote(self, op: Op, files: LocalFiles) -> str | None:
        assert op.parent is not None and op.name is not None
        if op.action is Action.MKDIR:
            return str((await self.remote.mkdir(op.parent, op.name))["folder_id"])
        if op.action is Action.UPLOAD:
            assert op.local is not None
            source = files.source(op.local)
            if source.fingerprint != op.fingerprint:
                raise SourceChanged(f"{source.path} changed since the plan")
            return str((await self.remote.upload(source, op.parent, op.name, op.replaces))["file_id"])
        assert op.remote is not None
        if op.action is Action.MOVE:
            await self.remote.move(op.remote, op.folder, op.parent, op.name)
            return None
        if op.action is Action.DELETE:
            try:
                await self.remote.delete(op.remote, op.folder)
            except RemoteFailure as exc:
                if not exc.gone:
                    raise  # gone already: what was asked is so
            return None
        raise AssertionError(f"{op.action} is not a remote operation")

    async def _local(self, op: Op, files: LocalFiles) -> str | None:
        assert op.parent is not None and op.name is not None
        if op.action is Action.MKDIR:
            return files.mkdir(op.parent, op.name)
        if op.action is Action.DOWNLOAD:
            assert op.remote is not None and op.fingerprint is not None
            aside = files.aside(op.parent)
            try:
                await self.remote.download(op.remote, op.fingerprint, op.size, str(aside))
                return files.place(aside, op.parent, op.name, op.replaces, op.fingerprint, op.size)
            finally:
                files.discard(aside)
        assert op.local is not None
        if op.action is Action.MOVE:
            files.move(op.local, op.parent, op.name)
            return None
        if op.action is Action.DELETE:
            files.delete(op.local, op.folder)
            return None
        raise AssertionError(f"{op.action} is not a local operation")
