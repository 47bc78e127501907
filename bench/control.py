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
import contextlib
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import aiohttp

from bench.stack import BenchStack, Figure, print_table, profiled, ratio, signup
from deploy.postgres import PostgresCluster
from protocol.fingerprints import file_fingerprint


@dataclass(eq=False)
class Target:
    """A stack the requests go to: this checkout's, or another checkout's (``--other-gateway``)."""

    label: str
    stack: BenchStack
    data: dict = field(default_factory=dict)  # what populate() made there

    @property
    def suffix(self) -> str:
        """What its rows' names end with: nothing for this checkout."""
        return "" if self.label == "this checkout" else f": gateway of {self.label}"

    @property
    def files_url(self) -> str:
        return self.stack.gateway_url + "/dropbox/v1/files"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.data['owner']}"}


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


def run_load(requests: list[dict], concurrency: int, seconds: float, max_requests: int | None = None,
             stack: BenchStack | None = None, profile: Path | None = None) -> dict:
    """One load run; with ``stack``, also what each request asked of its gateway's database and store
    (``work``: SQL statements, transactions, store requests per request; None if that gateway does not count)
    and the gateway's CPU milliseconds per request (``cpu_ms``, from /proc: any checkout's gateway has it), the
    load generator's as it counted them itself (``loadgen_cpu_ms``);
    with ``profile``, a py-spy sample of the gateway during the run written there (bench/stack.py's profiled)."""
    scenario = {"requests": requests, "concurrency": concurrency, "seconds": seconds}
    if max_requests:
        scenario["max_requests"] = max_requests
    before = stack.work() if stack else None
    cpu_before = stack.cpu_seconds("gateway") if stack else None
    with profiled(stack.pids("gateway")[0] if stack and profile else 0, profile):
        result = run_program("bench.loadgen", scenario)
    after = stack.work() if stack else None
    result["work"] = None
    result["loadgen_cpu_ms"] = result.pop("cpu_ms", None)
    result["cpu_ms"] = None
    if stack and cpu_before is not None and result["requests"]:
        result["cpu_ms"] = (stack.cpu_seconds("gateway") - cpu_before) * 1000 / result["requests"]
    if before is not None and after is not None and result["requests"]:
        result["work"] = {name: (after[name] - before[name]) / result["requests"] for name in before}
    return result


WORK_HEADER = "per request: SQL statements / transactions / store requests"
CPU_HEADER = "gateway CPU ms per request"
LOADGEN_HEADER = "load generator CPU ms per request"


def work_of(results: list[dict]) -> str:
    """What one request asked of the gateway's database and store (medians of the runs), or n/a."""
    counted = [r["work"] for r in results if r.get("work")]
    if not counted:
        return "n/a"
    return " / ".join(f"{Figure([w[name] for w in counted]).median:.1f}"
                      for name in ("statements", "transactions", "store"))


def cpu_of(results: list[dict], key: str = "cpu_ms") -> str:
    """The gateway's CPU milliseconds per request (median of the runs), or n/a; ``key="loadgen_cpu_ms"``: the
    load generator's (bench/loadgen.py), on the same cores."""
    counted = [r[key] for r in results if r.get(key) is not None]
    return f"{Figure(counted).median:.2f}" if counted else "n/a"


# The columns of row_of that time the requests (requests/second, p50, p99, errors), after the request's name.
TIMINGS = slice(1, 5)


def row_of(name: str, results: list[dict]) -> tuple[str, ...]:
    """A table row: requests/second, p50 and p99 (median, min, max of the runs), the errors in all, what a
    request asked of the database and the store, and the CPU it cost the gateway and the load generator."""
    return (name, str(Figure([r["rps"] for r in results])), str(Figure([r["p50_ms"] for r in results])),
            str(Figure([r["p99_ms"] for r in results])), str(sum(r["errors"] for r in results)), work_of(results),
            cpu_of(results), cpu_of(results, "loadgen_cpu_ms"))


def measure_small_files(targets: list[Target], args) -> list[tuple[str, ...]]:
    """Inline uploads of ``--small-kib`` files against boto3 ``put_object`` of as many bytes, same concurrency.

    boto3 writes to the first target's store. All sides take turns run by run (the order rotates), each
    from a process of its own, and the ratios are taken within each run.
    """
    size = args.small_kib * 1024
    stack = targets[0].stack
    credentials = stack.s3_credentials()
    s3_env = {**os.environ, "AWS_ENDPOINT_URL": credentials["endpoint_url"],
              "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
              "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"]}
    s3_scenario = {"bucket": stack.bucket, "size": size, "concurrency": args.concurrency, "seconds": args.seconds}

    def inline(target: Target, run: int) -> dict:
        upload = {"method": "POST", "url": f"{target.stack.gateway_url}/dropbox/v1/files",
                  "headers": {"Authorization": f"Bearer {target.data['owner']}"}, "inline": size}
        return run_load([upload], args.concurrency, args.seconds, stack=target.stack,
                        profile=profile_path(args, f"inline {args.small_kib} KiB", target, run))

    sides: list[Target | None] = [None, *targets]  # None: boto3
    results: dict[Target | None, list[dict]] = {side: [] for side in sides}
    for run in range(args.runs):
        for side in sides[run % len(sides):] + sides[:run % len(sides)]:
            results[side].append(inline(side, run) if side else run_program("bench.s3load", s3_scenario, s3_env))
    for side, figures in results.items():
        if any(r["errors"] for r in figures):
            print(f"small files, {side.label if side else 'boto3'}: answers by status "
                  f"{[r['statuses'] for r in figures]}", file=sys.stderr)
    return [
        *((*row_of(f"POST /dropbox/v1/files, inline {args.small_kib} KiB (new content each){target.suffix}",
                   results[target]), per_run(results[target], results[None])) for target in targets),
        (*row_of(f"boto3 put_object, {args.small_kib} KiB, straight to the store", results[None]), "1.00x"),
    ]


def profile_path(args, name: str, target: Target, run: int) -> Path | None:
    """Where ``--profile`` puts the sample of ``target``'s gateway during one run of the load ``name``."""
    if not args.profile:
        return None
    slug = "-".join(re.findall(r"[a-z0-9]+", (name + target.suffix).lower()))
    return args.profile / f"{slug}-run-{run}.txt"


def per_run(mine: list[dict], theirs: list[dict]) -> str:
    """The ratio of two sides' requests/second, taken within each run (median, min, max)."""
    return ratio([a["rps"] / b["rps"] for a, b in zip(mine, theirs, strict=True)])


def compare(name: str, targets: list[Target], batches: Callable[[Target], list[list[dict]]], args,
            bounded: bool = False) -> tuple[list[tuple[str, ...]], Figure]:
    """One request's load on every target, in turns run by run (the order rotates): a row per target, and
    the first target's requests/second. With more than one target, each row ends with its ratio to the
    first, taken within each run."""
    loads = {target: batches(target) for target in targets}
    results: dict[Target, list[dict]] = {target: [] for target in targets}
    for run in range(args.runs):
        for target in targets[run % len(targets):] + targets[:run % len(targets)]:
            batch = loads[target][run]
            results[target].append(run_load(batch, args.concurrency, args.seconds, len(batch) if bounded else None,
                                            target.stack, profile_path(args, name, target, run)))
    rows = []
    for target in targets:
        if any(r["errors"] for r in results[target]):
            print(f"{name}{target.suffix}: answers by status {[r['statuses'] for r in results[target]]}",
                  file=sys.stderr)
        row = row_of(name + target.suffix, results[target])
        rows.append(row if len(targets) == 1 else (*row, per_run(results[target], results[targets[0]])))
    return rows, Figure([r["rps"] for r in results[targets[0]]])


def measure(name: str, batches: list[list[dict]], args,
            bounded: bool = False) -> tuple[tuple[str, ...], Figure, list[dict]]:
    """One load, run by run: its table row, its requests/second and each run's results."""
    results = [
        run_load(batch, args.concurrency, args.seconds, len(batch) if bounded else None) for batch in batches
    ]
    if any(r["errors"] for r in results):
        print(f"{name}: answers by status {[r['statuses'] for r in results]}", file=sys.stderr)
    return row_of(name, results), Figure([r["rps"] for r in results]), results


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
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the gateways' database: SQLite (the default) or a private PostgreSQL server started for "
                             "the run, a database of its own for each gateway")
    parser.add_argument("--other-gateway", metavar="DIR", action="append", default=[],
                        help="also run the stack of another checkout of this repository (DIR; its launcher, gateway "
                             "and CDN tier) and time the same requests against it in the same runs, in turns: a "
                             "before/after comparison that the machine's load cannot skew; may be repeated")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample each gateway with py-spy (on PATH, or PY_SPY) during every run into DIR, one "
                             "file of collapsed stacks per load and run (only the thread holding Python's lock)")
    return parser


def claims(target: Target, runs: int) -> list[list[dict]]:
    """Upload starts, fresh claims for every request (each starts a new upload in the store), 4000 a run."""
    return [[{"method": "POST", "url": target.files_url, "headers": target.auth(),
              "json": random_claim(target.stack.chunk_size)} for _ in range(4000)] for _ in range(runs)]


def presigns(target: Target, runs: int) -> list[list[dict]]:
    """Chunk URLs for the uploads populate() started, the same every run."""
    return [[{"method": "POST", "url": f"{target.files_url}/{f}/upload-urls", "headers": target.auth()}
             for f in target.data["uploads"]]] * runs


def reads(target: Target, who: str, runs: int) -> list[list[dict]]:
    return [get_requests(target.stack, target.data, who)] * runs


def checkout_label(checkout: Path) -> str:
    """How the rows name another checkout: its directory and commit."""
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return f"{checkout} at {commit}" if commit else str(checkout)


@contextlib.contextmanager
def databases(engine: str) -> Iterator[Callable[[], dict[str, str]]]:
    """What each gateway's environment says of its database: nothing (SQLite in its own state), or a new
    database on a private PostgreSQL server started for the run (destroyed at the end)."""
    if engine == "sqlite":
        yield dict
        return
    postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="bench-postgres-")), sync_init=False)
    made = itertools.count()
    try:
        postgres.start()
        yield lambda: {"GATEWAY_DATABASE_URL": postgres.create_database(f"control{next(made)}")}
    finally:
        postgres.destroy()


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    args = control_options(__doc__).parse_args(argv)
    checkouts = [None, *(Path(other) for other in args.other_gateway)]
    rows: list[tuple[str, ...]] = []
    small: list[tuple[str, ...]] = []
    ratios: list[tuple[str, ...]] = []
    cached: dict[str, Figure] = {}
    with databases(args.engine) as database:
        for cache in ("memory://", "none://"):
            run_cache(cache, checkouts, database, args, rows, ratios, cached, small)
    others = " (and the gateway of each other checkout, in turns)" if args.other_gateway else ""
    print_table(
        f"Control path: 1 gateway process{others} on {args.engine}, load from a separate process, "
        f"{args.concurrency} connections, median of {args.runs} runs of {args.seconds:g}s (min, max)"
        + ("; ratios within each run" if others else ""),
        rows,
        ("request", "req/s", "p50 ms", "p99 ms", "errors", WORK_HEADER, CPU_HEADER, LOADGEN_HEADER,
         *(("req/s to this checkout",) if others else ())),
    )
    print_table("Permission and metadata cache", ratios, ("requests/second", "ratio"))
    print_table(
        f"Small files: inline uploads against boto3 put_object of the same size, {args.concurrency} at a time, "
        f"median of {args.runs} runs of {args.seconds:g}s (min, max); ratio within each run",
        small,
        ("request", "req/s", "p50 ms", "p99 ms", "errors", WORK_HEADER, CPU_HEADER, LOADGEN_HEADER, "req/s to boto3"),
    )
    return rows


def run_cache(cache: str, checkouts: list[Path | None], database: Callable[[], dict[str, str]], args,
              rows: list[tuple[str, ...]], ratios: list[tuple[str, ...]], cached: dict[str, Figure],
              small: list[tuple[str, ...]]) -> None:
    """Every request against each checkout's stack with the permission and metadata cache ``cache``."""
    with contextlib.ExitStack() as stacks:
        # One owner starts thousands of uploads here: BenchStack runs without the per-user limits.
        targets = [Target("this checkout" if checkout is None else checkout_label(checkout),
                          stacks.enter_context(BenchStack(gateway_env={"GATEWAY_CACHE_URL": cache, **database()},
                                                          checkout=checkout)))
                   for checkout in checkouts]
        for target in targets:
            target.data = asyncio.run(populate(target.stack.gateway_url, target.stack.chunk_size, args.files,
                                               args.files))
        label = "cache on" if cache != "none://" else "cache off"
        if cache != "none://":
            rows += compare("POST /dropbox/v1/files", targets, partial(claims, runs=args.runs), args,
                            bounded=True)[0]
            rows += compare("POST .../upload-urls (3 chunks)", targets, partial(presigns, runs=args.runs), args)[0]
            small += measure_small_files(targets, args)
        for who in ("owner", "reader"):
            found, rps = compare(f"GET /dropbox/v1/files/{{id}}, {who}, {label}", targets,
                                 partial(reads, who=who, runs=args.runs), args)
            rows += found
            if who in cached:
                ratios.append((f"GET as {who}: cache on / off", f"{cached[who].median / rps.median:.2f}x"))
            else:
                cached[who] = rps


if __name__ == "__main__":
    main()
