"""The local stack (`./dev up`) as a user runs it: a real process with its real store, gateway and nginx."""
from __future__ import annotations

import dataclasses
import grp
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.postgres import postgres_bin_dir
from deploy.processes import group_members, wait_exited
from deploy.supervisor import wait_http_ok
from gateway.config import Config
from storage.embedded import free_port

pytestmark = [pytest.mark.real, pytest.mark.long]  # starts the whole local stack as processes

ROOT = Path(__file__).resolve().parent.parent


def readable_by_others(state: Path) -> list[str]:
    """Every entry under ``state`` (itself included) that its group or other users can open."""
    exposed = []
    for path in [state, *state.rglob("*")]:
        mode = path.lstat().st_mode
        # nginx makes its unix sockets 0666 itself (ngx_connection.c); their private directory guards them.
        guarded_socket = stat.S_ISSOCK(mode) and not path.parent.stat().st_mode & 0o077
        if not stat.S_ISLNK(mode) and not guarded_socket and mode & 0o077:
            exposed.append(f"{path.relative_to(state.parent)} {stat.filemode(mode)}")
    return exposed


def start_stack(state: Path, *args: str, gateway_port: int = 0, cdn_port: int = 0, s3_port: int = 0,
                timeout: float = 90.0) -> subprocess.Popen:
    """``python -m deploy.stack`` with the usual umask of a login shell (022), until it says it is up."""
    ports = ["--gateway-port", str(gateway_port or free_port()), "--cdn-port", str(cdn_port or free_port()),
             "--s3-port", str(s3_port or free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.stack", "--state", str(state), *ports, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    deadline = time.monotonic() + timeout
    output = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("press Ctrl-C"):
            return process
    process.kill()
    process.wait()
    raise AssertionError("the stack did not come up:\n" + "".join(output) + process.stdout.read())


def listening_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:``port`` (from ss)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    match = re.search(r"pid=(\d+)", out)
    assert match, f"nothing listens on port {port}: {out!r}"
    return int(match.group(1))


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class StackOutput:
    """What a running stack prints once it is up, line by line, read by a thread as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def event(self, name: str, part: str, timeout: float = 60.0) -> dict:
        """The next log event ``name`` about ``part`` (one JSON object per line), waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {name} of {part} within {timeout}s:\n" + "".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"the stack exited before {name} of {part}:\n" + "".join(self.seen))
            self.seen.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name and entry.get("part") == part:
                return entry

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop the stack as a user does (if it still runs); it must exit 0."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(60)
        self.reader.join(10)
        while not self.lines.empty():
            line = self.lines.get_nowait()
            if line is not None:
                self.seen.append(line)
        assert self.process.returncode == 0, "".join(self.seen)


def test_the_stack_keeps_its_state_to_its_user_and_starts_again_a_part_that_was_killed(tmp_path):
    """One stack for both (starting one takes most of the time): the parts it starts again write their
    files as privately as the first ones."""
    state = tmp_path / "var"
    # What an older version left: var/ 755 and a file 644 in it.
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    old = state / "gateway.log"
    old.write_text("an older run\n")
    old.chmod(0o644)

    ports = {"gateway": free_port(), "cdn": free_port(), "s3": free_port()}
    process = start_stack(state, gateway_port=ports["gateway"], cdn_port=ports["cdn"], s3_port=ports["s3"])
    output = StackOutput(process)
    gateway, cdn = (f"http://127.0.0.1:{ports[name]}" for name in ("gateway", "cdn"))
    try:
        # The secrets are where the issue found them readable, and the store's and gateway's files exist.
        assert "GATEWAY_CDN_SECRET" in (state / "stack.env").read_text()
        assert "bearer_token" in (state / "store" / "weed-config" / "notification.toml").read_text()
        assert (state / "cdn" / "cdn.conf").exists() and (state / "gateway.sqlite3").exists()
        assert readable_by_others(state) == []

        # A part that dies is logged and started again; the rest runs on.
        os.kill(listening_pid(ports["gateway"]), signal.SIGKILL)
        assert output.event("part_exited", "gateway")["how"] == "killed by SIGKILL"
        output.event("part_restarted", "gateway")
        assert get(f"{gateway}/readyz")[0] == 200

        # nginx's master: its workers, which would go on serving and hold the port, go with it.
        master = int((state / "cdn" / "nginx.pid").read_text())
        workers = set(group_members(master)) - {master}
        assert workers
        os.kill(master, signal.SIGKILL)
        output.event("part_exited", "CDN tier")
        output.event("part_restarted", "CDN tier")
        assert group_members(master) == []
        assert get(f"{cdn}/healthz")[0] == 200

        os.kill(listening_pid(ports["s3"]), signal.SIGKILL)
        output.event("part_exited", "S3 store")
        output.event("part_restarted", "S3 store")
        wait_http_ok(f"{gateway}/readyz", 30)  # the gateway reaches the store again
        assert process.poll() is None, "the stack runs on"
    finally:
        output.stop()
    for name, port in ports.items():
        assert refuses(port), f"{name} still listens on {port} after the stack stopped"
    # What the processes wrote until they stopped, too.
    assert readable_by_others(state) == []


def test_a_killed_launcher_leaves_no_part_behind(tmp_path):
    """SIGKILL gives the stack no chance to stop its parts: the kernel ends each (PR_SET_PDEATHSIG),
    a part started again after a death of its own too."""
    ports = {"gateway": free_port(), "cdn": free_port(), "s3": free_port()}
    process = start_stack(tmp_path / "var", gateway_port=ports["gateway"], cdn_port=ports["cdn"], s3_port=ports["s3"])
    output = StackOutput(process)
    try:
        os.kill(listening_pid(ports["gateway"]), signal.SIGKILL)
        output.event("part_restarted", "gateway")
        master = int((tmp_path / "var" / "cdn" / "nginx.pid").read_text())
        parts = {listening_pid(ports["gateway"]), listening_pid(ports["s3"]), *group_members(master)}
    finally:
        process.kill()
        process.wait(10)
    assert wait_exited(parts, 30), f"still running after the launcher was killed: {sorted(parts)}"
    for name, port in ports.items():
        assert refuses(port), f"{name} still listens on {port}"


# --- cluster mode ------------------------------------------------------------------------------------------

def postgres_tables(state: Path, port: int) -> list[str]:
    password = (state / "postgres" / "password").read_text().strip()
    psql = subprocess.run(
        [str(postgres_bin_dir() / "psql"), "--no-psqlrc", "--tuples-only", "--no-align",
         f"--dbname=postgresql://dropbox@127.0.0.1:{port}/dropbox",
         "-c", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"],
        env={"PGPASSWORD": password, "PATH": os.environ["PATH"]}, capture_output=True, text=True,
    )
    assert psql.returncode == 0, psql.stderr
    return psql.stdout.split()


@pytest.fixture
def cluster_state():
    """A state directory the `postgres` user can reach when we are root (pytest's tmp_path is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="stack-cluster-"))
    parent.chmod(0o755)
    yield parent / "var"
    shutil.rmtree(parent, ignore_errors=True)


def consecutive_free_ports() -> int:
    """A free port whose next one is free too (the cluster's gateways listen on a base port and the next)."""
    while True:
        base = free_port()
        if refuses(base + 1):
            return base


READS_DATABASE_URL = "database_url" in {f.name for f in dataclasses.fields(Config)}


def test_the_cluster_runs_two_gateways_behind_the_balancer_and_stops_on_sigterm(cluster_state):
    ports = {"gateway": free_port(), "postgres": free_port(), "redis": free_port()}
    base = consecutive_free_ports()
    gateway_ports = [base, base + 1]
    process = start_stack(
        cluster_state, "--cluster", "--postgres-port", str(ports["postgres"]), "--redis-port", str(ports["redis"]),
        "--gateway-base-port", str(base), gateway_port=ports["gateway"],
    )
    output = StackOutput(process)
    lb = f"http://127.0.0.1:{ports['gateway']}"
    try:
        for _ in range(4):
            assert get(f"{lb}/dropbox/v1/config")[0] == 200
        log = [json.loads(line) for line in (cluster_state / "lb" / "access.log").read_text().splitlines()]
        assert {entry["upstream"] for entry in log} >= {f"127.0.0.1:{port}" for port in gateway_ports}
        tables = postgres_tables(cluster_state, ports["postgres"])

        # Losing a gateway: the balancer serves from the other one, the stack starts it again.
        os.kill(listening_pid(gateway_ports[0]), signal.SIGKILL)
        for _ in range(4):
            assert get(f"{lb}/dropbox/v1/config")[0] == 200
        # Its port accepts a connection until the killed process is gone: wait for the stack's word instead.
        output.event("part_exited", "gateway 1")
        output.event("part_restarted", "gateway 1")
        assert get(f"http://127.0.0.1:{gateway_ports[0]}/readyz")[0] == 200

        # Only the stack's user reads its state; as root, PostgreSQL's user may pass through var/ (not list it).
        exposed = readable_by_others(cluster_state)
        if os.geteuid() == 0:
            assert exposed == [f"var {stat.filemode(stat.S_IFDIR | 0o710)}"]
            assert cluster_state.stat().st_gid == grp.getgrnam("postgres").gr_gid
        else:
            assert exposed == []
    finally:
        output.stop(signal.SIGTERM)
    for name, port in {**ports, "gateway 1": gateway_ports[0], "gateway 2": gateway_ports[1]}.items():
        assert refuses(port), f"{name} still listens on {port} after SIGTERM"
    assert not (cluster_state / "postgres" / "data" / "postmaster.pid").exists()
    assert readable_by_others(cluster_state) == [], "the stack closes var/ again when it stops"

    # The metadata is in PostgreSQL, not in a SQLite file both gateways would share.
    if not READS_DATABASE_URL:
        assert not tables
        pytest.xfail("the gateway reads GATEWAY_DATABASE_URL once branch core is merged; all else passed")
    assert tables, "the gateways created no table in PostgreSQL"
    assert not (cluster_state / "gateway.sqlite3").exists(), "a gateway used SQLite"


def listening_on(address: str) -> set[int]:
    """The TCP ports something listens on at ``address`` (from ss)."""
    out = subprocess.run(["ss", "-Hltn", f"src {address}"], capture_output=True, text=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


async def test_other_machines_use_the_stack_on_the_address_given(tmp_path, http):
    """./dev up --address: the URLs clients get name that address, and the three ports there reach the parts.

    127.0.0.2 stands in for a LAN address (this machine binds to loopback only); nothing else of the
    stack (the store's internal ports, PostgreSQL, the gateway itself) listens there.
    """
    from bench.control import random_claim
    from tests.harness import Api, upload

    address = "127.0.0.2"
    ports = {"gateway": free_port(), "cdn": free_port(), "s3": free_port()}
    process = start_stack(tmp_path / "var", "--address", address, gateway_port=ports["gateway"],
                          cdn_port=ports["cdn"], s3_port=ports["s3"])
    output = StackOutput(process)
    try:
        assert listening_on(address) == set(ports.values())
        user = await Api(http, f"http://{address}:{ports['gateway']}").signup()
        data = os.urandom(3 * 1024 * 1024 + 17)
        uploaded = await upload(user, data, Config.chunk_size, file_name="from-another-machine.bin")
        assert uploaded["status"] == "uploaded"
        started = (await user.post("/dropbox/v1/files", json=random_claim(Config.chunk_size, chunks=1))).body
        urls = (await user.post(f"/dropbox/v1/files/{started['file_id']}/upload-urls", json={"chunks": [0]})).body["urls"]
        assert urls[0]["url"].startswith(f"http://{address}:{ports['s3']}/"), urls  # the chunks went that way
        download_url = (await user.get(f"/dropbox/v1/files/{uploaded['file_id']}")).body["download_url"]
        assert download_url.startswith(f"http://{address}:{ports['cdn']}/")
        async with http.get(download_url) as answer:
            assert answer.status == 200 and await answer.read() == data
    finally:
        output.stop()
