"""The store's own small-object PUT rate: boto3 ``put_object`` from threads, run as a process of its own.

    python -m bench.s3load SCENARIO.json  ->  prints one JSON line, as bench/loadgen.py does

The scenario holds ``bucket``, ``size`` (bytes per object), ``concurrency``
(threads, each with a connection of its own from one shared client),
``seconds`` and ``max_requests``, whichever ends first. Every object is new
random bytes under a new key. The store's address and credentials come from
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, as
for the AWS CLI (never from the command line). It is the baseline of the
inline uploads in bench/control.py: the same files, the same concurrency.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from bench.loadgen import results


def run(scenario: dict) -> dict:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    concurrency = scenario.get("concurrency", 32)
    s3 = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=concurrency))
    stop_at = time.perf_counter() + scenario.get("seconds", 5.0)
    max_requests = scenario.get("max_requests", 1_000_000)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counts = {"issued": 0, "errors": 0}
    lock = threading.Lock()

    def worker() -> None:
        while time.perf_counter() < stop_at:
            with lock:
                if counts["issued"] >= max_requests:
                    return
                counts["issued"] += 1
                number = counts["issued"]
            body = os.urandom(scenario["size"])
            started = time.perf_counter()
            try:
                answer = s3.put_object(Bucket=scenario["bucket"], Key=f"bench/small/{number}-{os.urandom(4).hex()}",
                                       Body=body)
                status = answer["ResponseMetadata"]["HTTPStatusCode"]
            except ClientError as exc:
                status = exc.response["ResponseMetadata"].get("HTTPStatusCode", 0)
            except BotoCoreError:
                status = 0
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    counts["errors"] += 1

    s3.list_objects_v2(Bucket=scenario["bucket"], MaxKeys=1)  # the client's set-up is not a request timed
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results(latencies, counts["errors"], statuses, time.perf_counter() - started)


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        print(json.dumps(run(json.load(handle))))
