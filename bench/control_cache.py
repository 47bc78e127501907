"""What the permission and metadata cache buys on the hot read path: ``GET /dropbox/v1/files/{id}``.

    python -m bench.control_cache [--seconds 5] [--rounds 3] [--connections 32] [--files 5]

Starts the embedded store (SeaweedFS) and two gateway processes (``python -m
gateway``) on the same SQLite file and store: one with ``GATEWAY_CACHE_URL=
memory://``, one with ``none://``. A user uploads a few small files and shares
them with a second user. Then a load generator in a separate process (``wrk``
when installed, ``apt-get install -y wrk``; otherwise a Python aiohttp loop in
a subprocess) requests the files' metadata, round after round, alternating
cache on and off, as the owner and as the user the files are shared with (the
case that needs the shares lookup). Prints requests/second, p50 and p99
latency per mode (the median over the rounds) and the on/off ratio.

Only one gateway is under load at any time; the other sits idle.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from storage.embedded import EmbeddedStore, free_port

WRK_SCRIPT = r"""
local paths = {%(paths)s}
local auth = "Bearer %(token)s"
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], {["Authorization"] = auth})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, "errors": %%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def start_store(root: Path, attempts: int = 3) -> EmbeddedStore:
    """The embedded store; retried, since a port it does not let us choose may be taken for a moment."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return EmbeddedStore(
                root / f"store-{attempt}", "bench", secrets.token_urlsafe(24), "bench-content", s3_port=free_port()
            ).start()
        except RuntimeError as exc:
            last = exc
            time.sleep(1)
    raise RuntimeError(f"the embedded store did not start: {last}")


class GatewayProcess:
    def __init__(self, root: Path, store: EmbeddedStore, secrets_env: dict[str, str], cache_url: str, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"gateway-{name}.log"
        self.env = {
            **os.environ,
            **secrets_env,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_PUBLIC_URL": self.url,
            "GATEWAY_DATABASE_PATH": str(root / "gateway.sqlite3"),
            "GATEWAY_S3_ENDPOINT": store.endpoint,
            "GATEWAY_S3_ACCESS_KEY": store.access_key,
            "GATEWAY_S3_SECRET_KEY": store.secret_key,
            "GATEWAY_S3_BUCKET": store.bucket,
            "GATEWAY_CACHE_URL": cache_url,
            "GATEWAY_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "GatewayProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the gateway did not get ready in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def populate(gateway_url: str, files: int) -> dict:
    """An owner with ``files`` small files, shared with a reader; returns their tokens and file ids."""
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def post(path: str, token: str | None = None, **kwargs) -> dict:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.post(gateway_url + path, headers=headers, **kwargs) as response:
                body = await response.json()
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status} {body}")
                return body

        async def signup() -> tuple[str, str]:
            name = "bench-" + secrets.token_hex(4)
            password = "bench password " + secrets.token_hex(4)
            await post("/dropbox/v1/users", json={"username": name, "email": f"{name}@example.com", "password": password})
            login = await post("/dropbox/v1/tokens", json={"username": name, "password": password})
            return name, login["access_token"]

        (_, owner), (reader_name, reader) = await signup(), await signup()
        file_ids = []
        for n in range(files):
            form = aiohttp.FormData()
            form.add_field("file_metadata", json.dumps({"file_name": f"bench-{n}.txt", "file_type": "text/plain"}))
            form.add_field("file", os.urandom(1024 + n), filename=f"bench-{n}.txt")
            file_ids.append((await post("/dropbox/v1/files", owner, data=form))["file_id"])
        for file_id in file_ids:
            await post("/dropbox/v1/files/share", owner, json={"file_id": file_id, "users": [reader_name]})
    return {"owner": owner, "reader": reader, "file_ids": file_ids}


def run_wrk(url: str, paths: list[str], token: str, seconds: float, connections: int, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths), "token": token})
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


async def python_load(scenario: dict) -> dict:
    """The fallback load generator (run in its own process by --loadgen)."""
    import aiohttp

    urls, headers = scenario["urls"], {"Authorization": f"Bearer {scenario['token']}"}
    connections, stop_at = scenario["connections"], time.perf_counter() + scenario["seconds"]
    latencies: list[float] = []
    errors = 0

    async def worker(offset: int, session) -> None:
        nonlocal errors
        position = offset
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.get(urls[position % len(urls)], headers=headers) as response:
                await response.read()
                errors += response.status >= 400
            latencies.append(time.perf_counter() - started)
            position += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(i, session) for i in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors}


def run_python(url: str, paths: list[str], token: str, seconds: float, connections: int) -> dict:
    scenario = {"urls": [url + p for p in paths], "token": token, "seconds": seconds, "connections": connections}
    out = subprocess.run(
        [sys.executable, "-m", "bench.control_cache", "--loadgen", json.dumps(scenario)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one load run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode and user; the median is reported")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the gateway needs a core too)")
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk is installed")
    args = parser.parse_args(argv)
    if args.loadgen:
        print(json.dumps(asyncio.run(python_load(json.loads(args.loadgen)))))
        return 0

    use_wrk = shutil.which("wrk") is not None and not args.python_load
    root = Path(tempfile.mkdtemp(prefix="dropbox-bench-cache-"))
    store = start_store(root)
    secrets_env = {
        "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_EVENTS_TOKEN": secrets.token_urlsafe(24),
        "GATEWAY_CDN_SECRET": secrets.token_urlsafe(24),
    }
    gateways: dict[str, GatewayProcess] = {}
    try:
        # Started one after the other: the first one applies the migrations.
        for mode, cache_url in (("cache on", "memory://"), ("cache off", "none://")):
            gateways[mode] = GatewayProcess(root, store, secrets_env, cache_url, mode.replace(" ", "-")).start()
        data = asyncio.run(populate(gateways["cache on"].url, args.files))
        paths = [f"/dropbox/v1/files/{file_id}" for file_id in data["file_ids"]]
        generator = "wrk" if use_wrk else "python aiohttp loop (install wrk for a lighter generator)"
        print(f"GET /dropbox/v1/files/{{id}} over {len(paths)} files, {args.connections} connections, "
              f"{args.seconds:g} s x {args.rounds} rounds per row, load generator: {generator}")
        results: dict[tuple[str, str], list[dict]] = {}
        for user in ("reader", "owner"):
            for _ in range(args.rounds):
                for mode, gateway in gateways.items():
                    if use_wrk:
                        result = run_wrk(gateway.url, paths, data[user], args.seconds, args.connections, args.threads)
                    else:
                        result = run_python(gateway.url, paths, data[user], args.seconds, args.connections)
                    if result["errors"]:
                        raise RuntimeError(f"{result['errors']} failed requests ({mode}, {user}); see {gateway.log_path}")
                    results.setdefault((user, mode), []).append(result)
        print()
        print("| user               | cache | requests/s | p50 ms | p99 ms |")
        print("| ------------------ | ----- | ---------- | ------ | ------ |")
        summary: dict[tuple[str, str], dict[str, float]] = {}
        for (user, mode), runs in results.items():
            med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
            summary[(user, mode)] = med
            who = "shared-with reader" if user == "reader" else "owner"
            print(f"| {who:<18} | {mode.split()[1]:<5} | {med['rps']:>10,.0f} | {med['p50_ms']:>6.2f} | {med['p99_ms']:>6.2f} |")
        print()
        for user in ("reader", "owner"):
            on, off = summary[(user, "cache on")], summary[(user, "cache off")]
            print(f"{user}: cache on/off throughput x{on['rps'] / off['rps']:.2f}, "
                  f"p50 x{off['p50_ms'] / on['p50_ms']:.2f} lower, p99 x{off['p99_ms'] / on['p99_ms']:.2f} lower")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        store.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
