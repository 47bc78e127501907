"""A small HTTP load generator, run as its own process so it does not share the gateway's CPU.

    python -m bench.loadgen SCENARIO.json  ->  prints one JSON line of results

The scenario names a list of requests (method, url, headers, json body); each
worker cycles through them for ``seconds`` or ``max_requests``, whichever ends first.
A request with ``"inline": SIZE`` instead of a JSON body is an inline upload
(``POST /dropbox/v1/files`` as multipart form data) of SIZE new random bytes.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp


def results(latencies: list[float], errors: int, statuses: dict[int, int], elapsed: float) -> dict:
    """What a load run prints: requests, errors, answers by status, requests/second, p50 and p99 in ms
    (bench/s3load.py prints the same for its store requests)."""
    latencies = sorted(latencies)

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


def inline_upload(size: int, number: int) -> aiohttp.FormData:
    """An inline upload's form: the file's metadata and ``size`` random bytes (new content every time)."""
    form = aiohttp.FormData()
    name = f"small-{number}-{os.urandom(4).hex()}.bin"
    form.add_field("file_metadata", json.dumps({"file_name": name, "file_type": "application/octet-stream"}))
    form.add_field("file", os.urandom(size), filename=name, content_type="application/octet-stream")
    return form


async def run(scenario: dict) -> dict:
    requests = scenario["requests"]
    concurrency = scenario.get("concurrency", 32)
    seconds = scenario.get("seconds", 5.0)
    max_requests = scenario.get("max_requests", 1_000_000)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    issued = 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors, issued
        position = offset
        while time.perf_counter() < stop_at and issued < max_requests:
            issued += 1
            request = requests[position % len(requests)]
            position += concurrency
            body = {"data": inline_upload(request["inline"], issued)} if "inline" in request else {"json": request.get("json")}
            started = time.perf_counter()
            async with session.request(request["method"], request["url"], headers=request.get("headers"),
                                       **body) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status >= 400:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    started, cpu_started = time.perf_counter(), time.process_time()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
    done = results(latencies, errors, statuses, time.perf_counter() - started)
    # This process's own CPU per request while it made them (its start-up left out): it shares the machine's
    # cores with the gateway, so what it costs bounds what a run can show.
    done["cpu_ms"] = (time.process_time() - cpu_started) * 1000 / len(latencies) if latencies else None
    return done


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        print(json.dumps(asyncio.run(run(json.load(handle)))))
