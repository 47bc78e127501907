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
from types import SimpleNamespace
from collections.abc import Iterator

from bench.control import WORK_HEADER, get_requests, load_options, measure, populate, random_claim
from bench.stack import BenchStack, Figure, print_table
from deploy.balancer import start_balancer
from deploy.postgres import PostgresCluster
from deploy.redis_server import LocalRedis
from deploy.supervisor import GatewayProcess
from storage.embedded import free_port

SCENARIOS = ("POST /dropbox/v1/files", "POST .../upload-urls (3 chunks)", "GET /dropbox/v1/files/{id}, owner")


@contextlib.contextmanager
def single_gateway() -> Iterator[SimpleNamespace]:
    """The baseline: bench/stack.py's one gateway process on SQLite, in-process cache."""
    with BenchStack(gateway_env={"GATEWAY_CACHE_URL": "memory://"}) as stack:
        yield SimpleNamespace(gateway_url=stack.gateway_url, chunk_size=stack.chunk_size)


@contextlib.contextmanager
def two_gateways() -> Iterator[SimpleNamespace]:
    """PostgreSQL, Redis, two gateway processes and the load balancer, as ``./dev up --cluster`` runs them."""
    # A directory of its own under /tmp: as root, PostgreSQL runs as the postgres user, who must reach it.
    postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="bench-postgres-")), sync_init=False)
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
            yield SimpleNamespace(gateway_url=balancer.url, chunk_size=stack.chunk_size)
    finally:
        if balancer is not None:
            balancer.stop()
        for gateway in gateways:
            gateway.stop()
        redis.stop()
        postgres.destroy()
        shutil.rmtree(redis_root, ignore_errors=True)


def measure_setup(setup: SimpleNamespace, args) -> list[tuple[tuple[str, ...], Figure]]:
    """The three control-path scenarios against ``setup.gateway_url``: (table row, req/s) each."""
    data = asyncio.run(populate(setup.gateway_url, setup.chunk_size, args.files, args.files))
    auth = {"Authorization": f"Bearer {data['owner']}"}
    base = setup.gateway_url + "/dropbox/v1/files"
    claims = [[{"method": "POST", "url": base, "headers": auth, "json": random_claim(setup.chunk_size)}
               for _ in range(args.claims)] for _ in range(args.runs)]
    presign = [{"method": "POST", "url": f"{base}/{f}/upload-urls", "headers": auth} for f in data["uploads"]]
    return [
        measure(SCENARIOS[0], claims, args, bounded=True),
        measure(SCENARIOS[1], [presign] * args.runs, args),
        measure(SCENARIOS[2], [get_requests(setup, data, "owner")] * args.runs, args),
    ]


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = load_options(__doc__)
    parser.add_argument("--claims", type=int, default=4000, help="upload starts per run at most")
    args = parser.parse_args(argv)
    with single_gateway() as setup:
        single = measure_setup(setup, args)
    with two_gateways() as setup:
        cluster = measure_setup(setup, args)
    rows = []
    for name, (base_row, base_rps), (cluster_row, cluster_rps) in zip(SCENARIOS, single, cluster, strict=True):
        rows.append((f"{name}: 1 gateway, SQLite", *base_row[1:], "1.00x"))
        rows.append((f"{name}: 2 gateways, PostgreSQL, balancer", *cluster_row[1:],
                     f"{cluster_rps.median / base_rps.median:.2f}x"))
    print_table(
        f"Control path at scale: 1 gateway on SQLite vs 2 gateways on PostgreSQL + Redis behind nginx, "
        f"{args.concurrency} connections, median of {args.runs} runs of {args.seconds:g}s (min, max)",
        rows,
        ("request", "req/s", "p50 ms", "p99 ms", "errors", WORK_HEADER, "req/s ratio"),
    )
    return rows


if __name__ == "__main__":
    main()
