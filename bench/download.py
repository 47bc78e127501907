"""Download throughput of the CDN tier against the store it fronts, measured in one run.

    python -m bench download [--size MIB] [--runs N] [--json]

Starts the local stack, then, run after run: uploads new random content with
``dbx`` (so the CDN tier has never seen it) and the same bytes with boto3 under
a key of the benchmark's own, and times a direct presigned GET of those bytes
from the store, the first GET of the file's download URL through the CDN tier
(a miss: the content is new) and a second one (a hit). Direct GET and miss go
in turns. Prints MiB/s as median, min and max, and each against the direct GET.
Only public interfaces: the HTTP API, the S3 API and ``dbx``.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import statistics
import sys
import time
import urllib.request
from urllib.parse import urlsplit

from bench.dbx import MIB, Dbx, file_sha256, make_file
from bench.stack import BenchStack


def fetch(url: str, digest: hashlib._Hash | None = None) -> tuple[int, float]:
    """GET ``url`` into a reused buffer; return (bytes, seconds). Raises unless 200."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    buffer = memoryview(bytearray(MIB))
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {parts.path} answered {response.status}: {response.read()[:300]!r}")
        received = 0
        while count := response.readinto(buffer):
            received += count
            if digest is not None:
                digest.update(buffer[:count])
        return received, time.perf_counter() - started
    finally:
        connection.close()


def download_url(gateway_url: str, token: str, file_id: str) -> str:
    """The file object's signed CDN URL, as any client gets it."""
    request = urllib.request.Request(f"{gateway_url}/dropbox/v1/files/{file_id}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["download_url"]


def summary(speeds: list[float], direct_median: float) -> dict[str, float]:
    median = statistics.median(speeds)
    return {
        "median_mib_s": round(median, 1),
        "min_mib_s": round(min(speeds), 1),
        "max_mib_s": round(max(speeds), 1),
        "vs_direct": round(median / direct_median, 2),
    }


def run(size: int, runs: int) -> dict:
    import boto3

    speeds: dict[str, list[float]] = {"direct": [], "miss": [], "hit": []}
    with BenchStack() as stack:
        s3 = boto3.client("s3", **stack.s3_credentials())
        dbx = Dbx(stack, stack.root / "home")
        for number in range(runs):
            source = make_file(stack.root / f"source-{number}.bin", size)
            _, uploaded, _ = dbx("upload", str(source))
            key = f"bench/direct-{number}"
            s3.upload_file(str(source), stack.bucket, key)
            direct = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": key},
                                               ExpiresIn=3600)
            cdn = download_url(stack.gateway_url, dbx.token, uploaded["file_id"])

            def timed(kind: str, url: str) -> None:
                received, seconds = fetch(url)
                if received != size:
                    raise RuntimeError(f"{kind}: got {received} bytes of {size}")
                speeds[kind].append(size / MIB / seconds)

            for kind, url in ((("direct", direct), ("miss", cdn)) if number % 2 == 0 else
                              (("miss", cdn), ("direct", direct))):
                timed(kind, url)
            timed("hit", cdn)
            digest = hashlib.sha256()
            fetch(cdn, digest)  # untimed: the cached bytes are the file's bytes
            if digest.hexdigest() != file_sha256(source):
                raise RuntimeError("the CDN served bytes that differ from the file")
            source.unlink()

    direct_median = statistics.median(speeds["direct"])
    return {
        "size_mib": round(size / MIB, 3),
        "runs": runs,
        **{kind: summary(values, direct_median) for kind, values in speeds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each kind (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    size = int(args.size * MIB)
    if size <= 0 or args.runs < 1:
        parser.error("--size and --runs must be positive")
    result = run(size, args.runs)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"\ndownload of a {result['size_mib']:g} MiB file, {args.runs} runs each (MiB/s)")
    print(f"{'':18}{'median':>9}{'min':>9}{'max':>9}{'vs direct':>11}")
    for kind, label in (("direct", "direct store GET"), ("miss", "CDN miss"), ("hit", "CDN hit")):
        row = result[kind]
        print(
            f"{label:18}{row['median_mib_s']:9.1f}{row['min_mib_s']:9.1f}{row['max_mib_s']:9.1f}"
            f"{row['vs_direct']:10.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
