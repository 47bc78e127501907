"""Moving bytes: our flow against a plain S3 client, and against the machine's SHA-256 speed.

Upload: the real `dbx` command (fingerprint + presigned parallel chunks +
completion) versus boto3's ``upload_file`` of the same file to the same store,
same part size and concurrency. Download: `dbx download` through the CDN tier
versus boto3's ``download_file``. Also: SHA-256 throughput (which bounds the
client), the gateway's CPU seconds per GiB uploaded (read from /proc), a
same-user re-upload (should cost the fingerprinting plus one request), and
the client's peak memory. Each figure is a median of several runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import BenchStack, Figure, print_table, signup
from protocol.fingerprints import fingerprint_stream

MIB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 16 * MIB))
            handle.write(block)
            remaining -= len(block)


def run_dbx(args: list[str], env: dict[str, str]) -> tuple[float, dict, int]:
    """Run the real client; return (seconds, its --json answer, peak RSS in KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "client.cli", *args, "--json", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"dbx {' '.join(args)} failed ({process.returncode}): {err.decode()[-500:]}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    return seconds, (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss


def client_env(stack: BenchStack, home: Path, token_user: str, password: str) -> dict[str, str]:
    env = dict(stack.env, XDG_CONFIG_HOME=str(home), DBX_SERVER=stack.gateway_url, DBX_PASSWORD=password)
    env.pop("GATEWAY_LOG_LEVEL", None)
    subprocess.run(
        [sys.executable, "-m", "client.cli", "login", token_user, "--quiet"], env=env, check=True, capture_output=True
    )
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--chunk-mib", type=int, default=8)
    args = parser.parse_args(argv)
    import boto3
    from boto3.s3.transfer import TransferConfig

    size = args.size_mib * MIB
    chunk = args.chunk_mib * MIB
    with BenchStack(chunk_size=chunk, with_cdn=True) as stack:
        source = stack.root / "source.bin"
        make_file(source, size)
        mib = size / MIB
        s3 = boto3.client("s3", **stack.s3_credentials())
        bucket = stack.env["GATEWAY_S3_BUCKET"]
        transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=args.parallel)

        hashing, ours_up, plain_up, cpu_per_gib, ours_down, plain_down, reupload = [], [], [], [], [], [], []
        peak_rss = []
        for run in range(args.runs):
            started = time.perf_counter()
            with open(source, "rb") as handle:
                fingerprint_stream(handle, chunk)
            hashing.append(mib / (time.perf_counter() - started))

            # A new user each run: the same user would be deduplicated and move no bytes.
            username, password = f"bench-{run}-{os.getpid()}", "bench password"
            signup(stack.gateway_url, username, password)
            env = client_env(stack, stack.root / f"home-{run}", username, password)
            cpu_before = stack.gateway_cpu_seconds()
            seconds, result, rss = run_dbx(["upload", str(source), "--parallel", str(args.parallel)], env)
            cpu_per_gib.append((stack.gateway_cpu_seconds() - cpu_before) / (size / 1024**3))
            ours_up.append(mib / seconds)
            peak_rss.append(rss / 1024)
            file_id = result["file_id"]

            seconds, _, _ = run_dbx(["upload", str(source)], env)
            reupload.append(seconds)

            started = time.perf_counter()
            s3.upload_file(str(source), bucket, f"bench/plain-{run}", Config=transfer)
            plain_up.append(mib / (time.perf_counter() - started))

            target = stack.root / f"download-{run}.bin"
            seconds, _, rss = run_dbx(["download", str(file_id), "-o", str(target)], env)
            ours_down.append(mib / seconds)
            peak_rss.append(rss / 1024)
            target.unlink()

            started = time.perf_counter()
            s3.download_file(bucket, f"bench/plain-{run}", str(target), Config=transfer)
            plain_down.append(mib / (time.perf_counter() - started))
            target.unlink()

        up, down, sha = Figure(ours_up), Figure(plain_up), Figure(hashing)
        rows = [
            ("SHA-256 of the file (bounds the client)", f"{sha} MiB/s", ""),
            ("upload: dbx (fingerprint + chunks + complete)", f"{up} MiB/s", f"{up.median / down.median:.2f}x boto3"),
            ("upload: boto3 upload_file", f"{down} MiB/s", "1.00x"),
            ("download: dbx via CDN (first: miss)", f"{Figure(ours_down)} MiB/s",
             f"{Figure(ours_down).median / Figure(plain_down).median:.2f}x boto3"),
            ("download: boto3 download_file", f"{Figure(plain_down)} MiB/s", "1.00x"),
            ("gateway CPU per GiB uploaded", f"{Figure(cpu_per_gib)} s", ""),
            ("re-upload, same user (no bytes move)", f"{Figure(reupload)} s",
             f"{Figure(reupload).median / (mib / sha.median):.2f}x hashing time"),
            ("client peak memory (RSS)", f"{Figure(peak_rss)} MiB", ""),
        ]
        print_table(
            f"Transfers: {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, {args.parallel} in parallel, "
            f"median of {args.runs} runs (min, max)",
            rows,
            ("measure", "figure", "ratio"),
        )
        shutil.rmtree(stack.root / "cdn" / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
