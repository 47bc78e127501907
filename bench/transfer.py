"""Moving bytes: our flow against a plain S3 client, and against the machine's SHA-256 speed.

Upload: the real `dbx` command (start, fingerprint, presigned parallel chunks,
completion) versus boto3's ``upload_file`` of the same file to the same store,
same part size and concurrency, twice: called in this process with its client
made beforehand (the strict baseline, which pays no start-up), and as a
command of its own (``bench/s3copy.py``: starts Python, imports boto3, makes
the client, as dbx must). Download: `dbx download` through the CDN tier versus
boto3's ``download_file``. Each run times every side, in turns (the order
rotates from run to run), and takes its ratios within the run, so a
neighbour's load on the machine hits all sides alike; the ratios shown are the
median of the runs' ratios, with min and max. Also: SHA-256 throughput, the
gateway's CPU seconds per GiB uploaded (read from /proc), a same-user
re-upload (should cost the fingerprinting plus one request), and the client's
peak memory.
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.dbx import MIB, Dbx, file_sha256, make_file
from bench.stack import BenchStack, Figure, print_table, ratio


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sha256_speed(path: Path) -> float:
    """MiB/s of one thread's SHA-256 over the file (from the page cache)."""
    return path.stat().st_size / MIB / timed(lambda: file_sha256(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench transfer", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--upload-only", action="store_true", help="skip the downloads and the re-upload")
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
        s3 = boto3.client("s3", **stack.s3_credentials())
        transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=args.parallel)

        hashing, cpu_per_gib, reupload, peak_rss = [], [], [], []
        speeds: dict[str, list[float]] = {"dbx up": [], "boto3 up": [], "boto3 command up": [], "dbx down": [],
                                          "boto3 down": [], **{other: [] for other in args.other_client}}
        up_ratios, command_ratios, down_ratios = [], [], []
        other_ratios: dict[str, list[float]] = {other: [] for other in args.other_client}
        credentials = stack.s3_credentials()
        command_env = {**os.environ, "AWS_ENDPOINT_URL": credentials["endpoint_url"],
                       "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"]}
        # Untimed: the store's first multipart upload costs more than the others, whoever makes it.
        warm_up = make_file(stack.root / "warm-up.bin", 2 * chunk)
        Dbx(stack, stack.root / "home-warm-up")("upload", str(warm_up))
        s3.upload_file(str(warm_up), stack.bucket, "bench/warm-up", Config=transfer)
        for run in range(args.runs):
            hashing.append(sha256_speed(source))
            # A new user each run: the same user would be deduplicated and move no bytes.
            dbx = Dbx(stack, stack.root / f"home-{run}")
            result: dict = {}

            def dbx_upload(dbx: Dbx = dbx) -> None:
                nonlocal result
                cpu_before = stack.gateway_cpu_seconds()
                seconds, result, rss = dbx("upload", str(source), "--parallel", str(args.parallel))
                cpu_per_gib.append((stack.gateway_cpu_seconds() - cpu_before) / (size / 1024**3))
                speeds["dbx up"].append(mib / seconds)
                peak_rss.append(rss / 1024)

            def boto3_upload(run: int = run) -> None:
                speeds["boto3 up"].append(mib / timed(
                    lambda: s3.upload_file(str(source), stack.bucket, f"bench/plain-{run}", Config=transfer)))

            def boto3_command_upload(run: int = run) -> None:
                speeds["boto3 command up"].append(mib / timed(lambda: subprocess.run(
                    [sys.executable, "-m", "bench.s3copy", str(source), stack.bucket, f"bench/command-{run}",
                     "--chunk-mib", str(args.chunk_mib), "--parallel", str(args.parallel)], env=command_env,
                    check=True)))

            def other_dbx_upload(checkout: str, run: int = run) -> None:
                other = Dbx(stack, stack.root / f"other-home-{run}-{len(speeds[checkout])}", checkout=Path(checkout))
                speeds[checkout].append(mib / other("upload", str(source), "--parallel", str(args.parallel))[0])

            uploads: list[Callable[[], None]] = [dbx_upload, boto3_upload, boto3_command_upload]
            uploads += [functools.partial(other_dbx_upload, checkout) for checkout in args.other_client]
            for action in uploads[run % len(uploads):] + uploads[:run % len(uploads)]:
                action()
            up_ratios.append(speeds["dbx up"][-1] / speeds["boto3 up"][-1])
            for checkout, ratios in other_ratios.items():
                ratios.append(speeds[checkout][-1] / speeds["boto3 up"][-1])
            command_ratios.append(speeds["dbx up"][-1] / speeds["boto3 command up"][-1])
            if args.upload_only:
                continue

            reupload.append(dbx("upload", str(source))[0])
            target = stack.root / f"download-{run}.bin"

            def dbx_download(dbx: Dbx = dbx, target: Path = target, result: dict = result) -> None:
                seconds, _, rss = dbx("download", "-o", str(target), "--", str(result["file_id"]))
                speeds["dbx down"].append(mib / seconds)
                peak_rss.append(rss / 1024)
                target.unlink()

            def boto3_download(run: int = run, target: Path = target) -> None:
                speeds["boto3 down"].append(mib / timed(
                    lambda: s3.download_file(stack.bucket, f"bench/plain-{run}", str(target), Config=transfer)))
                target.unlink()

            # The CDN tier's first GET of this content is a miss whichever goes first.
            for action in ((dbx_download, boto3_download) if run % 2 == 0 else (boto3_download, dbx_download)):
                action()
            down_ratios.append(speeds["dbx down"][-1] / speeds["boto3 down"][-1])

        sha = Figure(hashing)
        rows = [
            ("SHA-256 of the file, one thread", f"{sha} MiB/s", ""),
            ("upload: dbx (start, fingerprint, chunks, complete)", f"{Figure(speeds['dbx up'])} MiB/s",
             f"{ratio(up_ratios)} boto3"),
            *[(f"upload: dbx of {checkout}", f"{Figure(speeds[checkout])} MiB/s", f"{ratio(ratios)} boto3")
              for checkout, ratios in other_ratios.items()],
            ("upload: boto3 upload_file, in this process", f"{Figure(speeds['boto3 up'])} MiB/s", "1.00x"),
            ("upload: boto3 upload_file, as a command", f"{Figure(speeds['boto3 command up'])} MiB/s",
             f"dbx at {ratio(command_ratios)}"),
        ]
        if not args.upload_only:
            rows += [
                ("download: dbx via CDN (first: miss)", f"{Figure(speeds['dbx down'])} MiB/s",
                 f"{ratio(down_ratios)} boto3"),
                ("download: boto3 download_file", f"{Figure(speeds['boto3 down'])} MiB/s", "1.00x"),
                ("re-upload, same user (no bytes move)", f"{Figure(reupload)} s",
                 f"{Figure(reupload).median / (mib / sha.median):.2f}x one-thread hashing time"),
            ]
        rows += [
            ("gateway CPU per GiB uploaded", f"{Figure(cpu_per_gib)} s", ""),
            ("client peak memory (RSS)", f"{Figure(peak_rss)} MiB", ""),
        ]
        print_table(
            f"Transfers: {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, {args.parallel} in parallel, "
            f"median of {args.runs} runs (min, max); ratios within each run",
            rows,
            ("measure", "figure", "ratio"),
        )
        shutil.rmtree(stack.state / "cdn" / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
