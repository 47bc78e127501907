"""The control path at scale: 1 gateway on SQLite against 2 gateways on PostgreSQL behind the balancer.

Both setups run in the same invocation, on the same machine, with the same
requests from a separate load-generator process (bench/loadgen.py, through
bench/control.py's helpers): starting uploads, presigning chunks, reading a
file's metadata. The baseline is the default deployment: one gateway process
on SQLite with its in-process cache. The cluster is what ``./dev up --cluster``
runs: a private PostgreSQL, Redis as the shared cache, two gateway processes
and nginx in front (deploy/). The figures are ratios (cluster / baseline):
on one machine the two gateways share its cores with PostgreSQL, Redis, nginx
and the load generator, so what the ratio shows is the cost or gain of the
cluster's parts per request, not a machine added.
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from dataclasses import dataclass
from types import SimpleNamespace
from collections.abc import Iterator

from bench.control import TIMINGS, get_requests, load_options, measure, populate, random_claim
from bench.stack import BenchStack, Figure, print_table
from deploy.balancer import start_balancer
from deploy.postgres import PostgresCluster
from deploy.redis_server import LocalRedis
from deploy.supervisor import GatewayProcess
from storage.embedded import free_port

SCENARIOS = ("POST /dropbox/v1/files", "POST .../upload-urls (3 chunks)", "GET /dropbox/v1/files/{id}, owner")
# Statements the counting itself sends, or that a new connection's driver sends once (asyncpg's type
# introspection): not the requests' work.
NOT_COUNTED = ("pg_stat_statements", "pg_catalog")
REDIS_OWN_COMMANDS = {"info", "auth", "hello", "client", "ping"}


@dataclass
class ServerCounters:
    """What PostgreSQL and Redis did, counted by the servers themselves (negligible cost, so the timed
    runs are the counted ones): statements executed (pg_stat_statements' calls, BEGIN and COMMIT
    included) and Redis commands (INFO commandstats). Each is a round trip from a gateway, but for
    commands sent in one pipeline and a statement asyncpg prepares before its first run."""

    postgres_url: str
    redis_url: str

    async def _snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        import asyncpg
        import redis.asyncio as aioredis

        connection = await asyncpg.connect(self.postgres_url)
        try:
            excluded = " AND ".join(f"query NOT LIKE '%{text}%'" for text in NOT_COUNTED)
            rows = await connection.fetch(
                f"SELECT query, sum(calls)::bigint AS calls FROM pg_stat_statements WHERE {excluded} GROUP BY query")
        finally:
            await connection.close()
        client = aioredis.from_url(self.redis_url)
        try:
            stats = await client.info("commandstats")
        finally:
            await client.aclose()
        commands = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()
                    if name.removeprefix("cmdstat_").split("|")[0] not in REDIS_OWN_COMMANDS}
        return {row["query"]: row["calls"] for row in rows}, commands

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """Calls so far: PostgreSQL's by statement text, Redis's by command."""
        return asyncio.run(self._snapshot())

    async def _enable(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.postgres_url)
        try:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await connection.close()

    def enable(self) -> ServerCounters:
        asyncio.run(self._enable())
        return self


@contextlib.contextmanager
def single_gateway() -> Iterator[SimpleNamespace]:
    """The baseline: bench/stack.py's one gateway process on SQLite, in-process cache."""
    with BenchStack(gateway_env={"GATEWAY_CACHE_URL": "memory://"}) as stack:
        yield SimpleNamespace(gateway_url=stack.gateway_url, chunk_size=stack.chunk_size, counters=None)


@contextlib.contextmanager
def two_gateways() -> Iterator[SimpleNamespace]:
    """PostgreSQL, Redis, two gateway processes and the load balancer, as ``./dev up --cluster`` runs them."""
    # A directory of its own under /tmp: as root, PostgreSQL runs as the postgres user, who must reach it.
    postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="bench-postgres-")), sync_init=False,
                               settings={"shared_preload_libraries": "pg_stat_statements"})
    redis_root = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    redis = LocalRedis(redis_root)
    gateways: list[GatewayProcess] = []
    balancer = None
    try:
        postgres.start()
        redis.start()
        env = {"GATEWAY_DATABASE_URL": postgres.url, "GATEWAY_CACHE_URL": redis.url}
        with BenchStack(gateway_env=env) as stack:
            second_port = free_port()
            second_env = dict(stack.gateway_environment(), GATEWAY_PORT=str(second_port), GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{second_port}")
            gateways.append(GatewayProcess(second_env, stack.root / "gateway-2.log", name="gateway 2").start())
            balancer = start_balancer(stack.root / "lb", free_port(), [stack.gateway_port, second_port])
            counters = ServerCounters(postgres.url, redis.url).enable()
            yield SimpleNamespace(gateway_url=balancer.url, chunk_size=stack.chunk_size, counters=counters)
    finally:
        if balancer is not None:
            balancer.stop()
        for gateway in gateways:
            gateway.stop()
        redis.stop()
        postgres.destroy()
        shutil.rmtree(redis_root, ignore_errors=True)


def since(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Calls made between two snapshots, by statement or command (none left out)."""
    return {name: calls - before.get(name, 0) for name, calls in after.items() if calls > before.get(name, 0)}


def measure_setup(setup: SimpleNamespace, args) -> list[tuple[tuple[str, ...], Figure, tuple[str, str], list[str]]]:
    """The three control-path scenarios against ``setup.gateway_url``: (table row, req/s, PostgreSQL
    statements and Redis commands per request, the most frequent statements per request) each;
    "-" where the setup has neither."""
    data = asyncio.run(populate(setup.gateway_url, setup.chunk_size, args.files, args.files))
    auth = {"Authorization": f"Bearer {data['owner']}"}
    base = setup.gateway_url + "/dropbox/v1/files"
    claims = [[{"method": "POST", "url": base, "headers": auth, "json": random_claim(setup.chunk_size)}
               for _ in range(args.claims)] for _ in range(args.runs)]
    presign = [{"method": "POST", "url": f"{base}/{f}/upload-urls", "headers": auth} for f in data["uploads"]]
    loads = [(claims, True), ([presign] * args.runs, False), ([get_requests(setup, data, "owner")] * args.runs, False)]
    measured = []
    for name, (batches, bounded) in zip(SCENARIOS, loads, strict=True):
        before = setup.counters.snapshot() if setup.counters else None
        row, rps, results = measure(name, batches, args, bounded=bounded)
        per_request, top = ("-", "-"), []
        if before is not None:
            after, requests = setup.counters.snapshot(), sum(r["requests"] for r in results)
            statements, commands = since(after[0], before[0]), since(after[1], before[1])
            per_request = (f"{sum(statements.values()) / requests:.1f}", f"{sum(commands.values()) / requests:.1f}")
            top = [f"{calls / requests:5.2f}  {' '.join(query.split())[:110]}"
                   for query, calls in sorted(statements.items(), key=lambda item: -item[1])[:args.top_statements]]
        measured.append((row, rps, per_request, top))
    return measured


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = load_options(__doc__)
    parser.add_argument("--claims", type=int, default=4000, help="upload starts per run at most")
    parser.add_argument("--top-statements", type=int, default=0, metavar="N",
                        help="also list each scenario's N most frequent PostgreSQL statements (calls per request)")
    args = parser.parse_args(argv)
    with single_gateway() as setup:
        single = measure_setup(setup, args)
    with two_gateways() as setup:
        cluster = measure_setup(setup, args)
    rows = []
    for name, (base_row, base_rps, _, _), (cluster_row, cluster_rps, counted, _) in zip(SCENARIOS, single, cluster,
                                                                                       strict=True):
        # Of bench/control.py's row only its timings and errors: its own counts of work and CPU come after
        # them (the servers' counts stand here instead).
        rows.append((f"{name}: 1 gateway, SQLite", *base_row[TIMINGS], "1.00x", "-", "-"))
        rows.append((f"{name}: 2 gateways, PostgreSQL, balancer", *cluster_row[TIMINGS],
                     f"{cluster_rps.median / base_rps.median:.2f}x", *counted))
    print_table(
        f"Control path at scale: 1 gateway on SQLite vs 2 gateways on PostgreSQL + Redis behind nginx, "
        f"{args.concurrency} connections, median of {args.runs} runs of {args.seconds:g}s (min, max)",
        rows,
        ("request", "req/s", "p50 ms", "p99 ms", "errors", "req/s ratio", "PostgreSQL statements/request",
         "Redis commands/request"),
    )
    print("PostgreSQL statements (BEGIN and COMMIT included) and Redis commands per request: what the servers "
          "counted during the timed runs (pg_stat_statements, INFO commandstats), divided by the requests answered; "
          "each is a round trip from a gateway but for pipelined commands and a statement's first preparation.")
    for name, (_, _, _, top) in zip(SCENARIOS, cluster, strict=True):
        if top:
            print(f"\n{name}, 2 gateways: the {len(top)} most frequent PostgreSQL statements, calls per request")
            print("\n".join(top))
    return rows


if __name__ == "__main__":
    main()
