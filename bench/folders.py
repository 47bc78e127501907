"""Many small files: ``dbx upload -r`` of a folder against boto3 putting the same files, files per second.

    python -m bench folders [--files 2000] [--min-kib 4] [--max-kib 64] [--jobs 8] [--runs 3]

One local folder of ``--files`` files of random sizes between ``--min-kib`` and
``--max-kib`` (new random bytes, spread over 10 subfolders). Each run times,
in turns (the order rotates from run to run):

- the real ``dbx upload -r FOLDER --to /run-N -j JOBS`` as a command of its
  own, by a new user each run (a user's own content would be deduplicated):
  the whole command, start-up, folders and files, JOBS requests in flight,
  each a batch of up to 32 small files (``POST /dropbox/v1/files/batch``) that
  the gateway stores into the store and records together (to a gateway
  without that call, as with ``--other-gateway`` of an older checkout, a
  request a file);
- boto3 ``put_object`` of the same files (each read from disk) under keys of
  their relative paths, ``JOBS`` threads with a connection each, its client
  made beforehand in this process (pays no start-up): straight to the store,
  one request a file.

The ratio (dbx / boto3 files per second) is taken within each run; CPU
seconds per 1,000 files are counted per process (the client, the store, the
gateway), which says where the time goes on a machine where all three share
the cores, and what the gateway asked of its database and the store per file
(its own counts, gateway/core/metrics.py). ``--profile DIR`` samples the
gateway with py-spy (on PATH, or ``PY_SPY``; only the thread holding Python's lock, so
what it samples is Python work, not waits) during each ``dbx`` side and
writes DIR/gateway-run-N.txt (collapsed stacks, for flame graph tools); py-spy's
own CPU then counts as the client's.

``--other-gateway DIR`` (may be repeated) also starts the stack of another
checkout of this repository (its launcher, store and gateway) and times this
checkout's ``dbx upload -r`` against it in the same runs, in turns with the
other sides: a before/after of the gateway that the machine's load cannot skew.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.control import checkout_label
from bench.dbx import Dbx
from bench.stack import BenchStack, Figure, print_table, profiled, ratio
from bench.transfer import PROCESSES, cpu_now

SUBFOLDERS = 10


def make_folder(root: Path, files: int, min_kib: int, max_kib: int, seed: int = 22,
                folders: int = SUBFOLDERS) -> list[Path]:
    """``files`` files of random sizes (new random bytes each) in ``folders`` subfolders of ``root``."""
    sizes = random.Random(seed)
    made = []
    for number in range(files):
        folder = root / f"part-{number % folders:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"file-{number:05d}.bin"
        path.write_bytes(os.urandom(sizes.randint(min_kib * 1024, max_kib * 1024)))
        made.append(path)
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench folders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--min-kib", type=int, default=4)
    parser.add_argument("--max-kib", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=8,
                        help="requests in flight, both sides (dbx: -j; boto3: threads) (default 8)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="sample the gateway with py-spy into this directory")
    parser.add_argument("--other-gateway", metavar="DIR", action="append", default=[],
                        help="also time dbx upload -r against the stack of another checkout (DIR) in the same runs")
    args = parser.parse_args(argv)
    import boto3
    from botocore.config import Config

    with contextlib.ExitStack() as stacks:
        stack = stacks.enter_context(BenchStack())
        others = [(checkout_label(Path(other)), stacks.enter_context(BenchStack(checkout=Path(other))))
                  for other in args.other_gateway]
        source = stack.root / "photos"
        files = make_folder(source, args.files, args.min_kib, args.max_kib)
        total = sum(path.stat().st_size for path in files)
        s3 = boto3.client("s3", **stack.s3_credentials(), config=Config(max_pool_connections=args.jobs))
        s3.list_objects_v2(Bucket=stack.bucket, MaxKeys=1)  # the client's set-up is not timed
        pool = ThreadPoolExecutor(args.jobs)

        def boto3_put(run: int) -> None:
            def put(path: Path) -> None:
                s3.put_object(Bucket=stack.bucket, Key=f"bench/folders-{run}/{path.relative_to(source)}",
                              Body=path.read_bytes())
            list(pool.map(put, files))

        def dbx_upload(run: int, user: Dbx) -> None:
            _, last, _ = user("upload", "-r", str(source), "--to", f"/run-{run}", "-j", str(args.jobs))
            summary = last.get("summary") or {}
            if summary.get("done") != args.files:
                raise RuntimeError(f"dbx upload -r uploaded {summary.get('done')} of {args.files} files: {last}")

        # The sides, each with the stack it uploads to: dbx to this checkout's gateway ("dbx"), to each other
        # checkout's (its label), boto3 to this checkout's store.
        targets: dict[str, BenchStack] = {"dbx": stack, **dict(others), "boto3": stack}
        speeds: dict[str, list[float]] = {side: [] for side in targets}
        cpu: dict[str, dict[str, list[float]]] = {side: {name: [] for name in PROCESSES} for side in targets}
        work: dict[str, dict[str, list[float]]] = {side: {"statements": [], "transactions": [], "store": []}
                                                   for side in targets if side != "boto3"}
        for run in range(args.runs):
            uploads: dict[str, Callable[[], None]] = {
                side: functools.partial(dbx_upload, run, Dbx(target, target.root / f"home-{run}"))  # made untimed
                for side, target in targets.items() if side != "boto3"}
            uploads["boto3"] = functools.partial(boto3_put, run)
            sides = list(uploads.items())
            for side, upload in sides[run % len(sides):] + sides[:run % len(sides)]:
                target = targets[side]
                counted = target.work()
                before = cpu_now(target)
                profile = args.profile / f"gateway-run-{run}.txt" if args.profile and side == "dbx" else None
                with profiled(target.pids("gateway")[0], profile):
                    started = time.perf_counter()
                    upload()
                    seconds = time.perf_counter() - started
                after = cpu_now(target)
                speeds[side].append(args.files / seconds)
                for name in PROCESSES:
                    cpu[side][name].append((after[name] - before[name]) / args.files * 1000)
                done = target.work()
                if side in work and counted is not None and done is not None:
                    for name in work[side]:
                        work[side][name].append((done[name] - counted[name]) / args.files)
        pool.shutdown()

    labels = {"dbx": "dbx upload -r (the whole command: start, folders, files)",
              **{label: f"dbx upload -r, gateway of {label}" for label, _ in others},
              "boto3": "boto3 put_object from threads, in this process"}

    def to_boto3(side: str) -> str:
        return ratio([mine / theirs for mine, theirs in zip(speeds[side], speeds["boto3"], strict=True)]) \
            if side != "boto3" else ""

    print_table(
        f"Many small files: {args.files} files of {args.min_kib}-{args.max_kib} KiB ({total / 1024 / 1024:.0f} MiB "
        f"in all, {SUBFOLDERS} folders), {args.jobs} at a time, median of {args.runs} runs (min, max); ratio "
        "within each run",
        [(labels[side], f"{Figure(speeds[side])} files/s", to_boto3(side)) for side in targets],
        ("upload", "figure", "to boto3"),
    )
    print_table(
        f"CPU seconds per 1,000 files, by process (median of {args.runs} runs; all share this machine's "
        f"{os.cpu_count()} cores)",
        [(labels[side].split(" (")[0].replace(" from threads, in this process", ""),
          *(f"{Figure(cpu[side][name]).median:.2f}" for name in PROCESSES),
          f"{sum(Figure(cpu[side][name]).median for name in PROCESSES):.2f}") for side in targets],
        ("upload", *PROCESSES, "all"),
    )
    counted_sides = [side for side in work if work[side]["statements"]]
    if counted_sides:
        print_table(
            f"What the gateway did per file of dbx upload -r, counted by itself (median of {args.runs} runs; "
            "store events included)",
            [(label, *(f"{Figure(work[side][name]).median:.1f}" for side in counted_sides))
             for name, label in (("statements", "SQL statements"),
                                 ("transactions", "database transactions (reads and writes)"),
                                 ("store", "requests to the store"))],
            ("per file", *("this checkout" if side == "dbx" else f"gateway of {side}" for side in counted_sides)),
        )


if __name__ == "__main__":
    main()
