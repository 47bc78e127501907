"""Watch mode's local half (client/sync/watch.py) and the partial scan it drives (client/sync/scan.py).

The events only say which folders to list again; what must hold is that a
partial scan of those folders gives the same tree as a full scan would, with
Hypothesis driving random changes to a real folder (creates, edits, renames
and moves of files and folders with what they hold, deletions), then the same
with the folders named by the real backend's events (inotify here). The
watcher's own failures must turn into full scans, said in words.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.sync.scan import IGNORE_FILE, PARTIAL_PREFIX, rescan, scan
from client.sync.trees import Entry
from client.sync.watch import Changed, LocalWatcher, folders_to_list

from tests.lanes import examples

CHUNK = 4
ADDED, MODIFIED, DELETED = 1, 2, 3  # watchfiles.Change


def test_an_event_names_the_folder_that_holds_the_path(tmp_path: Path) -> None:
    root = tmp_path / "synced"
    changed = folders_to_list(root, [
        (ADDED, str(root / "a.txt")),
        (MODIFIED, str(root / "photos" / "2026" / "cat.jpg")),
        (DELETED, str(root / "old")),
        (ADDED, str(root / "photos" / f"{PARTIAL_PREFIX}9f")),  # our own download, written aside
        (ADDED, str(tmp_path / "elsewhere.txt")),  # not in the synced folder
        (MODIFIED, str(root)),  # the folder itself (its mtime): its listing
    ])
    assert changed == Changed(folders={"", "photos/2026"}) and not changed.full
    assert changed.to_scan() == {"", "photos/2026"}


def test_the_ignore_file_or_the_folder_itself_gone_needs_a_full_scan(tmp_path: Path) -> None:
    ignore = folders_to_list(tmp_path, [(MODIFIED, str(tmp_path / IGNORE_FILE)), (ADDED, str(tmp_path / "a" / "b"))])
    assert ignore.full and ignore.to_scan() is None and ignore.reasons == ["the .dbxignore file changed"]
    assert folders_to_list(tmp_path, [(DELETED, str(tmp_path))]).full
    nested = folders_to_list(tmp_path, [(MODIFIED, str(tmp_path / "sub" / IGNORE_FILE))])
    assert nested == Changed(folders={"sub"})  # only the top's .dbxignore is read
    assert not folders_to_list(tmp_path, [])


def test_changes_merge_and_a_full_scan_wins() -> None:
    changed = Changed(folders={"a"})
    changed.merge(Changed(folders={"b"}))
    assert changed.to_scan() == {"a", "b"}
    changed.merge(Changed(full=True, reasons=["why"]))
    changed.merge(Changed(full=True, reasons=["why"]))
    assert changed.to_scan() is None and changed.reasons == ["why"]


# -- the partial scan equals a full one -------------------------------------------------------------

NAMES = ("a", "b", "c", "Docs", "e.txt")
operations = st.lists(st.tuples(st.sampled_from(("file", "edit", "mkdir", "move", "delete")),
                                st.integers(0, 50), st.integers(0, 50), st.sampled_from(NAMES)),
                      min_size=1, max_size=12)


def nodes(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def folders_of(root: Path) -> list[Path]:
    return [root, *(path for path in nodes(root) if path.is_dir())]


def apply_one(root: Path, op: tuple[str, int, int, str], touched: set[str]) -> None:
    """Carry one random change out on ``root``; note the folders it changed (as its events would name them)."""
    kind, i, j, name = op
    every, folders = nodes(root), folders_of(root)

    def touch(path: Path) -> None:
        folder = path.parent.relative_to(root).as_posix()
        touched.add("" if folder == "." else folder)

    if kind in ("file", "mkdir"):
        target = folders[i % len(folders)] / f"{name}{j % 3}"
        if target.exists():
            return
        touch(target)
        target.write_bytes(os.urandom(j)) if kind == "file" else target.mkdir()
    elif kind == "edit" and every:
        files = [path for path in every if path.is_file()]
        if files:
            target = files[i % len(files)]
            touch(target)
            target.write_bytes(os.urandom(j + 1))
    elif kind == "move" and every:
        source = every[i % len(every)]
        into = folders[j % len(folders)]
        target = into / name
        if target.exists() or into == source or source in into.parents:
            return
        touch(source)
        touch(target)
        source.rename(target)
    elif kind == "delete" and every:
        target = every[i % len(every)]
        # A folder's removal removes what it holds first, and each of those removals' events names the
        # folder it was in. Without them, a folder made again at once with the same name may get the
        # removed one's inode back, and look unchanged to a partial scan (found by a run of this test).
        for inside in target.rglob("*") if target.is_dir() else ():
            touch(inside)
        touch(target)
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def known_rows(result) -> dict[str, tuple[Entry, int, bool]]:
    return {key: (entry, mtime, key in result.racy) for key, entry, mtime in result.entries}


def tree_of(result) -> set[tuple[str, Entry]]:
    return {(key, entry) for key, entry, _ in result.entries}


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=operations, after=operations)
def test_listing_the_changed_folders_again_gives_the_tree_a_full_scan_gives(before, after) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for op in before:
            apply_one(root, op, set())
        first = scan(root, CHUNK, {})
        touched: set[str] = set()
        for op in after:
            apply_one(root, op, touched)
        partial = rescan(root, CHUNK, known_rows(first), touched)
        full = scan(root, CHUNK, first.fingerprints())
        assert tree_of(partial) == tree_of(full)
        assert partial.racy == full.racy
        # Parents before what they hold, as the index needs them.
        order = {key: index for index, (key, _, _) in enumerate(partial.entries)}
        assert all(order[entry.parent] < order[key] for key, entry, _ in partial.entries if entry.parent in order)


def test_a_partial_scan_reads_only_what_it_lists(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for number in range(3):
            (tmp_path / folder / f"{number}.txt").write_bytes(b"old")
            os.utime(tmp_path / folder / f"{number}.txt", (1, 1))  # long ago: trusted next time
    first = scan(tmp_path, CHUNK, {})
    (tmp_path / "b" / "0.txt").write_bytes(b"new!")
    os.utime(tmp_path / "b" / "0.txt", (2, 2))
    nothing = rescan(tmp_path, CHUNK, known_rows(first), set())
    assert (nothing.bytes_read, tree_of(nothing)) == (0, tree_of(first))  # no event: the tree as known
    partial = rescan(tmp_path, CHUNK, known_rows(first), {"b"})
    assert (partial.files_hashed, partial.bytes_read) == (1, 4)
    assert tree_of(partial) == tree_of(scan(tmp_path, CHUNK, first.fingerprints()))


def test_a_hard_link_in_a_listed_folder_to_a_file_elsewhere_is_skipped_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f.txt").write_bytes(b"one file")
    first = scan(tmp_path, CHUNK, {})
    os.link(tmp_path / "a" / "f.txt", tmp_path / "b" / "g.txt")
    partial = rescan(tmp_path, CHUNK, known_rows(first), {"b"})
    assert tree_of(partial) == tree_of(first)
    assert any("g.txt: another name (hard link)" in note for note in partial.notes)


def test_a_folder_moved_away_before_it_is_listed_means_a_full_scan(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    first = scan(tmp_path, CHUNK, {})
    (tmp_path / "a" / "b" / "new.txt").write_bytes(b"x")
    (tmp_path / "a").rename(tmp_path / "z")  # its event not seen yet: only a/b's is
    partial = rescan(tmp_path, CHUNK, known_rows(first), {"a/b"})
    assert tree_of(partial) == tree_of(scan(tmp_path, CHUNK, first.fingerprints()))


# -- the watcher ------------------------------------------------------------------------------------


class Source:
    """An event source that hands over the batches it is given, then fails with ``error`` if set."""

    def __init__(self, batches: list, error: Exception | None = None):
        self.batches = batches
        self.error = error
        self.closed = False

    def watch(self, debounce_ms, step_ms, timeout_ms, stop_event):
        if self.batches:
            return self.batches.pop(0)
        if self.error is not None:
            raise self.error
        stop_event.wait()
        return "stop"

    def close(self) -> None:
        self.closed = True


async def test_the_watcher_hands_over_the_folders_its_events_name(tmp_path: Path) -> None:
    source = Source([{(ADDED, str(tmp_path / "x" / "new.txt"))}, "timeout", {(DELETED, str(tmp_path / "old.txt"))}])
    watcher = LocalWatcher(tmp_path, lambda root: source)
    watcher.start()
    assert watcher.take().full  # the first pass reads everything
    try:
        await asyncio.wait_for(watcher.news.wait(), 10)
        taken = Changed()
        while taken.folders != {"x", ""}:  # the two batches may come in one take or two
            await asyncio.wait_for(watcher.news.wait(), 10)
            taken.merge(watcher.take())
        assert not taken.full and watcher.watching
    finally:
        await watcher.stop()
    assert source.closed


async def test_a_watcher_that_fails_asks_for_full_scans_and_says_why(tmp_path: Path) -> None:
    source = Source([{(ADDED, str(tmp_path / "a.txt"))}], error=RuntimeError("error in underlying watcher: overflow"))
    watcher = LocalWatcher(tmp_path, lambda root: source)
    watcher.start()
    watcher.take()
    assert watcher._task is not None
    await watcher._task  # the source failed after its batch
    taken = watcher.take()
    assert taken.full and "the folder's events stopped (error in underlying watcher: overflow)" in taken.reasons[0]
    assert source.closed and not watcher.watching
    assert watcher.take().full  # while it is down, every pass reads everything


async def test_a_watcher_that_cannot_start_asks_for_full_scans(tmp_path: Path) -> None:
    def refuse(root: Path):
        raise OSError(28, "inotify watch limit reached")

    watcher = LocalWatcher(tmp_path, refuse)
    watcher.start()
    assert watcher.news.is_set() and not watcher.watching
    taken = watcher.take()
    assert taken.full and "cannot follow the folder's events" in taken.reasons[0]
    await watcher.stop()


async def test_real_events_name_the_folders_a_partial_scan_must_list(tmp_path: Path) -> None:
    """The real backend (inotify): after a burst of changes, what its events name gives the full scan's tree."""
    root = tmp_path / "synced"
    (root / "docs" / "old").mkdir(parents=True)
    (root / "docs" / "old" / "keep.txt").write_bytes(b"kept")
    (root / "photos").mkdir()
    (root / "photos" / "cat.jpg").write_bytes(b"meow")
    (root / "zz").mkdir()  # the marker's folder: its event comes after the others'
    first = scan(root, CHUNK, {})
    watcher = LocalWatcher(root, step_ms=20)
    watcher.start()
    assert watcher.watching
    watcher.take()
    try:
        (root / "docs" / "old").rename(root / "photos" / "older")  # a folder with content, moved
        (root / "photos" / "older" / "new.txt").write_bytes(b"new in a moved folder")
        (root / "photos" / "cat.jpg").write_bytes(b"purr")
        (root / "fresh" / "deep").mkdir(parents=True)  # new folders with content: walked whole
        (root / "fresh" / "deep" / "f.txt").write_bytes(b"f")
        (root / "docs" / "gone.txt").write_bytes(b"x")
        (root / "docs" / "gone.txt").unlink()
        (root / "zz" / "marker").write_bytes(b"")
        changed = Changed()
        while "zz" not in changed.folders:
            await asyncio.wait_for(watcher.news.wait(), 30)
            changed.merge(watcher.take())
    finally:
        await watcher.stop()
    assert not changed.full
    partial = rescan(root, CHUNK, known_rows(first), changed.folders)
    full = scan(root, CHUNK, first.fingerprints())
    assert tree_of(partial) == tree_of(full)
    assert {entry.name for _, entry in tree_of(partial)} >= {"older", "new.txt", "keep.txt", "deep", "f.txt", "marker"}


# -- the command's wait: whichever side has news first ----------------------------------------------


class Journal:
    """A remote whose waits answer "no news" ``quiet`` times, then news (or hang until cancelled)."""

    def __init__(self, quiet: int, news: bool = True):
        self.quiet, self.news = quiet, news
        self.calls = 0
        self.cancelled = asyncio.Event()

    async def wait(self, cursor: str, timeout: float) -> bool:  # noqa: ASYNC109
        self.calls += 1
        if self.calls <= self.quiet:
            return False
        if self.news:
            return True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return False


class EngineOf:
    def __init__(self, remote):
        self.remote = remote


async def test_the_journal_s_news_ends_the_wait_after_waits_without_news(tmp_path: Path) -> None:
    from client.sync.command import wait_for_news

    journal = Journal(quiet=2)
    watcher = LocalWatcher(tmp_path, lambda root: Source([]))
    assert await wait_for_news(EngineOf(journal), "cursor", watcher, 60)  # type: ignore[arg-type]
    assert journal.calls == 3


async def test_local_news_ends_the_wait_and_the_journal_s_wait_is_dropped(tmp_path: Path) -> None:
    from client.sync.command import wait_for_news

    journal = Journal(quiet=0, news=False)
    watcher = LocalWatcher(tmp_path, lambda root: Source([{(ADDED, str(tmp_path / "new.txt"))}]))
    watcher.start()
    watcher.take()
    try:
        assert await wait_for_news(EngineOf(journal), "cursor", watcher, 60)  # type: ignore[arg-type]
    finally:
        await watcher.stop()
    assert journal.cancelled.is_set() and watcher.take().folders == {""}
