"""`dbx sync` end to end: two clients of one user, on two folders, against the real gateway on the real
store (SeaweedFS), on both engines. Each client is the installed `dbx` in a process of its own (this
checkout's code first on PYTHONPATH: tests/harness.py's this_checkout_first).

What is checked is the contract's promise: both folders and the user's tree end the same, nothing lost;
a client killed (SIGKILL) in the middle of a large upload and started again converges too, and a large file
saved over while it uploads is uploaded again whole; two clients left running (watch mode) follow each other's
changes.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from storage.embedded import free_port
from tests.gates import Gate
from tests.harness import Api
from tests.test_client import CHUNK, MIB, PASSWORD, Dbx, write_random

pytestmark = pytest.mark.every_engine  # the journal the clients follow, on both engines
PASSES = 4  # a pass at most per side and round; both sides agree after two by the planner's properties


@pytest.fixture
async def stack(make_gateway, cdn):
    """The gateway with the real nginx CDN tier in front of the store: downloads go through it."""
    return await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)


@pytest.fixture
async def clients(stack, http, tmp_path) -> tuple[Dbx, Dbx, Api]:
    return await laptop_and_desktop(http, tmp_path, stack.url, stack.url)


async def laptop_and_desktop(http, tmp_path: Path, laptop_url: str, desktop_url: str) -> tuple[Dbx, Dbx, Api]:
    """A user signed up through the laptop's gateway, and a dbx logged in as them on each machine."""
    api = await Api(http, laptop_url).signup(password=PASSWORD)
    pair = []
    for name, url in (("laptop", laptop_url), ("desktop", desktop_url)):
        dbx = Dbx(tmp_path / name, url)
        await dbx.login(api.username)
        (tmp_path / name / "synced").mkdir()
        pair.append(dbx)
    return pair[0], pair[1], api


def folder(dbx: Dbx) -> Path:
    return dbx.home / "synced"


def contents(root: Path) -> dict[str, str]:
    """Each file under ``root`` (relative path -> SHA-256) and each folder (-> "dir")."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        found[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def sync_once(dbx: Dbx) -> None:
    """`dbx sync --once` until it says both sides agree (exit 0)."""
    for _ in range(PASSES):
        run = await dbx("sync", str(folder(dbx)), "--once", timeout=300)
        assert "Traceback" not in run.stderr, run
        if run.rc == 0:
            return
    raise AssertionError(f"no agreement after {PASSES} passes:\n{run}")


async def converge(*pair: Dbx) -> None:
    for dbx in (*pair, *pair):
        await sync_once(dbx)


async def remote_contents(api: Api) -> dict[str, str]:
    """The user's tree as the change journal lists it: path -> "dir", or the file's fingerprint."""
    answer = await api.get("/dropbox/v1/changes?limit=1000")
    assert answer.status == 200 and not answer.body["has_more"]
    return {change["path"].lstrip("/"): "dir" if change["type"] == "folder" else change["fingerprint"]
            for change in answer.body["changes"]}


async def test_edits_renames_and_deletes_on_both_sides_converge(clients):
    laptop, desktop, api = clients
    (folder(laptop) / "notes").mkdir()
    (folder(laptop) / "notes" / "todo.txt").write_text("buy milk\n")
    (folder(laptop) / "notes" / "old.txt").write_text("to be deleted\n")
    (folder(laptop) / "report.txt").write_text("draft 1\n")
    await converge(laptop, desktop)
    assert contents(folder(desktop)) == contents(folder(laptop))
    assert set(await remote_contents(api)) == set(contents(folder(laptop)))

    # Both sides change different things between passes.
    (folder(laptop) / "report.txt").write_text("draft 2, from the laptop\n")
    (folder(laptop) / "photos").mkdir()
    (folder(laptop) / "photos" / "cat.jpg").write_bytes(os.urandom(200_000))
    (folder(desktop) / "notes").rename(folder(desktop) / "Notes 2026")
    (folder(desktop) / "Notes 2026" / "old.txt").unlink()
    (folder(desktop) / "Notes 2026" / "todo.txt").write_text("buy milk\nand bread\n")
    await converge(laptop, desktop)
    expected = {
        "Notes 2026": "dir",
        "Notes 2026/todo.txt": hashlib.sha256(b"buy milk\nand bread\n").hexdigest(),
        "photos": "dir",
        "photos/cat.jpg": contents(folder(laptop))["photos/cat.jpg"],
        "report.txt": hashlib.sha256(b"draft 2, from the laptop\n").hexdigest(),
    }
    assert contents(folder(laptop)) == contents(folder(desktop)) == expected
    assert set(await remote_contents(api)) == set(expected)

    # The same file edited on both sides: both kept, on both sides.
    (folder(laptop) / "report.txt").write_text("the laptop's edit\n")
    (folder(desktop) / "report.txt").write_text("the desktop's edit\n")
    await converge(laptop, desktop)
    assert contents(folder(laptop)) == contents(folder(desktop))
    texts = {path.read_text() for path in folder(laptop).glob("report*.txt")}
    assert texts == {"the laptop's edit\n", "the desktop's edit\n"}


@pytest.fixture
async def gated_laptop(make_gateway, cdn, store, http, tmp_path):
    """A client whose chunk PUTs pass a gate (tests/gates.py), and a second client of the same user and gateway.

    The test stops the laptop at the gate, so the kill comes in the middle of the
    upload however fast or loaded the machine is (polling for "under way" raced the
    upload's end on a quiet machine).
    """
    gate = await Gate(store.endpoint, methods=("PUT",)).start()
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, s3_public_endpoint=gate.url)
    yield gate, *await laptop_and_desktop(http, tmp_path, gateway.url, gateway.url)
    await gate.stop()


async def test_a_client_killed_during_a_large_upload_converges_after_a_restart(gated_laptop):
    gate, laptop, desktop, api = gated_laptop
    big = write_random(folder(laptop) / "big.bin", 12 * CHUNK + 3 * MIB)
    (folder(laptop) / "small.txt").write_text("small\n")
    gate.hold_after(2)  # two chunks reach the store; the next ones wait at the gate
    process = await laptop.start("sync", str(folder(laptop)), "--once")
    try:
        await gate.holding(1)
        listed = (await api.get("/dropbox/v1/files?limit=100")).body["files"]
        assert [f["status"] for f in listed if f["file_size"] == big.stat().st_size] == ["uploading"], listed
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
        gate.release()  # the held chunks never reach the store; the restarted client's pass
    assert process.returncode == -signal.SIGKILL
    await converge(laptop, desktop)
    assert contents(folder(desktop)) == contents(folder(laptop))
    assert contents(folder(desktop))["big.bin"] == hashlib.sha256(big.read_bytes()).hexdigest()
    remote = await remote_contents(api)
    assert set(remote) == {"big.bin", "small.txt"}


async def test_a_large_file_saved_over_while_it_uploads_is_uploaded_again_whole(gated_laptop):
    """The chunks read before the save reach the store, those read after are refused by it (their checksum is
    the scan's): nothing is committed, the stopped upload is deleted (not left in progress), the next pass
    uploads the new content whole."""
    gate, laptop, desktop, api = gated_laptop
    path = folder(laptop) / "big.bin"
    size = 12 * CHUNK + 3 * MIB
    write_random(path, size)
    gate.hold_after(2)
    process = await laptop.start("sync", str(folder(laptop)), "--once")
    try:
        await gate.holding(4)  # every chunk worker waits at the gate with the chunk it read before the save
        write_random(path, size)  # saved over, in place
        gate.open()
        _, err = await asyncio.wait_for(process.communicate(), 300)  # a guard against a hang
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 12 and "changed since it was fingerprinted" in err.decode(), err.decode()[-2000:]
    listed = (await api.get("/dropbox/v1/files?limit=100")).body["files"]
    assert listed == [], listed  # nothing committed, no upload left in progress
    await converge(laptop, desktop)
    assert contents(folder(desktop))["big.bin"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [f["status"] for f in (await api.get("/dropbox/v1/files?limit=100")).body["files"]] == ["uploaded"]


class Watching:
    """A `dbx --json sync DIR` running in watch mode; its stdout read as events (one JSON object a line)."""

    def __init__(self, dbx: Dbx, process):
        self.dbx = dbx
        self.process = process
        self.seen: list[dict] = []

    async def until(self, wanted, what: str, timeout: float = 120) -> dict:
        """The first event (from now on) for which ``wanted(event)`` holds; fails if the client exits or hangs."""
        async def read() -> dict:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"dbx sync exited ({await self.process.wait()}) waiting for {what}: "
                                         f"{(await self.process.stderr.read()).decode()[-3000:]}")
                event = json.loads(line)
                self.seen.append(event)
                if wanted(event):
                    return event

        try:
            return await asyncio.wait_for(read(), timeout)  # a guard against a hang, not a wait for time to pass
        except TimeoutError:
            raise AssertionError(f"no {what} in {timeout} s; events: {self.seen[-20:]}") from None


def op(action: str, path: str):
    return lambda event: (event.get("event"), event.get("action"), event.get("path")) == ("op", action, path) \
        and event.get("ok")


async def test_two_clients_in_watch_mode_follow_each_other(clients):
    """Both clients keep running: a change on one shows up on the other, from the file system's events on one
    side and the change journal's wait on the other, with no pass asked for."""
    await follow_each_other(*clients)


@pytest.fixture
async def clients_of_two_gateways(make_gateway, cdn, http, tmp_path) -> tuple[Dbx, Dbx, Api]:
    """The laptop's gateway and the desktop's are two, on one database (cluster mode's shape): the desktop's
    wait ends through its own gateway for a change made through the other (LISTEN/NOTIFY on PostgreSQL,
    the journal's tail on SQLite)."""
    first = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)
    second = await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url, port=free_port())
    return await laptop_and_desktop(http, tmp_path, first.url, second.url)


async def test_two_clients_of_two_gateways_in_watch_mode_follow_each_other(clients_of_two_gateways):
    await follow_each_other(*clients_of_two_gateways)


async def follow_each_other(laptop: Dbx, desktop: Dbx, api: Api) -> None:
    """Both start in watch mode; a file, a folder and a rename made on one side while both run reach the other."""
    (folder(laptop) / "before.txt").write_text("there before the clients started\n")
    started = []
    for dbx in (laptop, desktop):
        process = await dbx.start("--json", "sync", str(folder(dbx)))
        started.append(Watching(dbx, process))
    a, b = started
    try:
        # Both are running: the laptop's first pass uploads, the desktop downloads in its first pass or the next.
        await a.until(op("upload", "before.txt"), "the laptop's first upload")
        await b.until(op("download", "before.txt"), "the desktop's first download")
        assert (folder(desktop) / "before.txt").read_text() == "there before the clients started\n"

        (folder(laptop) / "notes").mkdir()
        (folder(laptop) / "notes" / "todo.txt").write_text("written on the laptop while both watch\n")
        await a.until(op("upload", "notes/todo.txt"), "the laptop's upload")
        await b.until(op("download", "notes/todo.txt"), "the desktop's download")
        assert (folder(desktop) / "notes" / "todo.txt").read_text() == "written on the laptop while both watch\n"

        # The other way, and a rename: a move on the server, not a new upload.
        (folder(desktop) / "notes" / "todo.txt").rename(folder(desktop) / "notes" / "done.txt")
        await a.until(op("move", "notes/done.txt"), "the laptop's rename")
        assert (folder(laptop) / "notes" / "done.txt").read_text() == "written on the laptop while both watch\n"
        assert not (folder(laptop) / "notes" / "todo.txt").exists()
        assert not any(event.get("action") == "upload" and event.get("path") == "notes/done.txt"
                       for event in a.seen + b.seen)
    finally:
        for side in started:
            side.process.send_signal(signal.SIGINT)
        for side in started:
            await side.process.wait()
    assert contents(folder(laptop)) == contents(folder(desktop))
    assert set(await remote_contents(api)) == {"before.txt", "notes", "notes/done.txt"}
