"""Moving bytes: our flow against a plain S3 client, and against the machine's SHA-256 speed.

Upload: the real `dbx` command (start, fingerprint, presigned parallel chunks,
completion) versus boto3's ``upload_file`` of the same file to the same store,
same part size and concurrency, three ways: called in this process with its
client made beforehand (the strict baseline, which pays no start-up); the
same with ``ChecksumAlgorithm=SHA256``, so that the store verifies a SHA-256
of every part as it does for dbx's chunks (the same integrity work: the
baseline that does what dbx must); and as a command of its own
(``bench/s3copy.py``: starts Python, imports boto3, makes the client, as dbx
must). Download: `dbx download` through the CDN tier versus boto3's
``download_file``. Each run times every side, in turns (the order rotates
from run to run), and takes its ratios within the run, so a neighbour's load
on the machine hits all sides alike; the ratios shown are the median of the
runs' ratios, with min and max.

Each upload's CPU seconds are counted per process (the client, the store, the
gateway; from getrusage and /proc): on a machine where all three share the
cores, the upload that needs the least CPU in all wins, and this table says
where each side's time goes. Also: SHA-256 throughput, a same-user re-upload
(should cost the fingerprinting plus one request), and the client's peak
memory.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.dbx import MIB, Dbx, file_sha256, make_file
from bench.stack import BenchStack, Figure, print_table, ratio

GIB = 1024 * MIB
PROCESSES = ("client", "store", "gateway")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sha256_speed(path: Path) -> float:
    """MiB/s of one thread's SHA-256 over the file (from the page cache)."""
    return path.stat().st_size / MIB / timed(lambda: file_sha256(path))


def cpu_now(stack: BenchStack) -> dict[str, float]:
    """CPU seconds used so far by the client (this process and the commands it ran), the store, the gateway."""
    own, commands = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"client": own.ru_utime + own.ru_stime + commands.ru_utime + commands.ru_stime,
            "store": stack.cpu_seconds("store"), "gateway": stack.cpu_seconds("gateway")}


@dataclass
class Side:
    """One way of uploading the file, timed in every run: its speeds and each process's CPU seconds per GiB."""

    label: str
    upload: Callable[[int], None]  # run number -> the file is uploaded (the client is made before: untimed)
    speeds: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in PROCESSES})

    def measure(self, stack: BenchStack, run: int, size: int) -> None:
        before = cpu_now(stack)
        seconds = timed(lambda: self.upload(run))
        after = cpu_now(stack)
        self.speeds.append(size / MIB / seconds)
        for name in PROCESSES:
            self.cpu[name].append((after[name] - before[name]) / (size / GIB))

    def cpu_row(self) -> tuple[str, ...]:
        medians = [statistics.median(self.cpu[name]) for name in PROCESSES]
        return (self.label, *(f"{value:.2f}" for value in medians), f"{sum(medians):.2f}")


def warm_up(stack: BenchStack, s3, transfer, chunk: int) -> None:
    """One untimed upload each way: the store's first multipart upload costs more than the others, whoever makes it."""
    source = make_file(stack.root / "warm-up.bin", 2 * chunk)
    Dbx(stack, stack.root / "home-warm-up")("upload", str(source))
    s3.upload_file(str(source), stack.bucket, "bench-warm-up", Config=transfer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench transfer", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--upload-only", action="store_true", help="skip the downloads and the re-upload")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the untimed uploads before the runs (smoke runs: the first run's figures then "
                             "include the store's first multipart upload)")
    parser.add_argument("--other-client", metavar="DIR", action="append", default=[],
                        help="also time the dbx of another checkout (DIR holds its client/ and protocol/) in the same "
                             "runs: a before/after comparison that the machine's load cannot skew; may be repeated")
    args = parser.parse_args(argv)
    import boto3
    from boto3.s3.transfer import TransferConfig

    size = args.size_mib * MIB
    chunk = args.chunk_mib * MIB
    mib = size / MIB
    with BenchStack(chunk_size=chunk) as stack:
        source = make_file(stack.root / "source.bin", size)
        credentials = stack.s3_credentials()
        s3 = boto3.client("s3", **credentials)
        transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=args.parallel)
        command_env = {**os.environ, "AWS_ENDPOINT_URL": credentials["endpoint_url"],
                       "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"]}
        parallel = ("--parallel", str(args.parallel))
        # A new user for every dbx upload, made before it is timed: the same user would be deduplicated.
        users: dict[tuple[str, int], Dbx] = {}
        uploaded: dict[int, dict] = {}  # run -> this checkout's dbx's answer (the file to download)
        hashing, reupload, peak_rss = [], [], []
        download_speeds: dict[str, list[float]] = {"dbx": [], "boto3": []}

        def dbx_upload(run: int) -> None:
            _, uploaded[run], rss = users["", run]("upload", str(source), *parallel)
            peak_rss.append(rss / 1024)

        def other_dbx_upload(checkout: str) -> Callable[[int], None]:
            def upload(run: int) -> None:
                users[checkout, run]("upload", str(source), *parallel)
            return upload

        def boto3_upload(key: str, **extra: str) -> Callable[[int], None]:
            return lambda run: s3.upload_file(str(source), stack.bucket, f"bench/{key}-{run}", Config=transfer,
                                              ExtraArgs=extra or None)

        def boto3_command(run: int) -> None:
            subprocess.run([sys.executable, "-m", "bench.s3copy", str(source), stack.bucket, f"bench/command-{run}",
                            "--chunk-mib", str(args.chunk_mib), *parallel], env=command_env, check=True)

        dbx = Side("dbx (start, fingerprint, chunks, complete)", dbx_upload)
        baselines = [Side("boto3 upload_file, in this process", boto3_upload("plain")),
                     Side("boto3 upload_file + SHA-256 checksums", boto3_upload("sha256", ChecksumAlgorithm="SHA256")),
                     Side("boto3 upload_file, as a command", boto3_command)]
        sides = [dbx, *(Side(f"dbx of {checkout}", other_dbx_upload(checkout)) for checkout in args.other_client),
                 *baselines]
        clients = {"": None, **{checkout: Path(checkout) for checkout in args.other_client}}

        if not args.no_warm_up:
            warm_up(stack, s3, transfer, chunk)
        for run in range(args.runs):
            hashing.append(sha256_speed(source))
            for name, checkout in clients.items():
                users[name, run] = Dbx(stack, stack.root / f"home-{len(users)}", checkout=checkout)
            for side in sides[run % len(sides):] + sides[:run % len(sides)]:
                side.measure(stack, run, size)
            if args.upload_only:
                continue

            reupload.append(users["", run]("upload", str(source))[0])
            target = stack.root / f"download-{run}.bin"
            downloads = {"dbx": 0.0, "boto3": 0.0}

            def dbx_download(run: int = run, target: Path = target, downloads: dict = downloads) -> None:
                downloads["dbx"], _, rss = users["", run]("download", "-o", str(target), "--",
                                                         str(uploaded[run]["file_id"]))
                peak_rss.append(rss / 1024)
                target.unlink()

            def boto3_download(run: int = run, target: Path = target, downloads: dict = downloads) -> None:
                downloads["boto3"] = timed(
                    lambda: s3.download_file(stack.bucket, f"bench/plain-{run}", str(target), Config=transfer))
                target.unlink()

            # The CDN tier's first GET of this content is a miss whichever goes first.
            for action in ((dbx_download, boto3_download) if run % 2 == 0 else (boto3_download, dbx_download)):
                action()
            for name, seconds in downloads.items():
                download_speeds[name].append(mib / seconds)

        print_table(
            f"Transfers: {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, {args.parallel} in parallel, "
            f"median of {args.runs} runs (min, max); ratios within each run",
            [("SHA-256 of the file, one thread", f"{Figure(hashing)} MiB/s", "", "", ""),
             *upload_rows(sides, baselines),
             *([] if args.upload_only else download_rows(download_speeds, reupload, mib / Figure(hashing).median)),
             ("client peak memory (RSS)", f"{Figure(peak_rss)} MiB", "", "", "")],
            ("measure", "figure", "to boto3", "to boto3 + SHA-256", "to boto3 command"),
        )
        print_table(
            f"CPU seconds per GiB uploaded, by process (median of {args.runs} runs; all share this machine's "
            f"{os.cpu_count()} cores)", [side.cpu_row() for side in sides], ("upload", *PROCESSES, "all"))
        shutil.rmtree(stack.state / "cdn" / "cache", ignore_errors=True)


def per_run(side: Side, baseline: Side) -> str:
    return ratio([mine / theirs for mine, theirs in zip(side.speeds, baseline.speeds, strict=True)])


def upload_rows(sides: list[Side], baselines: list[Side]) -> list[tuple[str, ...]]:
    """Each upload's speed, and its ratio to each baseline (per run; median, min, max)."""
    return [(f"upload: {side.label}", f"{Figure(side.speeds)} MiB/s",
             *("" if side is baseline else per_run(side, baseline) for baseline in baselines)) for side in sides]


def download_rows(speeds: dict[str, list[float]], reupload: list[float], hashing_seconds: float) -> list[tuple[str, ...]]:
    return [
        ("download: dbx via CDN (first: miss)", f"{Figure(speeds['dbx'])} MiB/s",
         ratio([mine / theirs for mine, theirs in zip(speeds["dbx"], speeds["boto3"], strict=True)]), "", ""),
        ("download: boto3 download_file", f"{Figure(speeds['boto3'])} MiB/s", "", "", ""),
        ("re-upload, same user (no bytes move)", f"{Figure(reupload)} s",
         f"{Figure(reupload).median / hashing_seconds:.2f}x one-thread hashing time", "", ""),
    ]


if __name__ == "__main__":
    main()
