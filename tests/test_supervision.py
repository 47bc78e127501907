"""The local stack's parts are watched and repaired (deploy/supervisor.py), and nothing of an nginx
outlives its launcher, however either ends (deploy/processes.py, cdn/nginx.py's NginxServer).

The whole stack under a killed part is in tests/test_stack.py.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cdn.nginx import NginxServer, ensure_port_free, start_local_cdn
from deploy.balancer import start_balancer
from deploy.processes import group_members, wait_exited
from deploy.stack import nginx_component
from deploy.supervisor import Backoff, Component, Supervisor
from storage.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent

# --- restarts and their backoff, on a clock the test moves ----------------------------------------------


class Part:
    """A component's process, stood in for: it runs until the test says it exited."""

    def __init__(self, clock: list[float], fail_starts: int = 0) -> None:
        self.clock = clock
        self.running = True
        self.starts: list[float] = []
        self.stops = 0
        self.fail_starts = fail_starts

    def start(self) -> None:
        self.starts.append(self.clock[0])
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("it exited before it was ready")
        self.running = True

    def stop(self) -> None:
        self.stops += 1
        self.running = False

    def component(self, name: str = "part", restartable: bool = True) -> Component:
        return Component(name, self.stop, lambda: self.running, self.start if restartable else None, lambda: -9)


def watch(supervisor: Supervisor, clock: list[float], seconds: float, poll: float = 0.25, part: Part | None = None):
    """Run the supervisor's checks for ``seconds`` of the test's clock; ``part`` dies at once after each start."""
    for _ in range(int(seconds / poll)):
        supervisor.check()
        if part is not None:
            part.running = False
        clock[0] += poll


def test_a_part_that_exits_is_logged_and_started_again_at_once():
    clock = [0.0]
    supervisor = Supervisor(clock=lambda: clock[0])
    part = Part(clock)
    supervisor.add(part.component("gateway"))
    clock[0] = 100.0
    part.running = False
    with capture_logs() as logs:
        assert supervisor.check() is None
    assert part.starts == [100.0] and part.running
    assert part.stops == 1, "what is left of it is stopped first (nginx's workers)"
    assert [(e["event"], e["part"]) for e in logs] == [
        ("part_exited", "gateway"), ("part_restarting", "gateway"), ("part_restarted", "gateway")]
    assert logs[0]["how"] == "killed by SIGKILL" and logs[0]["log_level"] == "warning"


def test_a_part_that_dies_at_once_every_time_is_started_again_less_and_less_often():
    clock = [0.0]
    supervisor = Supervisor(backoff=Backoff(first=1, longest=8, settle=30), clock=lambda: clock[0])
    part = Part(clock)
    supervisor.add(part.component("CDN tier"))
    with capture_logs() as logs:
        watch(supervisor, clock, 60, part=part)
    gaps = [later - earlier for earlier, later in itertools.pairwise(part.starts)]
    # The first exit costs nothing; then 1, 2, 4 and at most 8 seconds (plus the 0.25 s between checks).
    assert gaps[:5] == [1.25, 2.25, 4.25, 8.25, 8.25], gaps
    assert len(part.starts) < 12, "it spun"
    delayed = [e for e in logs if e["event"] == "part_restart_delayed"]
    assert [e["delay_seconds"] for e in delayed[:5]] == [1, 2, 4, 8, 8]
    assert delayed[0]["exits_in_a_row"] == 2 and "in a row" in delayed[0]["reason"]

    # Once it stays up past `settle`, its next exit is a first one again: started at once.
    part.running = True
    watch(supervisor, clock, 40)
    part.running = False
    before = len(part.starts)
    with capture_logs() as logs:
        supervisor.check()
    assert len(part.starts) == before + 1 and not [e for e in logs if e["event"] == "part_restart_delayed"]


def test_a_start_that_fails_is_cleaned_up_logged_and_tried_again_later():
    clock = [0.0]
    supervisor = Supervisor(backoff=Backoff(first=2, longest=60, settle=30), clock=lambda: clock[0])
    part = Part(clock, fail_starts=2)
    supervisor.add(part.component("S3 store"))
    part.running = False
    with capture_logs() as logs:
        watch(supervisor, clock, 10)
    assert part.starts == [0.0, 2.0, 6.0] and part.running
    events = [e["event"] for e in logs]
    assert events.count("part_restart_failed") == 2 and events[-1] == "part_restarted"
    assert part.stops == 3, "each failed start is stopped: nothing of it is left running"
    failed = next(e for e in logs if e["event"] == "part_restart_failed")
    assert failed["error"] == "it exited before it was ready" and failed["log_level"] == "error"


def test_a_part_that_cannot_be_started_again_stops_the_stack():
    clock = [0.0]
    supervisor = Supervisor(clock=lambda: clock[0])
    part = Part(clock)
    component = supervisor.add(part.component("state directory", restartable=False))
    part.running = False
    assert supervisor.check() is component and part.starts == []


# --- nginx: the launcher owns every process of it --------------------------------------------------------

# The CDN tier needs no store to start and answer /healthz: its address is never asked here.
CDN_ENV = {"GATEWAY_S3_ENDPOINT": "http://127.0.0.1:9", "GATEWAY_CDN_SECRET": "s" * 32,
           "CDN_S3_ACCESS_KEY": "cdn", "CDN_S3_SECRET_KEY": "k" * 32}


def start_nginx(kind: str, state_dir: Path, port: int) -> NginxServer:
    """The CDN tier or the cluster's load balancer (in front of a port nobody listens on), two workers each."""
    if kind == "cdn":
        return start_local_cdn(state_dir, CDN_ENV, port, workers="2")
    return start_balancer(state_dir, port, [free_port()], workers="2")


@pytest.fixture(params=["cdn", "balancer"])
def kind(request) -> str:
    return request.param


@pytest.mark.real  # runs nginx
def test_a_killed_master_leaves_no_worker_behind_and_is_started_again(kind, tmp_path):
    port = free_port()
    server = start_nginx(kind, tmp_path / kind, port)
    supervisor = Supervisor()
    supervisor.add(nginx_component(server))
    try:
        assert server.process is not None
        master, before = server.process.pid, server.pids()
        assert len(before) >= 3, f"a master and two workers: {before}"
        os.kill(master, signal.SIGKILL)
        server.process.wait(10)  # the launcher's child exited
        assert group_members(master), "its workers outlive it, serving on its port, until the group is stopped"

        with capture_logs() as logs:
            assert supervisor.check() is None
        assert [e["event"] for e in logs if e["event"].startswith("part_")] == [
            "part_exited", "part_restarting", "part_restarted"]
        assert logs[0]["how"] == "killed by SIGKILL"
        assert wait_exited(before, 0), "none of the killed master's processes is left"
        assert group_members(master) == []
        assert server.alive() and server.answers() and server.process.pid != master
    finally:
        server.stop()
    assert server.pids() == []
    ensure_port_free(port)


LAUNCHER = """
import sys
from pathlib import Path
from tests.test_supervision import start_nginx
server = start_nginx(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
print(f"master={server.process.pid}", flush=True)
sys.stdin.read()  # until it is killed
"""


@pytest.mark.real  # runs nginx from a launcher process
def test_nginx_ends_with_its_launcher_even_when_the_launcher_is_killed(kind, tmp_path):
    port = free_port()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, kind, str(tmp_path / kind), str(port)], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    output = [launcher.stdout.readline()]
    while output[-1] and not output[-1].startswith("master="):
        output.append(launcher.stdout.readline())  # its log, until it names the master
    assert output[-1], f"the launcher did not start nginx: {output}"
    master = int(output[-1].removeprefix("master="))
    processes = group_members(master)
    try:
        assert master in processes and len(processes) >= 3
        launcher.kill()
        launcher.wait(10)
        assert wait_exited(processes, 10), f"left behind: {group_members(master)}"
    finally:
        launcher.kill()
        launcher.wait()
        for pid in group_members(master):  # only when the test failed: leave nothing to the next run
            os.kill(pid, signal.SIGKILL)
    ensure_port_free(port)
    start_nginx(kind, tmp_path / kind, port).stop()  # a new start on the same port and state works
