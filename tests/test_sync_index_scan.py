"""The sync index (client/sync/index.py) and the local scan (client/sync/scan.py).

The index must refuse every state the planner may not see (a node without its
parent, a file for a parent, two equal names in a folder, a folder inside
itself, a synced folder forgotten before what it holds), and follow the
journal's rules for moves (``deleted`` then the object), replaced files and
pages. The scan must read only what changed, and never make something it
cannot read look deleted.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from client.sync.index import LIMBO, Index, InvalidTree
from client.sync.scan import PARTIAL_PREFIX, LocalRootMissing, local_key, local_name_problem, scan, trusted
from client.sync.trees import LOCAL_ROOT, SYNCED_ROOT
from protocol.fingerprints import fingerprint_bytes

CHUNK = 4


def folder(folder_id: str, name: str, parent: str = "root") -> dict:
    return {"type": "folder", "folder_id": folder_id, "name": name, "parent_id": parent}


def file(file_id: str, name: str, parent: str = "root", fingerprint: str = "f" * 64) -> dict:
    return {"type": "file", "file_id": file_id, "name": name, "parent_id": parent, "fingerprint": fingerprint,
            "file_size": 1, "status": "uploaded"}


def deleted(node: str) -> dict:
    return {"type": "deleted", "id": node, "path": "/old"}


@pytest.fixture
def index(tmp_path: Path):
    idx = Index(tmp_path / "sync.sqlite3")
    idx.set_roots("root")
    yield idx
    idx.close()


def paths(index: Index) -> set[str]:
    tree = index.remote_tree("root")

    def path(key: str) -> str:
        return "" if tree[key].parent is None else path(tree[key].parent) + "/" + tree[key].name  # type: ignore[arg-type]

    return {path(k) for k in tree if tree[k].parent is not None}


# -- the index refuses invalid trees ---------------------------------------------------------------


def test_a_node_without_its_parent_is_refused(index: Index) -> None:
    with pytest.raises(InvalidTree):
        index.apply_changes([file("f1", "a", parent="nowhere")], "c1", True)
    assert index.get("cursor") is None, "the page and its cursor are one transaction"
    with pytest.raises(InvalidTree):
        index.put_synced(None, parent=42, name="a", folder=False, fingerprint="x", size=0)


def test_a_file_cannot_be_a_parent(index: Index) -> None:
    with pytest.raises(InvalidTree, match="must be a folder"):
        index.apply_changes([file("f1", "a"), file("f2", "b", parent="f1")], "c1", True)


def test_two_names_that_compare_equal_cannot_share_a_folder(index: Index) -> None:
    nid = index.put_synced(None, parent=SYNCED_ROOT, name="Report.pdf", folder=False, fingerprint="x", size=1)
    assert nid > 0
    with pytest.raises(InvalidTree):
        index.put_synced(None, parent=SYNCED_ROOT, name="report.PDF", folder=False, fingerprint="y", size=1)


def test_a_folder_cannot_move_into_itself(index: Index) -> None:
    index.apply_changes([folder("a", "a"), folder("b", "b", parent="a")], "c1", True)
    with pytest.raises(InvalidTree, match="into itself"):
        index.apply_changes([folder("a", "a", parent="b")], "c2", True)
    assert index.get("cursor") == "c1"


def test_a_synced_folder_is_forgotten_only_after_what_it_holds(index: Index) -> None:
    top = index.put_synced(None, parent=SYNCED_ROOT, name="f", folder=True, fingerprint=None, size=0)
    child = index.put_synced(None, parent=top, name="x", folder=False, fingerprint="x", size=1)
    with pytest.raises(InvalidTree), index.transaction() as db:
        db.execute("DELETE FROM synced WHERE nid = ?", (top,))
    index.forget([top, child])  # both at once: the index orders them
    assert set(index.synced_tree()) == {SYNCED_ROOT}


def test_a_key_taken_by_a_new_node_is_released_by_the_stale_one(index: Index) -> None:
    old = index.put_synced(None, parent=SYNCED_ROOT, name="old", folder=False, fingerprint="x", size=1, local="1:5")
    new = index.put_synced(None, parent=SYNCED_ROOT, name="new", folder=False, fingerprint="y", size=1, local="1:5")
    tree = index.synced_tree()
    assert (tree[old].local, tree[new].local) == (None, "1:5")


# -- the journal -------------------------------------------------------------------------------------


def test_a_move_is_deleted_then_the_object_and_keeps_what_the_folder_holds(index: Index) -> None:
    index.apply_changes([folder("a", "a"), file("f1", "x", parent="a"), folder("b", "b")], "c1", True)
    index.apply_changes([deleted("a"), folder("a", "renamed", parent="b")], "c2", True)
    assert paths(index) == {"/b", "/b/renamed", "/b/renamed/x"}


def test_a_move_split_across_pages_keeps_its_content(index: Index) -> None:
    index.apply_changes([folder("a", "a"), file("f1", "x", parent="a")], "c1", True)
    index.apply_changes([deleted("a")], "c2", complete=False)
    index.apply_changes([folder("a", "a2")], "c3", True)
    assert paths(index) == {"/a2", "/a2/x"}


def test_a_deleted_folder_goes_with_what_it_held_once_the_journal_is_read(index: Index) -> None:
    index.apply_changes([folder("a", "a"), file("f1", "x", parent="a")], "c1", True)
    index.apply_changes([deleted("a")], "c2", complete=False)
    assert paths(index) == set()
    assert index.db.execute("SELECT COUNT(*) FROM remote WHERE parent = ?", (LIMBO,)).fetchone()[0] == 1
    index.apply_changes([], "c3", True)
    assert index.db.execute("SELECT COUNT(*) FROM remote WHERE id IN ('a', 'f1')").fetchone()[0] == 0


def test_new_content_at_a_path_replaces_the_file_there(index: Index) -> None:
    index.apply_changes([file("f1", "x", fingerprint="1" * 64)], "c1", True)
    index.apply_changes([file("f2", "x", fingerprint="2" * 64)], "c2", True)
    tree = index.remote_tree("root")
    assert "f1" not in tree and tree["f2"].fingerprint == "2" * 64


def test_uploads_in_progress_are_not_in_the_tree(index: Index) -> None:
    index.apply_changes([{**file("f1", "x"), "status": "uploading"}], "c1", True)
    assert paths(index) == set()


def test_a_listing_replaces_what_was_known(index: Index) -> None:
    index.apply_changes([file("f1", "old")], "c1", True)
    index.apply_changes([file("f2", "new")], None, complete=False, first_of_listing=True)
    assert index.get("listing") == "1"
    index.apply_changes([], "c9", True)
    assert paths(index) == {"/new"} and index.get("cursor") == "c9" and index.get("listing") is None


def test_the_remote_tree_is_the_synced_folders_subtree(index: Index) -> None:
    index.apply_changes([folder("a", "a"), file("f1", "x", parent="a"), file("f2", "y")], "c1", True)
    assert set(index.remote_tree("a")) == {"a", "f1"}
    assert index.remote_tree("a")["a"].parent is None


# -- the scan ------------------------------------------------------------------------------------------


def write(path: Path, data: bytes, age: float = 3600) -> None:
    """Write and date back, so that the scan may trust the mtime (see scan.RACY_NS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = path.stat().st_mtime - age
    os.utime(path, (then, then))


def previous_of(result) -> dict:
    return result.fingerprints()


def test_a_scan_fingerprints_like_an_upload_and_an_idle_scan_reads_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"hello world")
    write(tmp_path / "sub" / "b.bin", b"")
    first = scan(tmp_path, CHUNK, {})
    by_name = {e.name: (key, e) for key, e, _ in first.entries}
    assert by_name["a.txt"][1].fingerprint == fingerprint_bytes(b"hello world", CHUNK)[0]
    assert by_name["b.bin"][1].parent == by_name["sub"][0]
    assert by_name["sub"][1].parent == LOCAL_ROOT and by_name["sub"][1].folder
    assert first.bytes_read == 11 and first.files_hashed == 2
    again = scan(tmp_path, CHUNK, previous_of(first))
    assert (again.bytes_read, again.files_hashed) == (0, 0)
    assert again.entries == first.entries


def test_a_renamed_file_keeps_its_key_and_is_not_read_again(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"content")
    first = scan(tmp_path, CHUNK, {})
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    again = scan(tmp_path, CHUNK, previous_of(first))
    assert [(k, e.name) for k, e, _ in again.entries] == [(first.entries[0][0], "b.txt")]
    assert again.bytes_read == 0


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"one")
    first = scan(tmp_path, CHUNK, {})
    write(tmp_path / "a.txt", b"two!", age=1800)
    again = scan(tmp_path, CHUNK, previous_of(first))
    assert again.bytes_read == 4 and again.entries[0][1].fingerprint == fingerprint_bytes(b"two!", CHUNK)[0]


def test_a_file_written_within_the_racy_window_is_read_again_next_time(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"fresh", age=0)
    first = scan(tmp_path, CHUNK, {})
    assert first.racy == {first.entries[0][0]}
    assert scan(tmp_path, CHUNK, previous_of(first)).bytes_read == 5


def test_a_racy_file_read_earlier_in_the_pass_is_not_read_again_in_it_but_stays_racy(tmp_path: Path) -> None:
    """A later round of the same pass need not read it again (no surer than the first read), the next pass does."""
    write(tmp_path / "a.txt", b"fresh", age=0)
    first = scan(tmp_path, CHUNK, {})
    key = first.entries[0][0]
    known = {key: (entry, mtime_ns, key in first.racy) for key, entry, mtime_ns in first.entries}
    assert first.chunks == {key: (5, first.entries[0][2], tuple(fingerprint_bytes(b"fresh", CHUNK)[1]))}
    same_pass = scan(tmp_path, CHUNK, trusted(known, fresh={key}))
    assert (same_pass.bytes_read, same_pass.racy, same_pass.chunks) == (0, {key}, {})
    assert scan(tmp_path, CHUNK, trusted(known)).bytes_read == 5


def test_what_is_not_synced_is_skipped_with_a_note(tmp_path: Path) -> None:
    write(tmp_path / ".dbxignore", b"build/\n*.tmp\n")
    write(tmp_path / "build" / "out.o", b"x")
    write(tmp_path / "scratch.tmp", b"x")
    write(tmp_path / (PARTIAL_PREFIX + "123"), b"partial")
    write(tmp_path / "Readme", b"one")
    write(tmp_path / "README", b"two")
    write(tmp_path / "back\\slash", b"x")
    (tmp_path / "link").symlink_to(tmp_path / "Readme")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        result = scan(tmp_path, CHUNK, {})
    names = sorted(e.name for _, e, _ in result.entries)
    assert names == [".dbxignore", "README"]  # of the twins, the first by name; none of them known before
    notes = "\n".join(result.notes)
    for expected in ("link: a symbolic link", "fifo: a special file", "sock: a special file",
                     "Readme: the server cannot hold it beside README", "back\\slash: the server cannot hold this name"):
        assert expected in notes
    assert "build" not in notes and "scratch" not in notes and PARTIAL_PREFIX not in notes
    assert result.partials == [PARTIAL_PREFIX + "123"]


def test_of_case_twins_the_one_synced_before_keeps_its_place(tmp_path: Path) -> None:
    write(tmp_path / "readme", b"known")
    first = scan(tmp_path, CHUNK, {})
    write(tmp_path / "README", b"new twin")
    again = scan(tmp_path, CHUNK, previous_of(first))
    assert [e.name for _, e, _ in again.entries] == ["readme"]


def test_a_vanished_or_replaced_root_stops_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "synced"
    root.mkdir()
    key = local_key(root.stat())
    assert scan(root, CHUNK, {}, expected_root=key).root_key == key
    (tmp_path / "elsewhere").mkdir()  # made while the first exists: another inode
    root.rmdir()
    with pytest.raises(LocalRootMissing, match="gone"):
        scan(root, CHUNK, {}, expected_root=key)
    (tmp_path / "elsewhere").rename(root)
    with pytest.raises(LocalRootMissing, match="not the folder"):
        scan(root, CHUNK, {}, expected_root=key)


def test_windows_names_are_reported_there_only() -> None:
    assert local_name_problem("a:b", "win32") and local_name_problem("CON.txt", "win32")
    assert local_name_problem("a:b", "linux") is None
