"""A private Redis on 127.0.0.1 for the local stack's cluster mode: the gateways' shared cache.

Debian's ``redis-server`` with a configuration of our own, never the system
service. Everything lives under one directory (like deploy/postgres.py's cluster)::

    <root>/redis.conf   bind, port, password (0600: it holds the password)
    <root>/password     the password, generated on the first start (0600)
    <root>/redis.log    the server's log

Loopback only, no Unix socket, a password: another local user cannot read or
write the cache (whoever writes the cache decides what the gateways believe about
permissions). Nothing is saved to disk: it is a cache, the database is the truth.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from deploy.processes import kill_group, spawn_group
from storage.embedded import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if not found:
        raise RuntimeError("redis-server is missing: apt-get install redis-server")
    return found


def config_text(root: Path, port: int, password: str) -> str:
    return (
        "bind 127.0.0.1\n"
        f"port {port}\n"
        "protected-mode yes\n"
        f'requirepass "{password}"\n'
        f"dir {root}\n"
        f"logfile {root / 'redis.log'}\n"
        "daemonize no\n"
        'save ""\n'
        "appendonly no\n"
    )


@dataclass
class LocalRedis:
    root: Path
    port: int = 0  # 0: a free port, chosen at start
    password: str = ""
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> LocalRedis:
        self.root = Path(self.root).resolve()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = self.port or free_port()
        password_file = self.root / "password"
        if not password_file.exists():
            password_file.touch(mode=0o600)
            password_file.write_text(secrets.token_hex(24))  # hex: nothing to quote in redis.conf or a URL
        self.password = password_file.read_text().strip()
        conf = self.root / "redis.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(config_text(self.root, self.port, self.password))
        # Tied to the launcher's life (deploy/processes.py): a killed launcher leaves no Redis behind.
        self.process = spawn_group(
            [redis_binary(), str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    assert self.process is not None, "started before waiting"
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.root / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s; see {self.root / 'redis.log'}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            kill_group(self.process, timeout)
