"""Download throughput of the CDN tier against the store it fronts, measured in one run.

    .venv/bin/python -m bench.download [--size MIB] [--runs N] [--json]

Starts the embedded store and nginx on free ports, puts one random file, then
times, run after run: a direct presigned GET from the store, a CDN miss (nginx
restarted on an empty cache) and a CDN hit. Prints MiB/s as median, min and
max, and each figure against the direct GET.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from cdn.nginx import LocalCdn, start_local_cdn
from gateway.config import Config
from gateway.core.downloads import download_url
from protocol.fingerprints import file_fingerprint, hex_to_b64
from gateway.core.content import content_key
from storage.base import CompletedPart
from storage.embedded import EmbeddedStore, free_port
from storage.s3 import S3ObjectStore

MIB = 1024 * 1024
CHUNK_SIZE = 8 * MIB
ACCESS_KEY = "bench"
SECRET_KEY = "bench-secret-key"
BUCKET = "bench-content"
CDN_SECRET = "bench-cdn-secret"
CDN_STORE_KEYS = ("bench-cdn", "bench-cdn-store-secret")  # the CDN tier's read-only store key


async def put_random_file(store: S3ObjectStore, size: int) -> tuple[str, str]:
    """Upload ``size`` random bytes as content, in chunks as the gateway would; return (fingerprint, sha256)."""
    chunks = [os.urandom(min(CHUNK_SIZE, size - offset)) for offset in range(0, size, CHUNK_SIZE)]
    chunk_digests = [hashlib.sha256(chunk).hexdigest() for chunk in chunks]
    fingerprint = file_fingerprint(chunk_digests)
    whole = hashlib.sha256()
    for chunk in chunks:
        whole.update(chunk)
    key = content_key(fingerprint)
    if len(chunks) <= 1:
        data = chunks[0] if chunks else b""
        await store.put_object(key, data, hex_to_b64(hashlib.sha256(data).hexdigest()))
    else:
        upload_id = await store.start_multipart(key)
        parts = []
        for number, (chunk, digest) in enumerate(zip(chunks, chunk_digests), start=1):
            etag = await store.upload_part(key, upload_id, number, chunk, hex_to_b64(digest))
            parts.append(CompletedPart(number, etag, hex_to_b64(digest)))
        await store.complete_multipart(key, upload_id, parts)
    return fingerprint, whole.hexdigest()


def fetch(url: str, digest: "hashlib._Hash | None" = None) -> tuple[int, float, dict[str, str]]:
    """GET ``url`` into a reused buffer; return (bytes, seconds, headers). Raises unless 200."""
    parts = urlsplit(url)
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
        return received, time.perf_counter() - started, dict(response.getheaders())
    finally:
        connection.close()


def summary(speeds: list[float], direct_median: float) -> dict[str, float]:
    median = statistics.median(speeds)
    return {
        "median_mib_s": round(median, 1),
        "min_mib_s": round(min(speeds), 1),
        "max_mib_s": round(max(speeds), 1),
        "vs_direct": round(median / direct_median, 2),
    }


def run(size: int, runs: int, state: Path) -> dict:
    store_process = EmbeddedStore(
        state / "store", ACCESS_KEY, SECRET_KEY, BUCKET, s3_port=free_port(), reader_keys=CDN_STORE_KEYS
    ).start()
    cdn_port = free_port()
    env = {
        "GATEWAY_S3_ENDPOINT": store_process.endpoint,
        "GATEWAY_S3_BUCKET": BUCKET,
        "GATEWAY_CDN_SECRET": CDN_SECRET,
        "CDN_S3_ACCESS_KEY": CDN_STORE_KEYS[0],
        "CDN_S3_SECRET_KEY": CDN_STORE_KEYS[1],
    }
    config = Config(
        s3_endpoint=store_process.endpoint,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        s3_bucket=BUCKET,
        cdn_url=f"http://127.0.0.1:{cdn_port}",
        cdn_secret=CDN_SECRET,
        download_url_ttl=3600,
    )
    store = S3ObjectStore(config.s3_endpoint, ACCESS_KEY, SECRET_KEY, BUCKET)
    cdn: LocalCdn | None = None
    try:
        fingerprint, sha256 = asyncio.run(put_random_file(store, size))
        url, _ = download_url(config, fingerprint, "bench.bin", "application/octet-stream")
        direct_url = store.presign_get(content_key(fingerprint), 3600)
        speeds: dict[str, list[float]] = {"direct": [], "miss": [], "hit": []}

        def timed(kind: str, target: str, cache_status: str | None = None) -> None:
            received, seconds, headers = fetch(target)
            if received != size:
                raise RuntimeError(f"{kind}: got {received} bytes of {size}")
            # The cache status is in the CDN's access log only.
            if cache_status and (found := cdn.cache_status(headers["X-Request-Id"])) != cache_status:
                raise RuntimeError(f"{kind}: cache status {found}, expected {cache_status}")
            speeds[kind].append(size / MIB / seconds)

        for _ in range(runs):
            timed("direct", direct_url)
            # A miss needs an empty cache: nginx keeps its index in memory, so restart it.
            if cdn is not None:
                cdn.stop()
            shutil.rmtree(state / "cdn" / "cache", ignore_errors=True)
            cdn = start_local_cdn(state / "cdn", env, cdn_port)
            timed("miss", url, "MISS")
            timed("hit", url, "HIT")

        digest = hashlib.sha256()
        fetch(url, digest)  # untimed: the cached bytes are the file's bytes
        if digest.hexdigest() != sha256:
            raise RuntimeError("the CDN served bytes that differ from the file")
    finally:
        if cdn is not None:
            cdn.stop()
        store_process.stop()

    direct = statistics.median(speeds["direct"])
    return {
        "size_mib": round(size / MIB, 3),
        "runs": runs,
        "direct": summary(speeds["direct"], direct),
        "miss": summary(speeds["miss"], direct),
        "hit": summary(speeds["hit"], direct),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each kind (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    size = int(args.size * MIB)
    if size <= 0 or args.runs < 1:
        parser.error("--size and --runs must be positive")
    # nginx restarts for every miss; its start and stop lines would bury the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory(prefix="bench-download-") as state:
        result = run(size, args.runs, Path(state))

    if args.json:
        print(json.dumps(result))
        return 0
    print(f"download of a {result['size_mib']:g} MiB file, {args.runs} runs each (MiB/s)")
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
