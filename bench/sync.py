"""``dbx sync``: a first sync against boto3, an idle pass over many files, and watch mode's latency.

    python -m bench sync [--files 2000] [--large 5] [--large-mib 100] [--idle-files 10000]
                         [--changes 50] [--runs 3] [--jobs 4]

- **First sync.** One folder of ``--files`` small files (4-64 KiB of new
  random bytes, in 10 subfolders) and ``--large`` files of ``--large-mib``
  MiB. Each run, in turns (the order rotates): the real ``dbx sync FOLDER
  --once`` as a command of its own, by a new user (a user's own content
  would be deduplicated), the whole command: start-up, the scan (every file
  read and fingerprinted), the plan, folders and files, 4 operations at a
  time, each large file's chunks 4 at a time; and boto3 putting the same
  files into the bucket with the same concurrency: ``--jobs`` threads over
  the files, ``put_object`` for a small file, ``upload_file`` for a large one
  (multipart in the stack's chunk size, 4 parts at a time), its client made
  beforehand (pays no start-up). Files/s and MiB/s of each, the ratio within
  each run, and the CPU seconds each process used (the client: the dbx
  command or this process's boto3 threads; the store; the gateway).
- **Idle pass.** A folder of ``--idle-files`` small files in 100 folders,
  synced once (that first sync's rate is shown too), then ``dbx sync
  --once`` again with nothing to do: the whole command's time and the
  pass's own (the journal read, the scan, the plan), and the bytes of file
  content read, as the client counts them (the scan adds up what it reads
  to fingerprint files: ``bytes_read`` in the pass's ``--json`` event; the
  process's /proc/PID/io would count its Python modules, the index and the
  network too). It must be 0.
- **Watch mode.** Two clients of one user left running (``dbx sync`` without
  ``--once``) on two folders; ``--changes`` times, a new 1 KiB file is
  written on A, and the time is taken until B says the file is in place
  (its ``--json`` download event, written after the file was renamed into
  place), one change at a time; p50 and p99. Also shown: until A says it
  uploaded the file (A's events and debouncing, its pass and the upload).
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.dbx import MIB, Dbx, make_file
from bench.folders import make_folder
from bench.stack import BenchStack, Figure, print_table, ratio
from bench.transfer import PROCESSES, cpu_now


def old_mtimes(root: Path) -> None:
    """Files an hour old: a first pass may trust their mtimes next time (the scan re-reads files written
    within its racy window, as a person's editor may still be writing them)."""
    then = time.time() - 3600
    for path in root.rglob("*"):
        os.utime(path, (then, then))


def make_first_folder(root: Path, files: int, large: int, large_mib: int) -> list[Path]:
    made = make_folder(root, files, 4, 64)
    (root / "large").mkdir(parents=True, exist_ok=True)
    made += [make_file(root / "large" / f"large-{number}.bin", large_mib * MIB) for number in range(large)]
    old_mtimes(root)
    return made


def sync_once(user: Dbx, folder: Path, state: Path, remote: str = "/") -> tuple[float, dict]:
    """``dbx --json sync FOLDER REMOTE --once``: (the whole command's seconds, its pass event)."""
    seconds, last, _ = user("sync", str(folder), remote, "--once", "--state", str(state))
    if last.get("event") != "pass":
        raise RuntimeError(f"dbx sync ended without a pass: {last}")
    return seconds, last


def first_sync(stack: BenchStack, args) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    source = stack.root / "first"
    files = make_first_folder(source, args.files, args.large, args.large_mib)
    total = sum(path.stat().st_size for path in files)
    s3 = boto3.client("s3", **stack.s3_credentials(), config=Config(max_pool_connections=args.jobs * 4))
    s3.list_objects_v2(Bucket=stack.bucket, MaxKeys=1)  # the client's set-up is not timed
    parts = TransferConfig(multipart_threshold=stack.chunk_size, multipart_chunksize=stack.chunk_size,
                           max_concurrency=4)
    pool = ThreadPoolExecutor(args.jobs)

    def boto3_put(run: int) -> None:
        def put(path: Path) -> None:
            key = f"bench/sync-{run}/{path.relative_to(source)}"
            if path.stat().st_size > stack.chunk_size:
                s3.upload_file(str(path), stack.bucket, key, Config=parts)
            else:
                s3.put_object(Bucket=stack.bucket, Key=key, Body=path.read_bytes())
        list(pool.map(put, files))

    def dbx_sync(run: int, user: Dbx) -> None:
        _, last = sync_once(user, source, stack.root / f"first-state-{run}.sqlite3", f"/run-{run}")
        uploaded = last.get("done", {}).get("upload")
        if uploaded != len(files):
            raise RuntimeError(f"dbx sync uploaded {uploaded} of {len(files)} files: {last}")

    seconds: dict[str, list[float]] = {"dbx": [], "boto3": []}
    cpu: dict[str, dict[str, list[float]]] = {side: {name: [] for name in PROCESSES} for side in seconds}
    for run in range(args.runs):
        user = Dbx(stack, stack.root / f"first-home-{run}")  # made before the timing starts
        sides: list[tuple[str, Callable[[], None]]] = [("dbx", functools.partial(dbx_sync, run, user)),
                                                       ("boto3", functools.partial(boto3_put, run))]
        for side, upload in sides[run % 2:] + sides[:run % 2]:
            before = cpu_now(stack)
            started = time.perf_counter()
            upload()
            seconds[side].append(time.perf_counter() - started)
            after = cpu_now(stack)
            for name in PROCESSES:
                cpu[side][name].append(after[name] - before[name])
    pool.shutdown()
    per_run = ratio([theirs / mine for mine, theirs in zip(seconds["dbx"], seconds["boto3"], strict=True)])

    def rates(side: str) -> tuple[str, str, str]:
        return (f"{Figure(seconds[side])} s", f"{Figure([len(files) / s for s in seconds[side]])} files/s",
                f"{Figure([total / MIB / s for s in seconds[side]])} MiB/s")

    print_table(
        f"First sync: {args.files} files of 4-64 KiB and {args.large} of {args.large_mib} MiB ({len(files)} files, "
        f"{total / MIB:,.0f} MiB), median of {args.runs} runs (min, max); ratio of speeds within each run",
        [("dbx sync --once (the whole command: start, scan, plan, folders, files)", *rates("dbx"), per_run),
         (f"boto3, {args.jobs} files at a time, 4 parts at a time, in this process", *rates("boto3"), "")],
        ("first sync", "time", "files", "bytes", "to boto3"),
    )
    print_table(
        f"First sync: CPU seconds by process (median of {args.runs} runs; all share this machine's {os.cpu_count()} "
        "cores)",
        [(label, *(f"{Figure(cpu[side][name]).median:.1f}" for name in PROCESSES),
          f"{sum(Figure(cpu[side][name]).median for name in PROCESSES):.1f}")
         for side, label in (("dbx", "dbx sync --once"), ("boto3", "boto3"))],
        ("first sync", *PROCESSES, "all"),
    )


def idle_pass(stack: BenchStack, args) -> None:
    source = stack.root / "idle"
    files = make_folder(source, args.idle_files, 0, 1, folders=100)
    old_mtimes(source)
    user = Dbx(stack, stack.root / "idle-home")
    state = stack.root / "idle-state.sqlite3"
    first_seconds, first = sync_once(user, source, state)
    if first.get("done", {}).get("upload") != len(files):
        raise RuntimeError(f"the first sync did not upload every file: {first}")
    command, passes, read, hashed = [], [], [], []
    for _ in range(args.runs):
        seconds, last = sync_once(user, source, state)
        if last.get("done"):
            raise RuntimeError(f"an idle pass did something: {last}")
        command.append(seconds)
        passes.append(float(last["seconds"]))
        read.append(int(last["bytes_read"]))
        hashed.append(int(last["files_hashed"]))
    print_table(
        f"Idle pass: {len(files):,} files in 100 folders, already synced; median of {args.runs} runs (min, max)",
        [("dbx sync --once, the whole command", f"{Figure(command)} s"),
         ("its pass (journal read, scan, plan)", f"{Figure([s * 1000 for s in passes])} ms"),
         ("file content read (counted by the client's scan)", f"{max(read)} bytes in {max(hashed)} files (most of any run)"),
         (f"for comparison, the first sync of these {len(files):,} files",
          f"{first_seconds:,.1f} s, {len(files) / first_seconds:,.1f} files/s")],
        ("idle pass", "figure"),
    )


class Watcher:
    """``dbx --json --quiet sync FOLDER --state ...`` left running; its events (stdout, a JSON object a line)."""

    def __init__(self, user: Dbx, folder: Path, state: Path):
        self.user, self.folder, self.state = user, folder, state
        self.events: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()

    async def start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client", "--json", "--quiet", "sync", str(self.folder), "--state", str(self.state),
            env=self.user.env, cwd=self.user.cwd, stdout=asyncio.subprocess.PIPE, stderr=self.log)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            await self.events.put((time.perf_counter(), json.loads(line)))

    async def until(self, wanted: Callable[[dict], bool]) -> float:
        """When (perf_counter) the first event from now on for which ``wanted`` holds was read."""
        while True:
            try:
                at, event = await asyncio.wait_for(self.events.get(), 120)  # a guard against a hang
            except TimeoutError:
                self.log.seek(0)
                raise RuntimeError(f"dbx sync said nothing for 120 s: {self.log.read().decode()[-2000:]}") from None
            if wanted(event):
                return at

    async def stop(self) -> None:
        self.process.terminate()
        await self.process.wait()
        await self.reader
        self.log.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def done(action: str, path: str) -> Callable[[dict], bool]:
    return lambda event: (event.get("event"), event.get("action"), event.get("path"), event.get("ok")) == \
        ("op", action, path, True)


async def watch_latency(stack: BenchStack, args) -> None:
    user = Dbx(stack, stack.root / "watch-home")
    clients = []
    for name in ("a", "b"):
        folder = stack.root / f"watch-{name}"
        folder.mkdir()
        clients.append(Watcher(user, folder, stack.root / f"watch-{name}.sqlite3"))
    a, b = clients
    uploaded, arrived = [], []
    try:
        for client in clients:
            await client.start()
            await client.until(lambda event: event.get("event") == "pass")
        for number in range(args.changes):
            name = f"change-{number:03d}.txt"
            data = os.urandom(1024)
            started = time.perf_counter()
            (a.folder / name).write_bytes(data)
            up = await a.until(done("upload", name))
            down = await b.until(done("download", name))
            if (b.folder / name).read_bytes() != data:
                raise RuntimeError(f"{name} arrived on B with other content")
            uploaded.append((up - started) * 1000)
            arrived.append((down - started) * 1000)
    finally:
        for client in clients:
            await client.stop()
    print_table(
        f"Watch mode: two clients of one user left running; a new 1 KiB file written on A, {args.changes} times, one "
        "at a time (ms from the write)",
        [("until A has uploaded it", f"{statistics.median(uploaded):,.0f}", f"{percentile(uploaded, 0.99):,.0f}",
          f"{max(uploaded):,.0f}"),
         ("until it is complete on B", f"{statistics.median(arrived):,.0f}", f"{percentile(arrived, 0.99):,.0f}",
          f"{max(arrived):,.0f}")],
        ("watch mode", "p50", "p99", "max"),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="small files of the first sync")
    parser.add_argument("--large", type=int, default=5, help="large files of the first sync")
    parser.add_argument("--large-mib", type=int, default=100)
    parser.add_argument("--idle-files", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=50, help="changes timed in watch mode")
    parser.add_argument("--jobs", type=int, default=4, help="boto3's files in flight (dbx sync's are 4)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("first", "idle", "watch"), help="one of the three")
    args = parser.parse_args(argv)
    with BenchStack() as stack:
        if args.only in (None, "first"):
            first_sync(stack, args)
        if args.only in (None, "idle"):
            idle_pass(stack, args)
        if args.only in (None, "watch"):
            asyncio.run(watch_latency(stack, args))


if __name__ == "__main__":
    main()
