"""client/sync/remote.py's HttpRemote, and the whole engine over HTTP, against the contract's routes (tests/sync_http.py).

These pin what the client sends to the contract (v1.2), in the fast lane; the
same engine against the real gateway, store and CDN is tests/test_sync_end_to_end.py
(both engines) and tests/test_sync_cluster.py (the cluster's shape).
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from client.api import GatewayClient
from client.cli import main
from client.config import Credentials, CredentialStore
from client.sync.apply import Engine, MassDeletion, PassFailed
from client.sync.index import Index
from client.sync.remote import HttpRemote, RemoteFailure
from protocol.fingerprints import fingerprint_bytes
from protocol.paths import conflicted_copy_names
from tests.sync_http import ContractApp
from tests.sync_server import ROOT, MemoryServer
from tests.test_sync_simulation import Simulation, replay

CHUNK = 16
DAY = MemoryServer(CHUNK).today


def fp(data: bytes) -> str:
    return fingerprint_bytes(data, CHUNK)[0]


def local_listing(root: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for path in sorted(root.rglob("*")):
        out["/" + str(path.relative_to(root))] = None if path.is_dir() else fp(path.read_bytes())
    return out


class Http:
    """A contract app on a port, a client logged in to it, and an engine per pass."""

    def __init__(self, tmp_path: Path):
        self.server = MemoryServer(CHUNK, page_size=2)
        self.contract = ContractApp(self.server)
        self.root = tmp_path / "folder"
        self.root.mkdir()
        self.state = tmp_path / "state.sqlite3"

    async def __aenter__(self) -> Http:
        await self.contract.start()
        self.client = GatewayClient(self.contract.url, "token")
        await self.client.__aenter__()
        self.remote = HttpRemote(self.client, await self.client.config())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.contract.stop()

    async def sync(self, remote_path: str = "/", **options):
        engine = Engine(Index(self.state), self.remote, self.root, remote_path, chunk_size=CHUNK,
                        today=lambda: DAY, **options)
        try:
            return await engine.sync_once()
        finally:
            engine.index.close()


def test_first_sync_both_ways_then_renames_edits_and_conflicts_over_http(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            server, root = http.server, http.root
            (root / "papers").mkdir()
            (root / "papers" / "big.bin").write_bytes(b"0123456789" * 10)  # several chunks
            (root / "empty").write_bytes(b"")
            photos = await server.mkdir(ROOT, "photos")
            server.commit(photos["folder_id"], "cat.jpg", b"meow" * 9)
            first = await http.sync()
            assert first.done == {"mkdir": 2, "upload": 2, "download": 1}
            assert server.listing() == local_listing(root)

            uploads = http.contract.count("POST /dropbox/v1/files")
            (root / "papers" / "big.bin").rename(root / "papers" / "renamed.bin")
            (root / "photos").rename(root / "papers" / "photos")
            await http.sync()
            assert http.contract.count("POST /dropbox/v1/files") == uploads, "a rename moves no bytes"
            assert http.contract.count("PATCH /dropbox/v1/files/{id}") == 1
            assert http.contract.count("PATCH /dropbox/v1/folders/{id}") == 1
            assert server.listing() == local_listing(root)
            index = Index(http.state)
            try:
                assert ("move", "remote", "papers/renamed.bin", "moved or renamed on the other side") in index.done()
            finally:
                index.close()

            photos_id = server.holder(server.holder(ROOT, "papers") or "", "photos") or ""
            cat = server.holder(photos_id, "cat.jpg")
            server.commit(photos_id, "cat.jpg", b"purr" * 9, "update", cat)  # another client
            (root / "papers" / "photos" / "cat.jpg").write_bytes(b"hiss" * 9)  # and here, meanwhile
            await http.sync()
            copy = next(conflicted_copy_names("cat.jpg", DAY))
            assert server.listing()["/papers/photos/cat.jpg"] == fp(b"purr" * 9)
            assert server.listing()[f"/papers/photos/{copy}"] == fp(b"hiss" * 9)
            assert server.listing() == local_listing(root)

    asyncio.run(run())


def test_an_upload_replacing_a_file_sends_update_mode_with_replaces(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            (http.root / "a.txt").write_bytes(b"one")
            await http.sync()
            first = http.server.holder(ROOT, "a.txt")
            (http.root / "a.txt").write_bytes(b"two, longer")
            await http.sync()
            [announced] = [u for u in http.contract.announced if u["file_name"] == "a.txt" and u.get("mode") == "update"]
            assert announced["replaces"] == first and announced["parent_id"] == ROOT
            assert first in http.server.versions and http.server.listing() == {"/a.txt": fp(b"two, longer")}

    asyncio.run(run())



def test_small_files_go_up_in_one_request_and_large_ones_in_chunks(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            for n in range(3):
                (http.root / f"small{n}").write_bytes(b"s%d" % n)
            (http.root / "large").write_bytes(b"L" * 100)  # over the app's inline_upload_limit of 64
            await http.sync()
            assert http.contract.count("POST /dropbox/v1/files") == 4
            assert http.contract.count("POST /dropbox/v1/files/{id}/upload-urls") == 1
            assert http.contract.count("POST /dropbox/v1/files/{id}/complete") == 1
            assert http.server.listing() == local_listing(http.root)

    asyncio.run(run())

@pytest.fixture
def hashing_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the client fingerprints by the upload's own pass (client.hashing.FingerprintPass), in order."""
    import client.hashing

    passes: list[str] = []

    class Counted(client.hashing.FingerprintPass):
        def __init__(self, path: str, *args, **kwargs):
            passes.append(Path(path).name)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(client.hashing, "FingerprintPass", Counted)
    return passes


def test_a_large_file_is_read_once_to_fingerprint_it(tmp_path: Path, hashing_passes: list[str]) -> None:
    """The scan's chunk fingerprints are the upload's: no second read. A client started again, whose scan trusts
    what it read before (and reads nothing), reads the file once, for the upload."""
    async def run() -> None:
        async with Http(tmp_path) as http:
            (http.root / "large").write_bytes(b"L" * 100)  # 7 chunks, over the inline limit; just written
            first = await http.sync()
            assert first.bytes_read == 100 and hashing_passes == []  # once in its pass, though it is racy
            assert http.server.listing() == local_listing(http.root)

            for name in ("large", "old"):
                (http.root / name).write_bytes(name[0].encode() * 100)
                os.utime(http.root / name, (1_000_000_000, 1_000_000_000))  # long unchanged: scans trust them
            http.contract.refuse["POST /dropbox/v1/files"] = (400, "invalid_request")
            with pytest.raises(PassFailed):
                await http.sync()  # read by the scan; the upload refused
            del http.contract.refuse["POST /dropbox/v1/files"]
            again = await http.sync()  # a new engine, as after a restart
            assert again.bytes_read == 0 and hashing_passes == ["large", "old"]
            assert http.server.listing() == local_listing(http.root)

    asyncio.run(run())


FIRST = b"line one\n" * 10
CHANGES = {  # how the file changes once its first chunk is on its way: (new content, what the pass says)
    # appended to: every chunk still the scan's bytes, so the store takes them all; the stat after sending sees it
    "grown": (FIRST + b"line two\n", "changed while it was being uploaded"),
    # saved over: the store refuses the chunks read after the change (their checksum is the scan's)
    "saved over": (FIRST.upper(), "changed since it was fingerprinted"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_file_that_changes_while_it_uploads_is_not_committed(change: str, tmp_path: Path,
                                                               hashing_passes: list[str]) -> None:
    """Nothing is committed (neither half of each version nor the stale one), the upload is deleted rather
    than left in progress (counting toward the quota) for a day, and the next pass uploads the new content."""
    content, message = CHANGES[change]

    async def run() -> None:
        async with Http(tmp_path) as http:
            path = http.root / "log"
            path.write_bytes(FIRST)

            def write() -> None:
                if change == "grown":
                    with path.open("ab") as f:
                        f.write(content[len(FIRST):])
                else:
                    path.write_bytes(content)
                del http.contract.before["PUT /store/{id}/{index}"]

            http.contract.before["PUT /store/{id}/{index}"] = write
            with pytest.raises(PassFailed, match=message):
                await http.sync()
            assert http.server.listing() == {} and http.contract.count("POST /dropbox/v1/files/{id}/complete") == 0
            assert http.contract.uploads == {}
            await http.sync()
            assert http.server.listing() == {"/log": fp(content)}
            assert fp(FIRST) not in http.server.kept and hashing_passes == []

    asyncio.run(run())


def test_a_file_that_grows_while_a_gateway_finishes_it_on_its_own_makes_no_conflict(tmp_path: Path) -> None:
    """A gateway that follows the store's events commits the file once the store holds every chunk, before the
    client's stat says the file grew: that version is the scan's (each chunk checked), so it is recorded as
    synced and the next round uploads the change over it; not read as an edit on both sides (a conflict)."""
    async def run() -> None:
        async with Http(tmp_path) as http:
            http.contract.auto_complete = True
            log = http.root / "log"
            log.write_bytes(b"line one\n" * 10)
            scanned = fp(log.read_bytes())

            def append() -> None:
                with log.open("ab") as f:
                    f.write(b"line two\n")
                del http.contract.before["PUT /store/{id}/{index}"]

            http.contract.before["PUT /store/{id}/{index}"] = append
            synced = await http.sync()
            assert synced.done == {"upload": 2} and not synced.failures  # the version scanned, then the grown one
            assert http.server.listing() == local_listing(http.root) == {"/log": fp(log.read_bytes())}
            assert scanned in http.server.kept  # the first version, now a version of the second

    asyncio.run(run())


def test_a_remote_subfolder_is_synced_and_made_if_missing(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            http.server.commit(ROOT, "outside.txt", b"not synced")
            (http.root / "inside.txt").write_bytes(b"synced")
            await http.sync("/backup/laptop")
            assert http.server.listing() == {"/backup": None, "/backup/laptop": None,
                                             "/backup/laptop/inside.txt": fp(b"synced"),
                                             "/outside.txt": fp(b"not synced")}
            assert local_listing(http.root) == {"/inside.txt": fp(b"synced")}

    asyncio.run(run())


def test_mass_deletion_over_http_stops_and_deletes_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            for n in range(12):
                (http.root / f"f{n}").write_bytes(b"x%d" % n)
            await http.sync()
            for path in http.root.iterdir():
                path.unlink()  # an unmounted disk looks like this
            with pytest.raises(MassDeletion, match="would delete 12 of the 12 files"):
                await http.sync()
            assert len(http.server.listing()) == 12 and http.contract.count("DELETE /dropbox/v1/files/{id}") == 0
            await http.sync(allow_mass_delete=True)
            assert http.server.listing() == {} and len(http.server.kept) == 12

    asyncio.run(run())


def test_refusals_reach_the_engine_as_failures_of_one_operation(tmp_path: Path) -> None:
    async def run() -> None:
        async with Http(tmp_path) as http:
            await http.server.mkdir(ROOT, "taken")
            with pytest.raises(RemoteFailure) as taken:
                await http.remote.mkdir(ROOT, "Taken")
            assert taken.value.code == "name_taken" and not taken.value.gone
            with pytest.raises(RemoteFailure) as gone:
                await http.remote.delete("f999", folder=False)
            assert gone.value.gone

    asyncio.run(run())


@pytest.mark.parametrize("seed", [3, 124])
def test_the_simulation_over_http(seed: int, tmp_path: Path) -> None:
    """A few seeds of the chaos simulation with HttpRemote in the middle: the same invariants."""
    sim = Simulation(seed, tmp_path)

    async def run() -> None:
        contract = await ContractApp(sim.server).start()
        async with GatewayClient(contract.url, "token") as client:
            sim.transport = HttpRemote(client, await client.config())
            try:
                await sim.run()
            finally:
                await contract.stop()

    replay(sim, run())


# -- the command -------------------------------------------------------------------------------------


@pytest.fixture
def contract_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The contract app on a loop of its own (dbx's main() runs its own), and dbx logged in to it."""
    server = MemoryServer(CHUNK)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = asyncio.run_coroutine_threadsafe(ContractApp(server).start(), loop).result(10)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    CredentialStore().save(Credentials(app.url, "someone", "token", None))
    yield server, app
    asyncio.run_coroutine_threadsafe(app.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_dbx_sync_once_then_the_mass_deletion_stop(contract_app, tmp_path: Path, capsys) -> None:
    server, app = contract_app
    folder = tmp_path / "folder"
    folder.mkdir()
    for n in range(12):
        (folder / f"f{n}.txt").write_bytes(b"file %d" % n)
    assert main(["sync", str(folder), "--once", "--server", app.url, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(e["path"] for e in events if e["event"] == "op") == sorted(f"f{n}.txt" for n in range(12))
    assert all(e["action"] == "upload" and e["side"] == "remote" for e in events if e["event"] == "op")
    assert events[-1]["event"] == "pass" and events[-1]["done"] == {"upload": 12}
    assert len(server.listing()) == 12
    assert list((tmp_path / "state" / "dbx" / "sync").glob("*.sqlite3")), "the state lives outside the folder"

    (folder / "f0.txt").rename(folder / "renamed.txt")
    assert main(["sync", str(folder), "--once", "--server", app.url]) == 0
    err = capsys.readouterr().err
    assert "renamed.txt: moved on the server" in err and "synced in 1 round: 1 move" in err
    for path in folder.iterdir():
        path.unlink()
    assert main(["sync", str(folder), "--once", "--server", app.url]) == 12
    assert "would delete 12 of the 12 files" in capsys.readouterr().err
    assert len(server.listing()) == 12


def test_dbx_sync_refuses_a_state_inside_the_synced_folder(contract_app, tmp_path: Path, capsys) -> None:
    _, app = contract_app
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["sync", str(folder), "--once", "--server", app.url, "--state", str(folder / "s.db")]) == 2
    assert "cannot live inside the folder" in capsys.readouterr().err



def test_dbx_sync_once_exits_with_the_gateways_own_refusal(contract_app, tmp_path: Path, capsys) -> None:
    """A refusal while the journal is read ends the pass with the client's exit code for it (11: throttled)."""
    _, app = contract_app
    app.refuse["GET /dropbox/v1/changes"] = (429, "too_many_requests")
    (tmp_path / "folder").mkdir()
    assert main(["sync", str(tmp_path / "folder"), "--once", "--server", app.url]) == 11
    assert "is busy" in capsys.readouterr().err
