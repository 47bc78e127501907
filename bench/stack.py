"""A throwaway local stack for benchmarks, started the way a user starts one.

The benchmarks see the service only through its public interfaces: the local
stack's launcher (``python -m deploy.stack``, what ``./dev up`` runs) on free
ports in a temporary state directory, the HTTP API, the S3 API of the store
(boto3, with the credentials the launcher wrote to ``stack.env``) and the
``dbx`` command. Gateway settings go in as ``GATEWAY_*`` environment
variables, as they would for ``./dev up``. The gateway's CPU time is read from
/proc (it is a process like any other).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack import gateway_environment, load_or_create_secrets
from storage.embedded import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_LINE = "the local stack is up"
START_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """The local stack could not start: a port picked for it was taken before it could listen there."""


@dataclass
class Figure:
    """Several runs of one measurement: median, min and max."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        return f"{self.median:,.1f} (min {min(self.values):,.1f}, max {max(self.values):,.1f})"


def ratio(values: list[float]) -> str:
    """Per-run ratios: median, min and max, two decimals (``0.97x (min 0.91, max 1.02)``)."""
    return f"{statistics.median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f})"


def parents() -> dict[int, int]:
    """Every process's parent, from /proc: one pass (a few hundred reads, up to 0.1 s on a busy machine)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        found[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [child for child, parent in parents().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """``pid``'s children, theirs, and so on, from one pass over /proc."""
    tree = parents()
    found: list[int] = []
    waiting = [pid]
    while waiting:
        parent = waiting.pop()
        below = [child for child, its in tree.items() if its == parent]
        found += below
        waiting += below
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` (all its threads) has used so far; 0 once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@dataclass
class BenchStack:
    """``with BenchStack() as stack:`` the local stack on free ports; stopped and deleted on exit."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dropbox-bench-")))
    chunk_size: int = 8 * 1024 * 1024
    gateway_env: dict[str, str] = field(default_factory=dict)
    # Another checkout of this repository (its launcher, gateway and CDN tier run instead of ours): a
    # before/after in the same run (bench/control.py --other-gateway).
    checkout: Path | None = None
    process: subprocess.Popen | None = None
    started: list[int] = field(default_factory=list)  # the launcher's children: store, gateway, nginx

    def __post_init__(self) -> None:
        self.gateway_port, self.cdn_port, self.s3_port = free_port(), free_port(), free_port()
        self.metrics_port = free_port()
        self.state = self.root / "state"
        self.env = {
            **os.environ,
            "GATEWAY_S3_ACCESS_KEY": "bench",
            "GATEWAY_S3_BUCKET": "bench-content",
            "GATEWAY_CHUNK_SIZE": str(self.chunk_size),
            "GATEWAY_LOG_LEVEL": "warning",
            # Benchmarks load the data and control paths; the per-user caps would cut them short.
            "GATEWAY_MAX_UPLOADS_IN_PROGRESS": "0",
            "GATEWAY_USER_QUOTA_BYTES": "0",
            # What the requests asked of the database and the store (work()), on a listener of its own.
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            **self.gateway_env,
        }
        if self.checkout is not None:
            # `python -m` looks in the working directory first, then PYTHONPATH: both must be the checkout.
            self.checkout = self.checkout.resolve()
            self.env["PYTHONPATH"] = str(self.checkout)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def __enter__(self) -> BenchStack:
        """Start the launcher and wait until the stack is up.

        The ports are picked free before the launcher binds them, and connections (the store's own, to its
        dozen ports) take ports from the same range meanwhile: when one was taken, the launcher fails, and
        the stack starts again afresh on other ports.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._start()
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
                self.gateway_port, self.cdn_port, self.s3_port = free_port(), free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self) -> BenchStack:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "deploy.stack", "--state", str(self.state),
                   "--gateway-port", str(self.gateway_port), "--cdn-port", str(self.cdn_port),
                   "--s3-port", str(self.s3_port)]
        self.log = open(self.root / "stack.log", "w+b")
        self.process = subprocess.Popen(command, env=self.env, cwd=self.checkout, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout=120)
        except BaseException:
            self.__exit__()  # deletes the state too: a store's data keeps its ports
            raise
        self.started = children(self.process.pid)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = (self.root / "stack.log").read_text(errors="replace")
            if READY_LINE in output:
                return
            assert self.process is not None, "started above"
            if self.process.poll() is not None:
                failure = PortTaken if self._port_taken(output) else RuntimeError
                raise failure(f"the local stack exited with {self.process.returncode}:\n{output[-3000:]}")
            time.sleep(0.05)  # a coarser poll would add half of it to every start
        raise RuntimeError(f"the local stack was not up within {timeout}s; see {self.root / 'stack.log'}")

    def _port_taken(self, output: str) -> bool:
        """Whether the launcher, the gateway or the store said a port was in use (each logs it its own way:
        weed says "Port allocation failed: port N for S3 (specified by flag s3.port) is not available")."""
        logs = [output, *(path.read_text(errors="replace")[-4000:] for path in self.state.rglob("*.log"))]
        return any("in use" in text or "Port allocation failed" in text for text in logs)

    def __exit__(self, *exc) -> None:
        """Stop the stack (the launcher stops what it started) and delete its files.

        The store is killed meanwhile: its data is deleted next, and its orderly stop (over a second, most
        of it the filer's) would keep nothing. The launcher's stop of it then returns at once.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the launcher stops what it started
            for pid in self.pids("store"):
                os.kill(pid, signal.SIGKILL)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.started:  # only if the launcher could not stop them itself
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        # Gigabytes of test files and store data: never leave them behind.
        shutil.rmtree(self.root, ignore_errors=True)

    def pids(self, process: str) -> list[int]:
        """The pid of one of the stack's processes, ``gateway``, ``store`` or ``cdn`` (nginx's master), once the
        stack is up (none before)."""
        is_it = {"gateway": lambda argv: "gateway" in argv, "store": lambda argv: Path(argv[0]).name == "weed",
                 # nginx names its master "nginx: master process /usr/sbin/nginx ..." (one argument).
                 "cdn": lambda argv: argv[0].startswith("nginx")}[process]
        return [pid for pid in self.started if is_it(command_line(pid))]

    def cpu_seconds(self, process: str) -> float:
        """User + system CPU time one of the stack's processes has used so far: ``gateway`` or ``store``."""
        [pid] = self.pids(process)
        return process_cpu_seconds(pid)

    def work(self) -> dict[str, float] | None:
        """The gateway's counts of its work so far (gateway/core/metrics.py's WorkCollector): ``statements``,
        ``transactions`` and ``store`` (requests to the store); None from a gateway that does not count them
        (another checkout's, older)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        counts = {"statements": 0.0, "transactions": 0.0, "store": 0.0}
        names = {"gateway_db_statements_total": "statements", "gateway_db_transactions_total": "transactions",
                 "gateway_store_requests_total": "store"}
        found = set()
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in names:
                counts[names[name]] += float(line.rsplit(" ", 1)[1])
                found.add(name)
        return counts if "gateway_db_statements_total" in found else None

    def stack_settings(self) -> dict[str, str]:
        """``stack.env``: the secrets the launcher generated (all there once it is up: only read)."""
        return load_or_create_secrets(self.state / "stack.env")

    def gateway_environment(self) -> dict[str, str]:
        """The environment the launcher gives its gateway, to start more gateways like it (bench/cluster.py)."""
        ports = argparse.Namespace(gateway_port=self.gateway_port, s3_port=self.s3_port, cdn_port=self.cdn_port,
                                   address=None)
        # Not its metrics port: that one is this gateway's (work()); another gateway would find it taken.
        ours = {name: value for name, value in self.env.items()
                if name.startswith("GATEWAY_") and name != "GATEWAY_METRICS_PORT"}
        return {**gateway_environment(self.state, self.stack_settings(), ports), **ours}

    @property
    def bucket(self) -> str:
        return self.env["GATEWAY_S3_BUCKET"]

    def s3_credentials(self) -> dict[str, str]:
        """What an S3 client (boto3) needs to reach the store as the gateway does."""
        return {
            "endpoint_url": self.s3_endpoint,
            "aws_access_key_id": self.env["GATEWAY_S3_ACCESS_KEY"],
            "aws_secret_access_key": self.stack_settings()["GATEWAY_S3_SECRET_KEY"],
            "region_name": "us-east-1",
        }


def print_table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def api_post(gateway_url: str, path: str, body: dict, token: str | None = None) -> dict:
    """One JSON POST to the gateway's API; raises with the answer unless it is 2xx."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(gateway_url + path, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def signup(gateway_url: str, username: str | None = None, password: str = "bench password") -> tuple[str, str]:
    """Create a user through the API; return (username, access token)."""
    username = username or "bench-" + secrets.token_hex(4)
    api_post(gateway_url, "/dropbox/v1/users",
             {"username": username, "email": f"{username}@example.com", "password": password})
    return username, api_post(gateway_url, "/dropbox/v1/tokens", {"username": username, "password": password})["access_token"]


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy samples process ``pid`` while the block runs (nothing without ``output``)."""
    if output is None:
        yield
        return
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy; PY_SPY=path/to/py-spy)")
    output.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                 "--output", str(output), "--nonblocking", "--gil"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
        recorder.wait(timeout=60)
