"""What one user's largest uploads cost the gateway (issue 17, item 2), through the public API only.

    python -m bench.limits [--uploads 40] [--chunks 5120] [--files 1000] [--runs 3]

1. Presigning never holds the event loop for long: ``/healthz`` latency while
   ``--uploads`` concurrent ``upload-urls`` calls run, each for every chunk of
   a ``--chunks``-chunk upload (5,120 chunks of 8 MiB: the 40 GiB maximum),
   against ``/healthz`` latency at rest, measured in the same run. A separate
   process samples ``/healthz`` one request at a time.
2. The size of a listing page of ``--files`` such files (``GET
   /dropbox/v1/files?limit=1000``, no chunk arrays since contract v1.1) against
   the same files' whole objects (``GET /dropbox/v1/files/{id}``, chunks
   included: what a listing page held before).

The per-user limits are off in this gateway (``GATEWAY_MAX_UPLOADS_IN_PROGRESS``
and ``GATEWAY_USER_QUOTA_BYTES`` 0): one user starts every upload.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import statistics
import time
from urllib.parse import urlsplit

import aiohttp

from bench.control import random_claim
from bench.stack import BenchStack, Figure, print_table, signup



def sample_healthz(url: str, stop, results) -> None:
    """In a process of its own: GET /healthz one at a time until ``stop`` is set; the latencies in ms."""
    parts = urlsplit(url)
    latencies = []
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    while not stop.is_set():
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    results.put(latencies)


class Sampler:
    """/healthz latencies from another process while a block runs."""

    def __init__(self, url: str):
        self.stop = multiprocessing.Event()
        self.results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=sample_healthz, args=(url, self.stop, self.results))
        self.latencies: list[float] = []

    def __enter__(self) -> Sampler:
        self.process.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.latencies = self.results.get(timeout=600)
        self.process.join(30)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def start_uploads(session: aiohttp.ClientSession, base: str, auth: dict, claims: list[dict]) -> list[str]:
    limit = asyncio.Semaphore(4)

    async def start(claim: dict) -> str:
        async with limit, session.post(f"{base}/dropbox/v1/files", json=claim, headers=auth) as response:
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(f"POST /dropbox/v1/files: {response.status} {body}")
            return body["file_id"]

    return list(await asyncio.gather(*(start(claim) for claim in claims)))


async def presign_all(session: aiohttp.ClientSession, base: str, auth: dict, file_ids: list[str]) -> tuple[float, int]:
    """Every upload's upload-urls at once; (seconds until the last answered, URLs handed out)."""

    async def urls(file_id: str) -> int:
        async with session.post(f"{base}/dropbox/v1/files/{file_id}/upload-urls", headers=auth) as response:
            body = await response.json()
            assert response.status == 200, body
            return len(body["urls"])

    started = time.perf_counter()
    counts = await asyncio.gather(*(urls(file_id) for file_id in file_ids))
    return time.perf_counter() - started, sum(counts)


async def measure_presigning(stack: BenchStack, args) -> list[tuple[str, ...]]:
    _, token = signup(stack.gateway_url)
    auth = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        claims = [random_claim(stack.chunk_size, args.chunks, f"big-{n}.bin") for n in range(args.uploads)]
        file_ids = await start_uploads(session, stack.gateway_url, auth, claims)
        rest, loaded, walls, per_second = [], [], [], []
        for _ in range(args.runs):
            with Sampler(stack.gateway_url) as at_rest:
                await asyncio.sleep(args.rest_seconds)
            rest.append(at_rest.latencies)
            with Sampler(stack.gateway_url) as under_load:
                await asyncio.sleep(0.3)  # the sampler's first requests are under way
                wall, count = await presign_all(session, stack.gateway_url, auth, file_ids)
            loaded.append(under_load.latencies)
            walls.append(wall)
            per_second.append(count / wall)
    rows: list[tuple[str, ...]] = []
    for label, runs in (("/healthz at rest", rest), (f"/healthz during {args.uploads} upload-urls calls", loaded)):
        rows.append((
            label,
            str(Figure([statistics.median(run) for run in runs])),
            str(Figure([percentile(run, 0.99) for run in runs])),
            str(Figure([max(run) for run in runs])),
        ))
    ratio = statistics.median(statistics.median(run) for run in loaded) / statistics.median(statistics.median(run) for run in rest)
    rows.append(("p50 under load / at rest", f"{ratio:.2f}x", "", ""))
    print_table(
        f"Presigning beside other requests: {args.uploads} concurrent upload-urls calls of {args.chunks} chunks each "
        f"(all {args.uploads * args.chunks:,} URLs in {Figure(walls)} s, {Figure(per_second)} URLs/s), "
        f"median of {args.runs} runs (min, max)",
        rows,
        ("request", "p50 ms", "p99 ms", "max ms"),
    )
    return rows


async def measure_listing(stack: BenchStack, args) -> list[tuple[str, ...]]:
    _, token = signup(stack.gateway_url)
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        claims = (random_claim(stack.chunk_size, args.chunks, f"listed-{n}.bin") for n in range(args.files))
        file_ids = []
        for batch_start in range(0, args.files, 50):  # claims of 5,120 fingerprints are ~350 KB each
            batch = [next(claims) for _ in range(min(50, args.files - batch_start))]
            file_ids += await start_uploads(session, stack.gateway_url, auth, batch)
        async with session.get(f"{stack.gateway_url}/dropbox/v1/files?limit=1000", headers=auth) as response:
            listing = await response.read()
            assert response.status == 200
        whole = []
        for file_id in file_ids[:: max(1, len(file_ids) // 10)]:  # every file has the same shape: a sample
            async with session.get(f"{stack.gateway_url}/dropbox/v1/files/{file_id}", headers=auth) as response:
                whole.append(len(await response.read()))
    per_file_before = statistics.median(whole)
    before = per_file_before * len(file_ids)
    after = len(listing)
    rows: list[tuple[str, ...]] = [
        ("with chunk arrays (before)", f"{before / 1e6:,.1f} MB", f"{per_file_before / 1e3:,.1f} KB"),
        ("without (contract v1.1)", f"{after / 1e6:,.3f} MB", f"{after / len(file_ids) / 1e3:,.2f} KB"),
        ("before / after", f"{before / after:,.0f}x", ""),
    ]
    print_table(
        f"Listing page: {len(file_ids)} files of {args.chunks} chunks each (before: each file's object with its chunks, as listed before)",
        rows,
        ("GET /dropbox/v1/files?limit=1000", "page", "per file"),
    )
    return rows


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=40, help="concurrent upload-urls calls")
    parser.add_argument("--chunks", type=int, default=5120, help="chunks per upload")
    parser.add_argument("--files", type=int, default=1000, help="files in the listing page")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rest-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    # One stack for both: the listing comes after the presigning is measured, by a user of its own, and
    # what it measures (bytes of a page) does not depend on what else the database holds.
    with BenchStack() as stack:
        return asyncio.run(measure_presigning(stack, args)) + asyncio.run(measure_listing(stack, args))


if __name__ == "__main__":
    main()
