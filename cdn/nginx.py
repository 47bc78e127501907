"""The CDN tier's nginx: render cdn/nginx.conf.template and run it locally.

The template is an http-level conf.d file, so the official nginx image renders
and includes it as it is (docker-compose, with cdn/nginx.main.conf as the main
configuration). Locally we render it ourselves, substituting only our
``${UPPER_CASE}`` settings, and wrap it in a main configuration that loads njs,
passes the secrets to the workers and keeps the pid, temp files, cache, access
log and the store fetcher's socket under one private state directory.

The secrets (SECRETS) reach nginx through its environment only: no file we
write holds them. NginxServer runs nginx (this tier's and deploy/balancer.py's)
as a process group the launcher owns: nothing of it outlives a stop, a killed
master or a killed launcher.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self
from urllib.parse import urlsplit

import structlog

from deploy.processes import group_members, kill_group, spawn_group
from gateway.config import Config

log = structlog.get_logger("cdn.nginx")

TEMPLATE_PATH = Path(__file__).with_name("nginx.conf.template")
NJS_DIR = Path(__file__).parent  # signing.js
# What cdn/signing.js reads from the environment: the gateway's URL signing key
# and the tier's read-only store key.
SECRETS = ("GATEWAY_CDN_SECRET", "CDN_S3_ACCESS_KEY", "CDN_S3_SECRET_KEY")
JS_MODULE_PATHS = (
    "/usr/lib/nginx/modules/ngx_http_js_module.so",  # Debian's libnginx-mod-http-js
    "/usr/lib64/nginx/modules/ngx_http_js_module.so",
    "/etc/nginx/modules/ngx_http_js_module.so",  # nginx.org's packages
)
# sockaddr_un holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
SETTING = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A value is pasted into the configuration as it is: nothing that could end a
# string or a directive, escape, or reference an nginx variable.
SAFE_VALUE = re.compile(r"[A-Za-z0-9._~:/+=@%-]+")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render(values: dict[str, str], template: str | None = None) -> str:
    """Fill in the template's ``${NAME}`` settings; nginx's own ``$name`` variables stay."""
    template = TEMPLATE_PATH.read_text() if template is None else template
    wanted = set(SETTING.findall(template))
    missing = sorted(wanted - values.keys())
    if missing:
        raise ValueError(f"the CDN configuration needs {', '.join(missing)}")
    for name in wanted:
        if not SAFE_VALUE.fullmatch(values[name]):
            raise ValueError(f"{name} has characters nginx's configuration cannot hold: {values[name]!r}")
    return SETTING.sub(lambda match: values[match.group(1)], template)


# Connections each nginx worker takes at most, whatever the machine allows: 2,050 held open by one
# client exhausted the 1,024 of before (issue 24); an idle one costs a few hundred bytes.
MAX_WORKER_CONNECTIONS = 16384


def connection_limits(open_files: int | None = None) -> tuple[int, int]:
    """(worker_connections, worker_rlimit_nofile) for this machine: as many connections as the
    open-file limit nginx may raise itself to allows, two descriptors each (a proxied request
    holds a client's and an upstream's), at most MAX_WORKER_CONNECTIONS."""
    if open_files is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        open_files = 2 * MAX_WORKER_CONNECTIONS if hard == resource.RLIM_INFINITY else hard
    files = min(open_files, 2 * MAX_WORKER_CONNECTIONS)
    return max(files // 2, 256), files


def events_block(connections: int | None = None) -> str:
    """The main configuration's connection settings (connection_limits), or ``connections`` exactly."""
    limit, files = connection_limits()
    if connections is not None:
        limit = connections
    return f"worker_rlimit_nofile {files};\nevents {{ worker_connections {limit}; }}\n"


def fetcher_socket_path(state_dir: Path) -> Path:
    return state_dir / "store-fetcher.sock"


def settings(env: dict[str, str], listen: str, state_dir: Path) -> dict[str, str]:
    """The template's settings from the gateway's GATEWAY_* environment."""
    endpoint = urlsplit(env.get("GATEWAY_S3_ENDPOINT", Config.s3_endpoint))
    if endpoint.scheme != "http":
        raise ValueError("the local CDN tier reaches the store over http only")
    fetcher_socket = fetcher_socket_path(state_dir)
    if len(str(fetcher_socket)) > MAX_SOCKET_PATH:
        raise ValueError(f"the state directory's path is too long for a unix socket: {fetcher_socket}")
    return {
        "CDN_LISTEN": listen,
        "CDN_STORE_HOST": endpoint.netloc,
        "CDN_STORE_REGION": env.get("GATEWAY_S3_REGION", Config.s3_region),
        "CDN_STORE_FETCHER": f"unix:{fetcher_socket}",
        "CDN_NJS_DIR": str(NJS_DIR),
        "CDN_CACHE_DIR": str(state_dir / "cache"),
        "CDN_CACHE_MAX_SIZE": env.get("CDN_CACHE_MAX_SIZE", "10g"),
        "CDN_ACCESS_LOG": str(state_dir / "access.log"),
        "GATEWAY_S3_BUCKET": env.get("GATEWAY_S3_BUCKET", Config.s3_bucket),
    }


def secret_environment(env: dict[str, str]) -> dict[str, str]:
    """nginx's whole environment: the secrets cdn/signing.js reads, and nothing else."""
    missing = [name for name in SECRETS if not env.get(name)]
    if missing:
        raise ValueError(f"the CDN tier needs {', '.join(missing)}")
    return {name: env[name] for name in SECRETS}


def js_module() -> str:
    found = next((path for path in JS_MODULE_PATHS if Path(path).exists()), None)
    if found is None:
        raise RuntimeError("nginx's njs module is missing: apt-get install libnginx-mod-http-js")
    return found


def main_config(state_dir: Path, workers: str, js_module_path: str, *, front: bool = False) -> str:
    """The main configuration around the rendered template (cdn/nginx.main.conf's local twin); ``front``:
    with the server blocks of front.conf too (start_local_cdn)."""
    temp_paths = "".join(f"    {name}_temp_path {state_dir / 'temp' / name};\n" for name in TEMP_DIRS)
    # As root, nginx would run its workers as nobody, who cannot enter a private state directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    env_lines = "".join(f"env {name};\n" for name in SECRETS)
    return (
        f"{user}"
        f"load_module {js_module_path};\n"
        f"{env_lines}"
        f"worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {state_dir / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        f"{events_block()}"
        "http {\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    keepalive_timeout 65;\n"
        f"{temp_paths}"
        f"    include {state_dir / 'cdn.conf'};\n"
        + (f"    include {state_dir / 'front.conf'};\n" if front else "")
        + "}\n"
    )


def ensure_port_free(port: int) -> None:
    """Fail clearly now: otherwise another server on the port would answer our readiness check."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is in use; the CDN tier cannot listen there") from exc


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is missing: apt-get install nginx-light")
    return found


def read_json_log(path: Path) -> list[dict]:
    """An nginx JSON access log so far, one dict per line (a line nginx is still writing is left out)."""
    entries = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


@dataclass
class NginxServer:
    """nginx in the foreground with everything under ``state_dir``, owning all of its processes.

    The master is the leader of a process group of its own (deploy/processes.py): stopping
    ends the whole group, also after the master was killed and left its workers serving as
    orphans, and the kernel stops the master if the launcher dies. ``start`` clears what an
    earlier run left, so it also starts the server again after it exited.
    """

    port: int
    state_dir: Path
    env: dict[str, str] | None = field(default=None, repr=False)  # nginx's whole environment; None: ours
    process: subprocess.Popen | None = None
    what: ClassVar[str] = "nginx"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "nginx.log"

    def answers(self) -> bool:
        """Whether nginx serves on its port (one attempt)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """What must be cleared before nginx starts (after a stop or a crash)."""

    def start(self, timeout: float = 15.0) -> Self:
        self.stop()  # what an earlier run left: a killed master's workers hold the port
        ensure_port_free(self.port)
        self.prepare()
        main = self.state_dir / "nginx.conf"
        with open(self.log_path, "ab") as log_file:
            logged_before = log_file.tell()  # what earlier runs wrote: not this run's error
            self.process = spawn_group(
                [nginx_binary(), "-p", str(self.state_dir), "-c", str(main), "-e", "stderr"],
                stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_bytes()[logged_before:][-2000:].decode(errors="replace")
                raise RuntimeError(f"nginx ({self.what}) exited with {self.process.returncode}:\n{tail}")
            if self.answers():
                log.info("nginx_started", what=self.what, url=self.url, state_dir=str(self.state_dir))
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx ({self.what}) did not answer on {self.url} within {timeout}s; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def pids(self) -> list[int]:
        """The live processes of its group: the master and its workers (or what is left of them)."""
        return [] if self.process is None else group_members(self.process.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nginx's fast shutdown) to the whole group, SIGKILL to what lingers."""
        if self.process is None or not self.pids():
            return
        kill_group(self.process, timeout)
        log.info("nginx_stopped", what=self.what, port=self.port)


@dataclass
class LocalCdn(NginxServer):
    what: ClassVar[str] = "CDN tier"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def access_log_path(self) -> Path:
        return self.state_dir / "access.log"

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def prepare(self) -> None:
        # A socket left by an nginx that was killed would stop this one from listening.
        fetcher_socket_path(self.state_dir).unlink(missing_ok=True)

    def access_log(self) -> list[dict]:
        """The access log so far, one dict per line (a line nginx is still writing is left out)."""
        return read_json_log(self.access_log_path)

    def log_entries(self, request_id: str, kind: str = "download", timeout: float = 3.0) -> list[dict]:
        """The log lines of one request (``X-Request-Id``), waiting briefly: nginx logs after the answer."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.access_log() if e.get("request_id") == request_id and e.get("kind") == kind]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def cache_status(self, request_id: str) -> str:
        """HIT, MISS, ... of one download, from the access log: clients are not told."""
        entries = self.log_entries(request_id)
        if not entries:
            raise LookupError(f"no access log line for request {request_id} in {self.access_log_path}")
        return entries[-1]["cache"]


def start_local_cdn(
    state_dir: Path, env: dict[str, str], port: int, *, workers: str = "auto", timeout: float = 15.0,
    template: str | None = None, front: str = "",
) -> LocalCdn:
    """Run nginx in the foreground on 127.0.0.1:``port`` with everything under ``state_dir``.

    ``env`` holds the gateway's GATEWAY_* settings and the tier's SECRETS; ``template`` replaces
    cdn/nginx.conf.template's text (a test's changed setting); ``front``: more server blocks for the
    same nginx (the local stack's proxies on an address other machines use, deploy/lan.py).
    """
    state_dir = Path(state_dir).resolve()
    if not SAFE_VALUE.fullmatch(str(state_dir)):
        raise ValueError(f"nginx's configuration cannot name the state directory {state_dir}")
    nginx_env = secret_environment(env)
    values = settings(env, f"127.0.0.1:{port}", state_dir)
    # Private: whoever can reach the store fetcher's socket reads any content by its fingerprint.
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    for name in TEMP_DIRS:
        (state_dir / "temp" / name).mkdir(parents=True, exist_ok=True)
    (state_dir / "cache").mkdir(parents=True, exist_ok=True)
    (state_dir / "cdn.conf").write_text(render(values, template))
    if front:
        (state_dir / "front.conf").write_text(front)
    (state_dir / "nginx.conf").write_text(main_config(state_dir, workers, js_module(), front=bool(front)))
    return LocalCdn(port, state_dir, nginx_env).start(timeout)
