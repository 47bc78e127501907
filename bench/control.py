"""Control-path throughput: requests/second and latency of the gateway's hot endpoints.

A separate load-generator process (bench/loadgen.py) drives one gateway
process. ``GET /dropbox/v1/files/{id}`` is measured with the permission and
metadata cache on and off (two gateways, same data shape), for the owner and
for a user the files are shared with. Each figure is the median of several
runs, with min and max.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import aiohttp

from bench.stack import BenchStack, Figure, print_table, ratio, signup
from protocol.fingerprints import file_fingerprint


def random_claim(chunk_size: int, chunks: int = 3, name: str | None = None) -> dict:
    """A claim of ``chunks`` full chunks (made-up fingerprints: no byte is ever sent)."""
    fps = [hashlib.sha256(os.urandom(16)).hexdigest() for _ in range(chunks)]
    return {
        "file_name": name or f"bench-{fps[0][:8]}.bin",
        "file_size": chunk_size * chunks,
        "fingerprint": file_fingerprint(fps),
        "chunk_size": chunk_size,
        "chunks": fps,
    }


async def populate(gateway_url: str, chunk_size: int, uploaded: int, uploading: int) -> dict:
    """An owner with small uploaded files shared with a reader, and some uploads under way."""
    (_, owner), (reader_name, reader) = signup(gateway_url), signup(gateway_url)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {owner}"}) as session:

        async def post(path: str, **kwargs) -> dict:
            async with session.post(gateway_url + path, **kwargs) as response:
                body = await response.json()
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status} {body}")
                return body

        files = []
        for n in range(uploaded):
            form = aiohttp.FormData()
            form.add_field("file_metadata", json.dumps({"file_name": f"bench-{n}.txt", "file_type": "text/plain"}))
            form.add_field("file", os.urandom(1024 + n), filename=f"bench-{n}.txt")
            files.append((await post("/dropbox/v1/files", data=form))["file_id"])
            await post("/dropbox/v1/files/share", json={"file_id": files[-1], "users": [reader_name]})
        uploads = [(await post("/dropbox/v1/files", json=random_claim(chunk_size)))["file_id"] for _ in range(uploading)]
    return {"owner": owner, "reader": reader, "files": files, "uploads": uploads}


def run_program(program: str, scenario: dict, env: dict[str, str] | None = None) -> dict:
    """Run a load program (bench/loadgen.py, bench/s3load.py) as a process of its own; its JSON line of results."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(scenario, handle)
    try:
        out = subprocess.run([sys.executable, "-m", program, handle.name], capture_output=True, text=True, check=True,
                             env=env)
    finally:
        os.unlink(handle.name)
    return json.loads(out.stdout)


def run_load(requests: list[dict], concurrency: int, seconds: float, max_requests: int | None = None) -> dict:
    scenario = {"requests": requests, "concurrency": concurrency, "seconds": seconds}
    if max_requests:
        scenario["max_requests"] = max_requests
    return run_program("bench.loadgen", scenario)


def row_of(name: str, results: list[dict]) -> tuple[str, ...]:
    """A table row: requests/second, p50 and p99 (median, min, max of the runs) and the errors in all."""
    return (name, str(Figure([r["rps"] for r in results])), str(Figure([r["p50_ms"] for r in results])),
            str(Figure([r["p99_ms"] for r in results])), str(sum(r["errors"] for r in results)))


def measure_small_files(stack: BenchStack, token: str, args) -> list[tuple[str, ...]]:
    """Inline uploads of ``--small-kib`` files against boto3 ``put_object`` of as many bytes, same concurrency.

    The two alternate run by run (which goes first too), each from a process of its own, and the ratio is
    taken within each run.
    """
    size = args.small_kib * 1024
    inline = [{"method": "POST", "url": f"{stack.gateway_url}/dropbox/v1/files",
               "headers": {"Authorization": f"Bearer {token}"}, "inline": size}]
    credentials = stack.s3_credentials()
    s3_env = {**os.environ, "AWS_ENDPOINT_URL": credentials["endpoint_url"],
              "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
              "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"]}
    s3_scenario = {"bucket": stack.bucket, "size": size, "concurrency": args.concurrency, "seconds": args.seconds}
    sides: dict[str, list[dict]] = {"inline": [], "boto3": []}
    for run in range(args.runs):
        for side in ("inline", "boto3") if run % 2 == 0 else ("boto3", "inline"):
            sides[side].append(run_load(inline, args.concurrency, args.seconds) if side == "inline"
                               else run_program("bench.s3load", s3_scenario, s3_env))
    for side, results in sides.items():
        if any(r["errors"] for r in results):
            print(f"small files, {side}: answers by status {[r['statuses'] for r in results]}", file=sys.stderr)
    per_run = [mine["rps"] / theirs["rps"] for mine, theirs in zip(sides["inline"], sides["boto3"], strict=True)]
    return [
        (*row_of(f"POST /dropbox/v1/files, inline {args.small_kib} KiB (new content each)", sides["inline"]),
         ratio(per_run)),
        (*row_of(f"boto3 put_object, {args.small_kib} KiB, straight to the store", sides["boto3"]), "1.00x"),
    ]


def measure(name: str, batches: list[list[dict]], args, bounded: bool = False) -> tuple[tuple[str, ...], Figure]:
    results = [
        run_load(batch, args.concurrency, args.seconds, len(batch) if bounded else None) for batch in batches
    ]
    if any(r["errors"] for r in results):
        print(f"{name}: answers by status {[r['statuses'] for r in results]}", file=sys.stderr)
    return row_of(name, results), Figure([r["rps"] for r in results])


def get_requests(stack: BenchStack | SimpleNamespace, data: dict, who: str) -> list[dict]:
    auth = {"Authorization": f"Bearer {data[who]}"}
    return [{"method": "GET", "url": f"{stack.gateway_url}/dropbox/v1/files/{f}", "headers": auth} for f in data["files"]]


def load_options(description: str) -> argparse.ArgumentParser:
    """The options of a control-path load (bench/control.py, bench/cluster.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--files", type=int, default=20, help="files to read and uploads to presign against")
    return parser


def control_options(description: str) -> argparse.ArgumentParser:
    """bench/control.py's options: a load's, and the small files'."""
    parser = load_options(description)
    parser.add_argument("--small-kib", type=int, default=4, help="size of the small files uploaded inline (KiB)")
    return parser


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    args = control_options(__doc__).parse_args(argv)
    rows: list[tuple[str, ...]] = []
    small: list[tuple[str, ...]] = []
    ratios: list[tuple[str, ...]] = []
    cached: dict[str, Figure] = {}
    for cache in ("memory://", "none://"):
        # One owner starts thousands of uploads here: BenchStack runs without the per-user limits.
        with BenchStack(gateway_env={"GATEWAY_CACHE_URL": cache}) as stack:
            data = asyncio.run(populate(stack.gateway_url, stack.chunk_size, args.files, args.files))
            label = "cache on" if cache != "none://" else "cache off"
            if cache != "none://":
                auth = {"Authorization": f"Bearer {data['owner']}"}
                base = stack.gateway_url + "/dropbox/v1/files"
                # Fresh claims for every request: each one starts a new upload in the store.
                claims = [[{"method": "POST", "url": base, "headers": auth, "json": random_claim(stack.chunk_size)}
                           for _ in range(4000)] for _ in range(args.runs)]
                rows.append(measure("POST /dropbox/v1/files", claims, args, bounded=True)[0])
                presign = [{"method": "POST", "url": f"{base}/{f}/upload-urls", "headers": auth} for f in data["uploads"]]
                rows.append(measure("POST .../upload-urls (3 chunks)", [presign] * args.runs, args)[0])
                small = measure_small_files(stack, data["owner"], args)
            for who in ("owner", "reader"):
                row, rps = measure(f"GET /dropbox/v1/files/{{id}}, {who}, {label}", [get_requests(stack, data, who)] * args.runs, args)
                rows.append(row)
                if who in cached:
                    ratios.append((f"GET as {who}: cache on / off", f"{cached[who].median / rps.median:.2f}x"))
                else:
                    cached[who] = rps
    print_table(
        f"Control path: 1 gateway process, load from a separate process, {args.concurrency} connections, "
        f"median of {args.runs} runs of {args.seconds:g}s (min, max)",
        rows,
        ("request", "req/s", "p50 ms", "p99 ms", "errors"),
    )
    print_table("Permission and metadata cache", ratios, ("requests/second", "ratio"))
    print_table(
        f"Small files: inline uploads against boto3 put_object of the same size, {args.concurrency} at a time, "
        f"median of {args.runs} runs of {args.seconds:g}s (min, max); ratio within each run",
        small,
        ("request", "req/s", "p50 ms", "p99 ms", "errors", "req/s to boto3"),
    )
    return rows


if __name__ == "__main__":
    main()
