"""The change journal's waits (GET /dropbox/v1/changes/wait): what open waits cost, and how soon they wake.

One gateway process on SQLite (bench/stack.py's local stack): ``--waits`` waits held open at once on it
(one user's, each its own connection from this process), the gateway's resident memory before and
while they are open, ``/healthz`` latency (the event loop's) before and meanwhile, and the time from one
change to every wait answered. Then the cluster as ``./dev up --cluster`` runs it (PostgreSQL, Redis,
two gateway processes): a wait on the first gateway, a change through the second (``POST
/dropbox/v1/folders``), ``--rounds`` times; the wake latency is from sending the change to the wait's
answer (so it includes the change's own request, shown beside it).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp

from bench.stack import BenchStack, print_table, signup
from deploy.postgres import PostgresCluster
from deploy.redis_server import LocalRedis
from deploy.supervisor import GatewayProcess
from storage.embedded import free_port

API = "/dropbox/v1"


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def open_waits(session: aiohttp.ClientSession, metrics_url: str) -> int:
    async with session.get(f"{metrics_url}/metrics") as answer:
        text = await answer.text()
    return int(float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("gateway_change_waits_open "))))


async def until_open(session: aiohttp.ClientSession, metrics_url: str, count: int) -> None:
    while await open_waits(session, metrics_url) < count:
        await asyncio.sleep(0.01)


async def cursor_of(session: aiohttp.ClientSession, url: str, auth: dict) -> str:
    async with session.get(f"{url}{API}/changes?limit=1000", headers=auth) as answer:
        body = await answer.json()
    while body["has_more"]:
        async with session.get(f"{url}{API}/changes", params={"cursor": body["cursor"]}, headers=auth) as answer:
            body = await answer.json()
    return body["cursor"]


async def wait(session: aiohttp.ClientSession, url: str, auth: dict, cursor: str) -> bool:
    async with session.get(f"{url}{API}/changes/wait", params={"cursor": cursor, "timeout": "120"},
                           headers=auth) as answer:
        assert answer.status == 200, await answer.text()
        return (await answer.json())["changes"]


async def make_folder(session: aiohttp.ClientSession, url: str, auth: dict) -> None:
    async with session.post(f"{url}{API}/folders", json={"path": f"/bench-{time.monotonic_ns()}"},
                            headers=auth) as answer:
        assert answer.status == 201, await answer.text()


async def healthz_ms(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(f"{url}/healthz") as answer:
            await answer.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def many_waits(url: str, metrics_url: str, pid: int, args) -> list[tuple[str, ...]]:
    _, token = signup(url)
    auth = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        cursor = await cursor_of(session, url, auth)
        quiet = await healthz_ms(session, url, args.healthz)
        before = resident_mib(pid)
        waits = [asyncio.create_task(wait(session, url, auth, cursor)) for _ in range(args.waits)]
        await until_open(session, metrics_url, args.waits)
        during = resident_mib(pid)
        busy = await healthz_ms(session, url, args.healthz)
        still = await open_waits(session, metrics_url)
        started = time.perf_counter()
        await make_folder(session, url, auth)
        answers = await asyncio.gather(*waits)
        woken = time.perf_counter() - started
    assert all(answers) and still == args.waits
    return [
        ("gateway resident memory (MiB)", f"{before:.1f}", f"{during:.1f}",
         f"+{(during - before) * 1024 / args.waits:.1f} KiB per wait"),
        ("GET /healthz p50 ms", f"{statistics.median(quiet):.2f}", f"{statistics.median(busy):.2f}", ""),
        ("GET /healthz p99 ms", f"{percentile(quiet, 0.99):.2f}", f"{percentile(busy, 0.99):.2f}", ""),
        ("one change -> every wait answered (ms)", "", f"{woken * 1000:.0f}", f"{args.waits} waits woken"),
    ]


@contextlib.contextmanager
def cluster() -> Iterator[SimpleNamespace]:
    """PostgreSQL, Redis and two gateway processes (as ``./dev up --cluster``), each with its metrics port."""
    postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="bench-postgres-")), sync_init=False)
    redis_root = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    redis = LocalRedis(redis_root)
    second: GatewayProcess | None = None
    try:
        postgres.start()
        redis.start()
        first_metrics, second_metrics, second_port = free_port(), free_port(), free_port()
        env = {"GATEWAY_DATABASE_URL": postgres.url, "GATEWAY_CACHE_URL": redis.url,
               "GATEWAY_METRICS_PORT": str(first_metrics)}
        with BenchStack(gateway_env=env) as stack:
            second_env = dict(stack.gateway_environment(), GATEWAY_PORT=str(second_port),
                              GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{second_port}",
                              GATEWAY_METRICS_PORT=str(second_metrics))
            second = GatewayProcess(second_env, stack.root / "gateway-2.log", name="gateway 2").start()
            yield SimpleNamespace(first=stack.gateway_url, first_metrics=f"http://127.0.0.1:{first_metrics}",
                                  second=f"http://127.0.0.1:{second_port}")
    finally:
        if second is not None:
            second.stop()
        redis.stop()
        postgres.destroy()
        shutil.rmtree(redis_root, ignore_errors=True)


async def wake_latency(setup: SimpleNamespace, rounds: int) -> list[tuple[str, ...]]:
    _, token = signup(setup.first)
    auth = {"Authorization": f"Bearer {token}"}
    woken, changes = [], []
    async with aiohttp.ClientSession() as session:
        cursor = await cursor_of(session, setup.first, auth)
        for _ in range(rounds):
            waiting = asyncio.create_task(wait(session, setup.first, auth, cursor))
            await until_open(session, setup.first_metrics, 1)
            started = time.perf_counter()
            await make_folder(session, setup.second, auth)
            changes.append((time.perf_counter() - started) * 1000)
            assert await waiting
            woken.append((time.perf_counter() - started) * 1000)
            cursor = await cursor_of_changes(session, setup.first, auth, cursor)
    return [
        ("change through gateway 2 -> wait on gateway 1 answered", f"{statistics.median(woken):.1f}",
         f"{percentile(woken, 0.99):.1f}", f"{max(woken):.1f}"),
        ("(the change's own request, POST /dropbox/v1/folders)", f"{statistics.median(changes):.1f}",
         f"{percentile(changes, 0.99):.1f}", f"{max(changes):.1f}"),
    ]


async def cursor_of_changes(session: aiohttp.ClientSession, url: str, auth: dict, cursor: str) -> str:
    """The cursor after every change since ``cursor``."""
    while True:
        async with session.get(f"{url}{API}/changes", params={"cursor": cursor}, headers=auth) as answer:
            body = await answer.json()
        cursor = body["cursor"]
        if not body["has_more"]:
            return cursor


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waits", type=int, default=2000, help="waits open at once on one gateway")
    parser.add_argument("--healthz", type=int, default=200, help="GET /healthz requests timed per phase")
    parser.add_argument("--rounds", type=int, default=200, help="wake-ups timed across two gateways")
    args = parser.parse_args(argv)
    metrics_port = free_port()
    with BenchStack(gateway_env={"GATEWAY_METRICS_PORT": str(metrics_port)}) as stack:
        [pid] = stack.pids("gateway")
        rows = asyncio.run(many_waits(stack.gateway_url, f"http://127.0.0.1:{metrics_port}", pid, args))
    print_table(f"{args.waits} change waits open on one gateway (SQLite), one user, each its own connection",
                rows, ("figure", "no waits", f"{args.waits} waits open", "note"))
    with cluster() as setup:
        latency = asyncio.run(wake_latency(setup, args.rounds))
    print_table(f"Wake-up across two gateway processes (PostgreSQL LISTEN/NOTIFY), {args.rounds} rounds",
                latency, ("from the change sent to", "p50 ms", "p99 ms", "max ms"))
    return rows + latency


if __name__ == "__main__":
    main()
