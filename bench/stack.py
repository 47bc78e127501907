"""A throwaway local stack for benchmarks: embedded store, gateway process, optional CDN tier.

The gateway runs as its own process (``python -m gateway``), as in production,
so its CPU time can be read from /proc and load generators can run beside it.
"""
from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from storage.embedded import EmbeddedStore, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """Several runs of one measurement: median, min and max."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        return f"{self.median:,.1f} (min {min(self.values):,.1f}, max {max(self.values):,.1f})"


@dataclass
class BenchStack:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dropbox-bench-")))
    chunk_size: int = 8 * 1024 * 1024
    with_cdn: bool = False
    gateway_env: dict[str, str] = field(default_factory=dict)
    store: EmbeddedStore | None = None
    gateway: subprocess.Popen | None = None
    cdn: object | None = None

    def __post_init__(self) -> None:
        self.gateway_port = free_port()
        self.cdn_port = free_port()
        self.env = {
            **os.environ,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_PUBLIC_URL": self.gateway_url,
            "GATEWAY_DATABASE_PATH": str(self.root / "gateway.sqlite3"),
            "GATEWAY_S3_ACCESS_KEY": "bench",
            "GATEWAY_S3_SECRET_KEY": secrets.token_urlsafe(24),
            "GATEWAY_S3_BUCKET": "bench-content",
            "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
            "GATEWAY_EVENTS_TOKEN": secrets.token_urlsafe(24),
            "GATEWAY_CDN_SECRET": secrets.token_urlsafe(24),
            # The CDN tier's read-only store key.
            "CDN_S3_ACCESS_KEY": "bench-cdn",
            "CDN_S3_SECRET_KEY": secrets.token_urlsafe(24),
            "GATEWAY_CDN_URL": f"http://127.0.0.1:{self.cdn_port}",
            "GATEWAY_CHUNK_SIZE": str(self.chunk_size),
            "GATEWAY_LOG_LEVEL": "warning",
            **self.gateway_env,
        }

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def __enter__(self) -> "BenchStack":
        self.store = EmbeddedStore(
            self.root / "store",
            self.env["GATEWAY_S3_ACCESS_KEY"],
            self.env["GATEWAY_S3_SECRET_KEY"],
            self.env["GATEWAY_S3_BUCKET"],
            s3_port=free_port(),
            webhook_url=f"{self.gateway_url}/dropbox/v1/events/seaweedfs",
            webhook_token=self.env["GATEWAY_EVENTS_TOKEN"],
            reader_keys=(self.env["CDN_S3_ACCESS_KEY"], self.env["CDN_S3_SECRET_KEY"]),
            # The browser benchmark's page PUTs chunks to the store from the gateway's origin.
            cors_origins=(self.gateway_url,),
        ).start()
        self.env["GATEWAY_S3_ENDPOINT"] = self.store.endpoint
        log = open(self.root / "gateway.log", "ab")
        self.gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self._wait(f"{self.gateway_url}/readyz")
        if self.with_cdn:
            from cdn.nginx import start_local_cdn

            self.cdn = start_local_cdn(self.root / "cdn", self.env, self.cdn_port)
        return self

    def _wait(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited; see {self.root / 'gateway.log'}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not answer in {timeout}s")

    def __exit__(self, *exc) -> None:
        if self.cdn is not None:
            self.cdn.stop()
        if self.gateway and self.gateway.poll() is None:
            self.gateway.terminate()
            self.gateway.wait(15)
        if self.store:
            self.store.stop()
        # Gigabytes of test files and store data: never leave them behind.
        shutil.rmtree(self.root, ignore_errors=True)

    def gateway_cpu_seconds(self) -> float:
        """User + system CPU time the gateway process has used so far."""
        fields = Path(f"/proc/{self.gateway.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def s3_credentials(self) -> dict[str, str]:
        return {
            "endpoint_url": self.store.endpoint,
            "aws_access_key_id": self.env["GATEWAY_S3_ACCESS_KEY"],
            "aws_secret_access_key": self.env["GATEWAY_S3_SECRET_KEY"],
            "region_name": "us-east-1",
        }


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def signup(gateway_url: str, username: str | None = None, password: str = "bench password") -> str:
    """Create a user and return an access token."""
    import json

    username = username or "bench-" + secrets.token_hex(4)

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            gateway_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    post("/dropbox/v1/users", {"username": username, "email": f"{username}@example.com", "password": password})
    return post("/dropbox/v1/tokens", {"username": username, "password": password})["access_token"]
