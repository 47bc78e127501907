"""Control-path throughput: requests/second and latency of the gateway's hot endpoints.

A separate load-generator process (bench/loadgen.py) drives one gateway
process; each figure is the median of several runs, with min and max.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

from bench.stack import BenchStack, Figure, print_table, signup
from gateway.fingerprints import file_fingerprint


def random_claim(chunk_size: int, chunks: int = 3) -> dict:
    fps = [hashlib.sha256(os.urandom(16)).hexdigest() for _ in range(chunks)]
    return {
        "file_name": f"bench-{fps[0][:8]}.bin",
        "file_size": chunk_size * chunks,
        "fingerprint": file_fingerprint(fps),
        "chunk_size": chunk_size,
        "chunks": fps,
    }


def post_json(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


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


def scenarios(stack: BenchStack, token: str, files: int, claims: int) -> dict[str, list[dict]]:
    auth = {"Authorization": f"Bearer {token}"}
    base = stack.gateway_url + "/dropbox/v1/files"
    created = [post_json(base, token, random_claim(stack.chunk_size)) for _ in range(files)]
    return {
        "POST /dropbox/v1/files": [
            {"method": "POST", "url": base, "headers": auth, "json": random_claim(stack.chunk_size)} for _ in range(claims)
        ],
        "POST .../upload-urls": [
            {"method": "POST", "url": f"{base}/{f['file_id']}/upload-urls", "headers": auth} for f in created
        ],
        "GET /dropbox/v1/files/{id}": [
            {"method": "GET", "url": f"{base}/{f['file_id']}", "headers": auth} for f in created
        ],
    }


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--files", type=int, default=50, help="uploads to read and presign against")
    args = parser.parse_args(argv)
    rows = []
    with BenchStack() as stack:
        token = signup(stack.gateway_url)
        for name, requests in scenarios(stack, token, args.files, claims=20_000).items():
            results = []
            for run in range(args.runs):
                # Each run of POST /files takes fresh claims, so each request starts a new upload.
                batch = requests[run::args.runs] if name.startswith("POST /dropbox/v1/files") else requests
                results.append(run_load(batch, args.concurrency, args.seconds, len(batch) if batch is not requests else None))
            errors = sum(r["errors"] for r in results)
            if errors:
                print(f"{name}: answers by status {[r['statuses'] for r in results]}", file=sys.stderr)
            rows.append(
                (
                    name,
                    str(Figure([r["rps"] for r in results])),
                    str(Figure([r["p50_ms"] for r in results])),
                    str(Figure([r["p99_ms"] for r in results])),
                    str(errors),
                )
            )
    print_table(
        f"Control path: 1 gateway process, {args.concurrency} concurrent connections, {args.runs} runs of {args.seconds:g}s",
        rows,
        ("request", "req/s", "p50 ms", "p99 ms", "errors"),
    )
    return rows


if __name__ == "__main__":
    main()
