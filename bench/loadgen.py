"""A small HTTP load generator, run as its own process so it does not share the gateway's CPU.

    python -m bench.loadgen SCENARIO.json  ->  prints one JSON line of results

The scenario names a list of requests (method, url, headers, json body); each
worker cycles through them for ``seconds`` or ``max_requests``, whichever ends first.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


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
            started = time.perf_counter()
            async with session.request(request["method"], request["url"], headers=request.get("headers"),
                                       json=request.get("json")) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status >= 400:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

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


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        print(json.dumps(asyncio.run(run(json.load(handle)))))
