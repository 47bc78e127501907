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

from bench.stack import BenchStack, Figure, print_table, signup
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


def run_load(requests: list[dict], concurrency: int, seconds: float, max_requests: int | None = None) -> dict:
    scenario = {"requests": requests, "concurrency": concurrency, "seconds": seconds}
    if max_requests:
        scenario["max_requests"] = max_requests
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(scenario, handle)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.loadgen", handle.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(handle.name)
    return json.loads(out.stdout)


def measure(name: str, batches: list[list[dict]], args, bounded: bool = False) -> tuple[tuple[str, ...], Figure]:
    results = [
        run_load(batch, args.concurrency, args.seconds, len(batch) if bounded else None) for batch in batches
    ]
    errors = sum(r["errors"] for r in results)
    if errors:
        print(f"{name}: answers by status {[r['statuses'] for r in results]}", file=sys.stderr)
    rps = Figure([r["rps"] for r in results])
    row = (name, str(rps), str(Figure([r["p50_ms"] for r in results])), str(Figure([r["p99_ms"] for r in results])), str(errors))
    return row, rps


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


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    args = load_options(__doc__).parse_args(argv)
    rows: list[tuple[str, ...]] = []
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
    return rows


if __name__ == "__main__":
    main()
