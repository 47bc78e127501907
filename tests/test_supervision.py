"""Nothing of an nginx outlives its launcher, however either ends (deploy/processes.py, cdn/nginx.py's NginxServer)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cdn.nginx import NginxServer, ensure_port_free, start_local_cdn
from deploy.balancer import start_balancer
from deploy.processes import group_members, wait_exited
from storage.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent

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
