"""Download throughput of the CDN tier against the store it fronts, measured in one run.

    python -m bench download [--size MIB] [--runs N] [--other-cdn DIR ...] [--json]

Starts the local stack, then, run after run: uploads new random content with
``dbx`` (so the CDN tier has never seen it) and the same bytes with boto3 under
two keys of the benchmark's own, and times a direct presigned GET of those bytes
from the store, the same bytes under the other key in the CDN tier's slices (one
Range GET after another on one connection, as a miss asks for them: what the
store's cost per request takes from a miss before nginx does anything), the
first GET of the file's download URL through the CDN tier (a miss: the content
is new) and a second one (a hit). Direct GETs and misses go in turns (the order
rotates from run to run). Prints MiB/s as median, min and max, and each against
the direct GET of its run (median, min and max of the runs' ratios), and the CPU
seconds each download cost the store, the CDN tier's nginx (master and workers)
and the client (the thread that reads the answer), median of the runs, from
/proc: on this shared machine a download's speed follows its CPU share, and
these say what each path costs whatever the load. Only public interfaces: the
HTTP API, the S3 API and ``dbx``.

``--other-cdn DIR``: also the CDN tier of another checkout (its nginx template
and njs, run by this checkout's launcher on the same store, with a cache of its
own), its miss and hit timed in the same runs: a before/after of the tier that
the machine's load cannot skew.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import re
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from bench.dbx import MIB, Dbx, file_sha256, make_file
from bench.stack import BenchStack, children, print_table, process_cpu_seconds, ratio
from cdn.nginx import TEMPLATE_PATH, LocalCdn, start_local_cdn
from storage.embedded import free_port


def slice_size(template: str) -> int:
    """The size of the slices the CDN tier asks the store for (its download location's ``slice``)."""
    match = re.search(r"^\s*slice (\d+)m;", template, re.M)
    if match is None:
        raise ValueError("the CDN template names no slice size in megabytes")
    return int(match[1]) * MIB


def connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection to ``url``'s host (not opened yet) and the path with query to ask it for."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=120), f"{parts.path}?{parts.query}"


def fetch(url: str, digest: hashlib._Hash | None = None) -> tuple[int, float]:
    """GET ``url`` into a reused buffer; return (bytes, seconds). Raises unless 200."""
    buffer = memoryview(bytearray(MIB))
    started = time.perf_counter()
    connection, target = connect(url)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {target.split('?')[0]} answered {response.status}: {response.read()[:300]!r}")
        received = 0
        while count := response.readinto(buffer):
            received += count
            if digest is not None:
                digest.update(buffer[:count])
        return received, time.perf_counter() - started
    finally:
        connection.close()


def fetch_in_slices(url: str, size: int, step: int) -> tuple[int, float]:
    """GET ``url`` as ``step``-byte Range requests one after another on one connection (as a CDN miss
    asks the store for its slices); return (bytes, seconds). Raises unless each answers 206."""
    buffer = memoryview(bytearray(MIB))
    started = time.perf_counter()
    connection, target = connect(url)
    try:
        received = 0
        for start in range(0, size, step):
            connection.request("GET", target, headers={"Range": f"bytes={start}-{min(start + step, size) - 1}"})
            response = connection.getresponse()
            if response.status != 206:
                raise RuntimeError(f"a Range GET of {target.split('?')[0]} answered {response.status}")
            while count := response.readinto(buffer):
                received += count
        return received, time.perf_counter() - started
    finally:
        connection.close()


def download_url(gateway_url: str, token: str, file_id: str) -> str:
    """The file object's signed CDN URL, as any client gets it."""
    request = urllib.request.Request(f"{gateway_url}/dropbox/v1/files/{file_id}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["download_url"]


def summary(speeds: list[float], direct: list[float], cpu: list[dict[str, float]]) -> dict[str, float | str | dict]:
    median = statistics.median(speeds)
    return {
        "median_mib_s": round(median, 1),
        "min_mib_s": round(min(speeds), 1),
        "max_mib_s": round(max(speeds), 1),
        "vs_direct": ratio([mine / theirs for mine, theirs in zip(speeds, direct, strict=True)]),
        "cpu_seconds": {process: round(statistics.median(run[process] for run in cpu), 3) for process in cpu[0]},
    }


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of a process and its children (nginx's master and its workers)."""
    return process_cpu_seconds(pid) + sum(process_cpu_seconds(child) for child in children(pid))


@contextlib.contextmanager
def cpu_spent(store: int, cdn: int | None) -> Iterator[dict[str, float]]:
    """The CPU seconds the block costs the store, the CDN tier ``cdn`` (nginx's master pid; None: no tier
    takes part) and this thread (the client), in the dict it yields, filled in at its end."""
    spent: dict[str, float] = {}
    before = (process_cpu_seconds(store), tree_cpu_seconds(cdn) if cdn else 0.0, time.thread_time())
    yield spent
    spent["client"] = time.thread_time() - before[2]  # first: reading /proc costs this thread too
    spent["store"] = process_cpu_seconds(store) - before[0]
    if cdn:
        spent["nginx"] = tree_cpu_seconds(cdn) - before[1]


def master_pid(tier: LocalCdn) -> int:
    if tier.process is None:
        raise RuntimeError(f"the CDN tier on {tier.url} is not running")
    return tier.process.pid


@contextlib.contextmanager
def other_tier(stack: BenchStack, checkout: Path) -> Iterator[LocalCdn]:
    """The CDN tier of another checkout (its template and signing.js) on this stack's store, on a port
    and in a state directory of its own (so with a cache of its own)."""
    env = {**stack.gateway_environment(), "CDN_S3_ACCESS_KEY": stack.env.get("CDN_S3_ACCESS_KEY", "cdn"),
           "CDN_S3_SECRET_KEY": stack.stack_settings()["CDN_S3_SECRET_KEY"]}
    state = stack.root / f"cdn-of-{len(list(stack.root.glob('cdn-of-*')))}"
    template = (checkout / "cdn" / "nginx.conf.template").read_text()
    # Its signing.js: the rendered template names the directory it is loaded from.
    if "js_path ${CDN_NJS_DIR};" not in template:
        raise ValueError(f"{checkout}'s CDN template does not load its njs from CDN_NJS_DIR")
    template = template.replace("js_path ${CDN_NJS_DIR};", f"js_path {(checkout / 'cdn').resolve()};")
    tier = start_local_cdn(state, env, free_port(), template=template)
    try:
        yield tier
    finally:
        tier.stop()


def run(size: int, runs: int, others: list[Path]) -> dict:
    import boto3

    labels = ["direct", "slices", "miss", "hit", *(f"{kind} {checkout}" for checkout in others for kind in ("miss", "hit"))]
    speeds: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    step = slice_size(TEMPLATE_PATH.read_text())
    with BenchStack() as stack, contextlib.ExitStack() as tiers:
        s3 = boto3.client("s3", **stack.s3_credentials())
        dbx = Dbx(stack, stack.root / "home")
        other = {checkout: tiers.enter_context(other_tier(stack, checkout)) for checkout in others}
        other_urls = {checkout: tier.url for checkout, tier in other.items()}
        [store] = stack.pids("store")
        # Each kind's nginx master: the stack's for its own tier, none for the store's own GETs.
        [master] = stack.pids("cdn")
        masters: dict[str, int | None] = {
            "direct": None, "slices": None, "miss": master, "hit": master,
            **{f"{kind} {checkout}": master_pid(tier) for checkout, tier in other.items() for kind in ("miss", "hit")}}
        for number in range(runs):
            source = make_file(stack.root / f"source-{number}.bin", size)
            _, uploaded, _ = dbx("upload", str(source))
            # A key of its own for the GET in slices too: each kind reads bytes the store has not read yet.
            store_urls = {}
            for kind in ("direct", "slices"):
                key = f"bench/{kind}-{number}"
                s3.upload_file(str(source), stack.bucket, key)
                store_urls[kind] = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key},
                                                             ExpiresIn=3600)
            cdn = download_url(stack.gateway_url, dbx.token, uploaded["file_id"])
            # The same signed URL on another tier: the edge signature covers the path and query, not the host.
            urls = {"": cdn, **{f" {checkout}": url + cdn[len(stack.cdn_url):] for checkout, url in other_urls.items()}}

            def timed(kind: str, url: str) -> None:
                with cpu_spent(store, masters[kind]) as spent:
                    received, seconds = fetch_in_slices(url, size, step) if kind == "slices" else fetch(url)
                if received != size:
                    raise RuntimeError(f"{kind}: got {received} bytes of {size}")
                speeds[kind].append(size / MIB / seconds)
                cpu[kind].append(spent)

            firsts = [*store_urls.items(), *((f"miss{suffix}", url) for suffix, url in urls.items())]
            for kind, url in firsts[number % len(firsts):] + firsts[:number % len(firsts)]:
                timed(kind, url)
            for suffix, url in urls.items():
                timed(f"hit{suffix}", url)
                digest = hashlib.sha256()
                fetch(url, digest)  # untimed: the cached bytes are the file's bytes
                if digest.hexdigest() != file_sha256(source):
                    raise RuntimeError(f"the CDN tier{suffix} served bytes that differ from the file")
            source.unlink()

    return {
        "size_mib": round(size / MIB, 3),
        "slice_mib": round(step / MIB, 3),
        "runs": runs,
        **{kind: summary(values, speeds["direct"], cpu[kind]) for kind, values in speeds.items()},
    }


def cpu_cell(seconds: dict[str, float], process: str) -> str:
    return f"{seconds[process]:.2f}" if process in seconds else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each kind (default 5)")
    parser.add_argument("--other-cdn", metavar="DIR", action="append", default=[], type=Path,
                        help="also time the CDN tier of another checkout (DIR holds its cdn/) in the same runs; "
                             "may be repeated")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    size = int(args.size * MIB)
    if size <= 0 or args.runs < 1:
        parser.error("--size and --runs must be positive")
    result = run(size, args.runs, args.other_cdn)
    if args.json:
        print(json.dumps(result))
        return 0
    labels = {"direct": "direct store GET", "slices": f"store GET in {result['slice_mib']:g} MiB ranges, one by one",
              "miss": "CDN miss", "hit": "CDN hit",
              **{f"{kind} {checkout}": f"CDN {kind}, tier of {checkout}" for checkout in args.other_cdn
                 for kind in ("miss", "hit")}}
    print_table(
        f"Download of a {result['size_mib']:g} MiB file, {args.runs} runs each (MiB/s); ratios to the direct GET "
        f"within each run (median, min, max); CPU seconds of each process, median",
        [(label, f"{result[kind]['median_mib_s']:,.1f}", f"{result[kind]['min_mib_s']:,.1f}",
          f"{result[kind]['max_mib_s']:,.1f}", str(result[kind]["vs_direct"]),
          *(cpu_cell(result[kind]["cpu_seconds"], process) for process in ("store", "nginx", "client")))
         for kind, label in labels.items()],
        ("download", "median", "min", "max", "to direct", "store CPU s", "nginx CPU s", "client CPU s"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
