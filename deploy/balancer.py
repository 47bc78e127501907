"""The gateways' load balancer (nginx) of the local stack's cluster mode.

deploy/lb.conf.template holds the policy (which requests may go to a second
gateway, the error bodies, what is logged); docker-compose.scale.yml uses the
same template. Here we render it with our settings, write the upstream block
for the local gateways' ports, and run nginx in the foreground with its pid,
temp files and log under one state directory.
"""
from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cdn.nginx import SAFE_VALUE, TEMP_DIRS, NginxServer, events_block, nginx_binary, read_json_log, render

TEMPLATE_PATH = Path(__file__).with_name("lb.conf.template")
# Compose's upstream block (the gateway service's replicas, resolved by Docker's DNS).
COMPOSE_UPSTREAM_PATH = Path(__file__).with_name("lb-upstream.conf")


def upstream_block(ports: list[int], *, fail_timeout: str = "10s") -> str:
    """The `gateways` upstream for gateways on 127.0.0.1: a gateway that fails once is
    left alone for ``fail_timeout``; the zone shares that knowledge between workers."""
    servers = "".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout={fail_timeout};\n" for port in ports)
    # Idle connections to the gateways end before the gateways end them (GATEWAY_HEADER_TIMEOUT, 20 s):
    # a request sent on a connection the gateway is closing would fail.
    return ("upstream gateways {\n    zone gateways 64k;\n" + servers
            + "    keepalive 16;\n    keepalive_timeout 10s;\n}\n")


def settings(listen: str, access_log: Path | str, read_timeout: str = "60s", *, header_timeout: str = "10s",
             body_timeout: str = "30s", connections_per_address: int = 256) -> dict[str, str]:
    return {"LB_LISTEN": listen, "LB_ACCESS_LOG": str(access_log), "LB_READ_TIMEOUT": read_timeout,
            "LB_HEADER_TIMEOUT": header_timeout, "LB_BODY_TIMEOUT": body_timeout,
            "LB_CONNECTIONS_PER_ADDRESS": str(connections_per_address)}


def main_config(state_dir: Path, workers: str, connections: int | None = None) -> str:
    """``connections``: worker_connections exactly (a test's small number); None: sized for the machine."""
    temp_paths = "".join(f"    {name}_temp_path {state_dir / 'temp' / name};\n" for name in TEMP_DIRS)
    # As root, nginx would run its workers as nobody, who cannot enter a private state directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}"
        f"worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {state_dir / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        f"{events_block(connections)}"
        "http {\n"
        "    keepalive_timeout 65;\n"
        f"{temp_paths}"
        f"    include {state_dir / 'upstream.conf'};\n"
        f"    include {state_dir / 'lb.conf'};\n"
        "}\n"
    )


def write_config(
    state_dir: Path, port: int, upstream_ports: list[int], *, workers: str = "auto", read_timeout: str = "60s",
    fail_timeout: str = "10s", header_timeout: str = "10s", connections: int | None = None,
) -> Path:
    """Write the balancer's configuration under ``state_dir``; return the main file."""
    state_dir = Path(state_dir).resolve()
    if not SAFE_VALUE.fullmatch(str(state_dir)):
        raise ValueError(f"nginx's configuration cannot name the state directory {state_dir}")
    for name in TEMP_DIRS:
        (state_dir / "temp" / name).mkdir(parents=True, exist_ok=True)
    values = settings(f"127.0.0.1:{port}", state_dir / "access.log", read_timeout, header_timeout=header_timeout)
    (state_dir / "lb.conf").write_text(render(values, TEMPLATE_PATH.read_text()))
    (state_dir / "upstream.conf").write_text(upstream_block(upstream_ports, fail_timeout=fail_timeout))
    main = state_dir / "nginx.conf"
    main.write_text(main_config(state_dir, workers, connections))
    return main


def check_config(main: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on a written configuration."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(main.parent), "-c", str(main), "-e", "stderr"],
        capture_output=True, text=True,
    )


@dataclass
class LocalBalancer(NginxServer):
    what: ClassVar[str] = "load balancer"

    def answers(self) -> bool:
        """Whether nginx answers at all: the gateways behind it may still be starting."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # the balancer's own 404: nginx is serving
        except OSError:
            return False

    def access_log(self) -> list[dict]:
        """The access log so far, one dict per request (a line still being written is left out)."""
        return read_json_log(self.state_dir / "access.log")

    def logged(self, method: str, path: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """The log lines of ``method path``, once there are ``count`` of them (or ``timeout`` passed).

        nginx writes a request's line after its answer has gone out: a client that
        reads the log right after its last answer may be there first.
        """
        deadline = time.monotonic() + timeout
        while True:
            entries = [e for e in self.access_log() if e["method"] == method and e["path"] == path]
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)


def start_balancer(
    state_dir: Path, port: int, upstream_ports: list[int], *, workers: str = "auto", read_timeout: str = "60s",
    fail_timeout: str = "10s", timeout: float = 15.0, header_timeout: str = "10s", connections: int | None = None,
) -> LocalBalancer:
    """Run the balancer on 127.0.0.1:``port`` in front of gateways on ``upstream_ports``.

    Ready when nginx answers at all: the gateways behind it may still be starting.
    """
    main = write_config(state_dir, port, upstream_ports, workers=workers, read_timeout=read_timeout,
                        fail_timeout=fail_timeout, header_timeout=header_timeout, connections=connections)
    return LocalBalancer(port, main.parent).start(timeout)
