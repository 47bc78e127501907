"""The whole sync engine (client/sync/apply.py) against an in-memory server, seeded; many seeds.

The real engine, the real index (SQLite) and a real temporary folder; the
server is tests/sync_server.py. One ``random.Random(seed)`` drives everything
else: the trees both sides start with, and between any two steps of the
engine (each journal page, each scan, before and after each operation and
its record, inside each call to the server) it may

- kill the client (the engine is dropped and a new one started from the same
  database, as after SIGKILL: every write of the index is one transaction),
- change the local folder as a person would (new files, edits, renames,
  moves, deletions, new folders),
- change the tree on the server as another client would,
- fail a call to the server before it is made, or lose its answer after it
  was made, or reset the journal cursor,
- move the clock to the next day (conflicted-copy names carry the date);

and batches are carried out in a shuffled order (odd seeds: three operations
at a time, overlapping). Seeds 2, 5, 8, ... run as watch mode does: after a
client's first pass (a whole scan), its passes list again only the folders
the local changes named (as the file system's events would), never the folders
the engine changed itself. Seeds 3, 7, 11, ... start with a ``.dbxignore``
naming `d.md`, one of the names both sides keep using: what it names is synced
neither way and compared on neither side, and must not be lost either. Then the chaos stops and the
engine must bring both sides to agreement in one pass, and then find nothing
to do. Checked: the server's folder and the local folder hold the same paths
with the same content, the synced tree says so too, no partial download is
left, and no content a person wrote locally (and did not delete or overwrite
themselves) is gone from both sides (the server's trash and versions count).

A failure names its seed: ``SYNC_SEED=<seed> pytest tests/test_sync_simulation.py``
replays it exactly. ``SYNC_SEEDS=<n>`` runs more seeds than the suite does.
"""
from __future__ import annotations

import asyncio
import datetime
import os
import random
import shutil
from pathlib import Path

import pytest

from client.sync.apply import Engine, PassFailed
from client.sync.index import Index
from client.sync.remote import CursorReset, RemoteFailure
from client.sync.scan import PARTIAL_PREFIX, load_ignore
from protocol.fingerprints import fingerprint_bytes
from protocol.paths import name_key
from tests.sync_server import ROOT, MemoryServer

CHUNK = 8
NAMES = ["a", "B", "c.txt", "d.md", "e", "A"]
# Seeds that once failed, kept: 124 made a case twin on a case-sensitive disk (a person made `a` while the
# engine placed `A` beside it).
FOUND = [124]
SEEDS = [int(os.environ["SYNC_SEED"])] if os.environ.get("SYNC_SEED") else \
    sorted({*range(int(os.environ.get("SYNC_SEEDS", 50))), *FOUND})


class Killed(BaseException):
    """The client dies here (a BaseException, as SIGKILL is nothing the engine can catch)."""


class FlakyRemote:
    """The server as the client sees it over a network: calls fail, answers get lost, the client dies mid-call."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.server = sim.server
        self.target = sim.transport or sim.server  # the server itself, or the server behind HTTP

    def __getattr__(self, name: str):
        call = getattr(self.target, name)

        async def flaky(*args, **kwargs):
            await self.sim.interleave()
            await self.sim.step(f"calling {name}")
            if self.sim.chaos and self.sim.rng.random() < 0.05:
                raise RemoteFailure(f"{name}: the gateway cannot be reached", code="unreachable")
            if name == "changes" and args[0] and args[0].startswith("J") and self.sim.chaos \
                    and self.sim.rng.random() < 0.02:
                self.server.oldest = len(self.server.journal)  # the journal was pruned past this cursor
                raise CursorReset("cursor_reset")
            answer = await call(*args, **kwargs)
            await self.sim.interleave()
            await self.sim.step(f"answered {name}")
            if self.sim.chaos and name != "changes" and self.sim.rng.random() < 0.05:
                raise RemoteFailure(f"{name}: the connection broke before the answer came", code="unreachable")
            return answer

        return flaky


class Simulation:
    def __init__(self, seed: int, tmp_path: Path):
        self.seed = seed
        self.rng = random.Random(seed)
        self.day = datetime.date(2026, 12, 4)
        self.server = MemoryServer(CHUNK, page_size=self.rng.randint(1, 4), today=self.day)
        self.root = tmp_path / "local"
        self.root.mkdir()
        self.state = tmp_path / "state.sqlite3"
        self.chaos = True
        self.parallel = 1 if seed % 2 == 0 else 3  # odd seeds: operations of a batch overlap
        self.interleaving = random.Random(-seed)  # its own source, so that even seeds replay as they always did
        self.last_error: BaseException | None = None
        self.transport: object = None  # what the engine calls: the server itself unless a test puts HTTP between
        self.kills = 0
        self.counter = 0
        self.written: set[str] = set()  # fingerprints of content a person wrote locally
        self.destroyed: set[str] = set()  # ... and then deleted or overwrote themselves
        self.watching = seed % 3 == 2
        self.events: set[str] = set()  # the local folders a person changed since the last pass (relative paths)

    def fail(self, message: str) -> None:
        pytest.fail(f"seed {self.seed}: {message}\nreplay: SYNC_SEED={self.seed} pytest tests/test_sync_simulation.py")

    # -- the chaos between steps ----------------------------------------------------------------

    async def step(self, what: str) -> None:
        if not self.chaos:
            return
        roll = self.rng.random()
        if roll < 0.03:
            self.kills += 1
            raise Killed(what)
        if roll < 0.08:
            self.change_local()
        elif roll < 0.13:
            await self.change_remote()
        elif roll < 0.14:
            self.day += datetime.timedelta(days=1)
            self.server.today = self.day

    async def interleave(self) -> None:
        """Let another operation of the batch run here, sometimes (a call to a server takes time)."""
        if self.parallel > 1 and self.interleaving.random() < 0.5:
            await asyncio.sleep(0)

    def content(self) -> bytes:
        self.counter += 1
        return f"seed {self.seed} content {self.counter} ".encode() * self.rng.randint(0, 3)

    # -- a person at the local folder ------------------------------------------------------------------

    def local_items(self) -> tuple[list[Path], list[Path]]:
        files, folders = [], [self.root]
        for dirpath, dirnames, filenames in os.walk(self.root):
            folders += [Path(dirpath, d) for d in dirnames]
            files += [Path(dirpath, f) for f in filenames if not f.startswith(PARTIAL_PREFIX)]
        return sorted(files), sorted(folders)

    def free_local(self, folder: Path, name: str) -> bool:
        return all(name_key(n) != name_key(name) for n in os.listdir(folder))

    def event(self, path: Path) -> None:
        """Note the folder of ``path`` as changed, as the file system's events would."""
        folder = path.parent.relative_to(self.root).as_posix()
        self.events.add("" if folder == "." else folder)

    def take_events(self) -> set[str]:
        taken, self.events = self.events, set()
        return taken

    def write_local(self, path: Path, data: bytes) -> None:
        self.event(path)
        path.write_bytes(data)
        self.written.add(fingerprint_bytes(data, CHUNK)[0])

    def change_local(self) -> None:
        files, folders = self.local_items()
        files = [f for f in files if f != self.root / ".dbxignore"]  # people leave it alone here
        kind = self.rng.choice(["new", "new", "edit", "move", "delete", "mkdir"])
        name = self.rng.choice(NAMES)
        if kind == "new" or (kind == "edit" and not files):
            folder = self.rng.choice(folders)
            if self.free_local(folder, name):
                self.write_local(folder / name, self.content())
        elif kind == "edit":
            path = self.rng.choice(files)
            self.destroyed.add(fingerprint_bytes(path.read_bytes(), CHUNK)[0])
            self.write_local(path, self.content())
        elif kind == "mkdir":
            folder = self.rng.choice(folders)
            if self.free_local(folder, name):
                self.event(folder / name)
                (folder / name).mkdir()
        elif not files + folders[1:]:
            return
        elif kind == "move":
            item = self.rng.choice(files + folders[1:])
            target = self.rng.choice(folders)
            if item.is_dir() and (target == item or item in target.parents):
                return
            if self.free_local(target, name):
                self.event(item)
                self.event(target / name)
                item.rename(target / name)
        elif kind == "delete":
            item = self.rng.choice(files + folders[1:])
            for path in ([item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]):
                self.destroyed.add(fingerprint_bytes(path.read_bytes(), CHUNK)[0])
            self.event(item)
            shutil.rmtree(item) if item.is_dir() else item.unlink()

    # -- another client of the same user ---------------------------------------------------------------

    async def change_remote(self) -> None:
        server = self.server
        nodes = sorted(k for k in server.subtree(ROOT) if k != ROOT and server.path(k) != "/.dbxignore")
        folders = [ROOT] + [k for k in nodes if server.nodes[k].folder]
        files = [k for k in nodes if not server.nodes[k].folder]
        kind = self.rng.choice(["new", "new", "edit", "move", "delete", "mkdir"])
        name = self.rng.choice(NAMES)
        try:
            if kind == "new" or (kind == "edit" and not files):
                server.commit(self.rng.choice(folders), name, self.content())
            elif kind == "edit":
                file_id = self.rng.choice(files)
                node = server.nodes[file_id]
                server.commit(node.parent, node.name, self.content(), "update", file_id)  # type: ignore[arg-type]
            elif kind == "mkdir":
                await server.mkdir(self.rng.choice(folders), name)
            elif kind == "move":
                node_id = self.rng.choice(nodes)
                await server.move(node_id, server.nodes[node_id].folder, self.rng.choice(folders), name)
            elif kind == "delete" and nodes:
                node_id = self.rng.choice(nodes)
                await server.delete(node_id, server.nodes[node_id].folder)
        except (RemoteFailure, IndexError):
            pass  # a name taken, a move into itself: that client was refused

    # -- the run -----------------------------------------------------------------------------------

    def engine(self) -> Engine:
        return Engine(Index(self.state), FlakyRemote(self), self.root, chunk_size=CHUNK, today=lambda: self.day,
                      allow_mass_delete=True, step=self.step,
                      arrange=lambda ops: self.rng.sample(ops, len(ops)),
                      parallel=self.parallel)

    async def run(self) -> None:
        if self.seed % 4 == 3:  # a .dbxignore naming one of the names both sides use (people leave it alone)
            self.write_local(self.root / ".dbxignore", b"d.md\n")
        for _ in range(self.rng.randint(0, 8)):
            self.change_local()
        for _ in range(self.rng.randint(0, 8)):
            await self.change_remote()
        for attempt in range(60):
            if attempt == 40:
                self.chaos = False
            engine = self.engine()
            try:
                self.take_events()  # a client that starts scans the whole folder
                await engine.sync_once()
                while self.watching and self.rng.random() < 0.7:  # then, watching: what the events name
                    if self.chaos:
                        self.change_local()
                    await engine.sync_once(changed=self.take_events())
                if not self.chaos:
                    break
            except (Killed, PassFailed, RemoteFailure, CursorReset) as exc:
                self.last_error = exc
                continue
            finally:
                engine.index.close()
            self.chaos = False  # one pass came through the chaos: now the quiet pass must agree
        else:
            self.fail(f"no pass agreed once the chaos stopped (the last one: {self.last_error!r})")
        engine = self.engine()
        try:
            again = await engine.sync_once()
        finally:
            engine.index.close()
        if again.done:
            self.fail(f"a pass after agreement still did something: {again.done}")
        self.check()

    def local_listing(self) -> dict[str, str | None]:
        files, folders = self.local_items()
        listing: dict[str, str | None] = {"/" + str(p.relative_to(self.root)): None for p in folders[1:]}
        listing.update({"/" + str(p.relative_to(self.root)): fingerprint_bytes(p.read_bytes(), CHUNK)[0] for p in files})
        return listing

    def visible(self, listing: dict[str, str | None]) -> dict[str, str | None]:
        """``listing`` without what the local folder's .dbxignore names as it is now (synced neither way)."""
        ignore = load_ignore(self.root)
        return {path: fp for path, fp in listing.items()
                if ignore is None or not ignore.match_file(path[1:] + ("/" if fp is None else ""))}

    def check(self) -> None:
        everywhere = {*self.server.listing().values(), *self.local_listing().values(), *self.server.kept}
        remote, local = self.visible(self.server.listing()), self.visible(self.local_listing())
        if remote != local:
            self.fail(f"the sides differ:\n  server {sorted(remote.items())}\n  local  {sorted(local.items())}")
        index = Index(self.state)
        try:
            synced = index.synced_tree()
        finally:
            index.close()

        def path(nid: int) -> str:
            s = synced[nid]
            return "" if s.parent is None else path(s.parent) + "/" + s.name

        listed = {path(n): s.fingerprint for n, s in synced.items() if s.parent is not None}
        if listed != remote:
            self.fail(f"the synced tree differs from both sides:\n  synced {sorted(listed.items())}")
        if any(p.name.startswith(PARTIAL_PREFIX) for p in self.root.rglob("*")):
            self.fail("a partial download was left in the folder")
        lost = self.written - self.destroyed - everywhere
        if lost:
            self.fail(f"content written locally is gone from both sides: {sorted(lost)}")


def replay(sim: Simulation, run) -> None:
    """``asyncio.run(run)``; an error the simulation did not expect (a bug in the engine) names the seed too."""
    try:
        asyncio.run(run)
    except Exception as exc:  # noqa: BLE001 - any error at all: the seed is what replays it
        sim.fail(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("seed", SEEDS)
def test_the_engine_converges_through_chaos_without_losing_content(seed: int, tmp_path: Path) -> None:
    sim = Simulation(seed, tmp_path)
    replay(sim, sim.run())


def test_an_idle_pass_reads_no_file_content(tmp_path: Path) -> None:
    sim = Simulation(7, tmp_path)
    sim.chaos = False
    for name in ("a", "b", "c"):
        sim.write_local(sim.root / name, sim.content() + b"x")
    sim.server.commit(ROOT, "remote.txt", b"from the server")

    async def passes() -> tuple:
        first = sim.engine()
        try:
            done = await first.sync_once()
        finally:
            first.index.close()
        for path in sim.root.iterdir():  # older than the racy window: their mtimes may be trusted
            then = path.stat().st_mtime - 3600
            os.utime(path, (then, then))
        second = sim.engine()
        try:
            await second.sync_once()  # reads the files whose mtime changed, once
            idle = await second.sync_once()
        finally:
            second.index.close()
        return done, idle

    done, idle = asyncio.run(passes())
    assert done.done == {"upload": 3, "download": 1}
    assert (idle.done, idle.bytes_read) == ({}, 0)
    assert sim.server.listing() == sim.local_listing()


def test_a_file_that_changes_before_its_upload_is_not_committed(tmp_path: Path) -> None:
    sim = Simulation(8, tmp_path)
    sim.chaos = False
    sim.write_local(sim.root / "doc", b"version one")

    edits: list[str] = []

    async def edit_before_upload(what: str) -> None:
        if what == "calling upload" and not edits:  # after the engine checked the file, before the server reads it
            edits.append(what)
            (sim.root / "doc").write_bytes(b"version two, longer")

    sim.step = edit_before_upload  # type: ignore[method-assign]

    async def run() -> None:
        engine = sim.engine()
        try:
            with pytest.raises(PassFailed, match="not the content"):
                await engine.sync_once()
            assert sim.server.listing() == {}
            await engine.sync_once()
        finally:
            engine.index.close()

    asyncio.run(run())
    assert sim.server.listing() == {"/doc": fingerprint_bytes(b"version two, longer", CHUNK)[0]}



def quiet(seed: int, tmp_path: Path) -> Simulation:
    sim = Simulation(seed, tmp_path)
    sim.chaos = False
    return sim


async def one_pass(sim: Simulation, remote_path: str = "/"):
    engine = sim.engine()
    engine.remote_path = remote_path
    try:
        return await engine.sync_once()
    finally:
        engine.index.close()


def test_a_file_edited_while_its_new_version_downloads_is_not_clobbered(tmp_path: Path) -> None:
    sim = quiet(9, tmp_path)
    sim.server.commit(ROOT, "notes.txt", b"first")
    asyncio.run(one_pass(sim))
    file_id = sim.server.holder(ROOT, "notes.txt")
    sim.server.commit(ROOT, "notes.txt", b"from the server", "update", file_id)

    async def edit_during_download(what: str) -> None:
        if what == "answered download":  # written aside, not yet in place: the person saves meanwhile
            (sim.root / "notes.txt").write_bytes(b"typed here meanwhile")

    sim.step = edit_during_download  # type: ignore[method-assign]
    with pytest.raises(PassFailed, match="changed since the scan"):
        asyncio.run(one_pass(sim))
    assert (sim.root / "notes.txt").read_bytes() == b"typed here meanwhile"
    assert not [p for p in sim.root.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    sim.step = Simulation.step.__get__(sim)  # type: ignore[method-assign]
    asyncio.run(one_pass(sim))  # now an edit on both sides: both kept
    assert sorted(sim.server.listing().values()) == sorted(fingerprint_bytes(data, CHUNK)[0] for data in (
        b"from the server", b"typed here meanwhile"))
    assert sim.server.listing() == sim.local_listing()


def test_a_vanished_local_folder_is_never_read_as_everything_deleted(tmp_path: Path) -> None:
    from client.sync.scan import LocalRootMissing

    sim = quiet(10, tmp_path)
    sim.write_local(sim.root / "kept", b"precious")
    asyncio.run(one_pass(sim))
    (tmp_path / "mount point").mkdir()  # made while the synced folder exists: another inode
    shutil.rmtree(sim.root)  # an unmounted disk
    with pytest.raises(LocalRootMissing):
        asyncio.run(one_pass(sim))
    (tmp_path / "mount point").rename(sim.root)  # an empty mount point in its place: another folder
    with pytest.raises(LocalRootMissing, match="not the folder that was synced"):
        asyncio.run(one_pass(sim))
    assert sim.server.listing() == {"/kept": fingerprint_bytes(b"precious", CHUNK)[0]}


def test_a_vanished_remote_folder_is_never_read_as_everything_deleted(tmp_path: Path) -> None:
    from client.sync.apply import RemoteRootGone

    sim = quiet(11, tmp_path)
    sim.write_local(sim.root / "kept", b"precious")
    asyncio.run(one_pass(sim, "/laptop"))
    asyncio.run(sim.server.delete(sim.server.holder(ROOT, "laptop") or "", folder=True))
    with pytest.raises(RemoteRootGone):
        asyncio.run(one_pass(sim, "/laptop"))
    assert (sim.root / "kept").read_bytes() == b"precious"


def test_what_dbxignore_names_is_synced_neither_way_and_never_deleted(tmp_path: Path) -> None:
    """A file made on the server under an ignored name is not downloaded; were it, the next scan would miss it
    and the engine would delete it on the server. A synced file that becomes ignored is forgotten, kept on both."""
    sim = quiet(12, tmp_path)
    sim.write_local(sim.root / ".dbxignore", b"*.tmp\nbuild/\n")
    sim.write_local(sim.root / "here.tmp", b"local scratch")
    sim.write_local(sim.root / "log.txt", b"synced, then ignored")
    sim.server.commit(ROOT, "web.tmp", b"made on the web")
    build = asyncio.run(sim.server.mkdir(ROOT, "build"))["folder_id"]
    sim.server.commit(build, "out.o", b"built elsewhere")
    first = asyncio.run(one_pass(sim))
    assert first.done == {"upload": 2}  # .dbxignore and log.txt
    assert sorted(sim.server.listing()) == ["/.dbxignore", "/build", "/build/out.o", "/log.txt", "/web.tmp"]
    assert sorted(p.name for p in sim.root.iterdir()) == [".dbxignore", "here.tmp", "log.txt"]
    assert asyncio.run(one_pass(sim)).done == {}

    sim.write_local(sim.root / ".dbxignore", b"*.tmp\nbuild/\nlog.txt\n")
    ignoring = asyncio.run(one_pass(sim))
    assert ignoring.done == {"upload": 1, "forget": 1}  # the new .dbxignore; log.txt left alone on both sides
    assert "/log.txt" in sim.server.listing() and (sim.root / "log.txt").exists()
    assert sim.server.kept == {fingerprint_bytes(b"*.tmp\nbuild/\n", CHUNK)[0]}  # the old .dbxignore, a version
    assert asyncio.run(one_pass(sim)).done == {}


def test_server_names_this_system_cannot_hold_are_reported_never_renamed(tmp_path: Path) -> None:
    """On Windows (its name rules, here on any system): `a:b.txt` on the server is named in a note and left as it
    is on the server, the folder `x|y` with all it holds too; a synced file renamed on the server to such a name
    leaves the folder (it is still on the server, under the name given there)."""
    sim = quiet(13, tmp_path)
    sim.server.commit(ROOT, "ok.txt", b"fine everywhere")
    sim.server.commit(ROOT, "a:b.txt", b"not on Windows")
    odd = asyncio.run(sim.server.mkdir(ROOT, "x|y"))["folder_id"]
    sim.server.commit(odd, "inner.txt", b"inside")
    server_before = sim.server.listing()

    async def windows_pass():
        engine = sim.engine()
        engine.platform = "win32"
        try:
            return await engine.sync_once()
        finally:
            engine.index.close()

    first = asyncio.run(windows_pass())
    assert first.done == {"download": 1} and sim.local_listing() == {"/ok.txt": server_before["/ok.txt"]}
    assert any(note.startswith("a:b.txt: on the server, but Windows does not allow") for note in first.notes)
    assert any(note.startswith("x|y: on the server, but Windows does not allow") for note in first.notes)
    assert not any("inner.txt" in note for note in first.notes)  # left out with its folder
    assert sim.server.listing() == server_before and not sim.server.kept
    assert asyncio.run(windows_pass()).done == {}

    ok = sim.server.holder(ROOT, "ok.txt")
    asyncio.run(sim.server.move(ok or "", False, ROOT, "o:k.txt"))
    renamed = asyncio.run(windows_pass())
    assert renamed.done == {"delete": 1} and sim.local_listing() == {}
    assert sim.server.listing()["/o:k.txt"] == server_before["/ok.txt"] and not sim.server.kept
    assert any(note.startswith("o:k.txt: on the server, but") for note in renamed.notes)


def test_local_case_twins_are_reported_and_neither_is_renamed(tmp_path: Path) -> None:
    """Two local names the server takes for one (this disk tells `Readme` from `README`): the one synced first
    goes on syncing, the other is named in a note every pass and left as it is."""
    sim = quiet(14, tmp_path)
    sim.write_local(sim.root / "Readme", b"first")
    asyncio.run(one_pass(sim))
    sim.write_local(sim.root / "README", b"its twin")
    sim.write_local(sim.root / "Readme", b"first, edited")
    twin = asyncio.run(one_pass(sim))
    assert twin.done == {"upload": 1}
    assert sim.server.listing() == {"/Readme": fingerprint_bytes(b"first, edited", CHUNK)[0]}
    assert any(note.startswith("README: the server cannot hold it beside Readme") for note in twin.notes)
    assert sorted(p.name for p in sim.root.iterdir()) == ["README", "Readme"]
    again = asyncio.run(one_pass(sim))
    assert again.done == {} and any(note.startswith("README:") for note in again.notes)
