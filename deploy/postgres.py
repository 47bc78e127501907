"""A private PostgreSQL cluster on 127.0.0.1, for the tests and the local stack's cluster mode.

Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``, ``createdb``), never the
system service: the cluster lives under one directory of its own::

    <root>/data/         PGDATA (initdb'd on the first start, reused afterwards)
    <root>/password      the superuser's password (0600), generated on the first start
    <root>/postgres.log  the server's log

It listens on TCP 127.0.0.1 only (no Unix socket in a shared directory) and
asks for the password (scram-sha-256), so another local user cannot walk in.

PostgreSQL refuses to run as root: when we are root, every command runs as the
``postgres`` system user (Debian's package creates it), which then owns
``<root>``; its parent directories must let that user through (a directory
under /tmp does, pytest's 0700 tmp_path does not).

    cluster = PostgresCluster(Path("var/postgres"), port=5433).start()
    cluster.url              # postgresql://dropbox:...@127.0.0.1:5433/dropbox
    cluster.create_database("other")
    cluster.stop()
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from storage.embedded import free_port

DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"  # Debian keeps each major version apart
# Settings for a throwaway cluster (the tests): durability traded for speed.
UNSAFE_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def postgres_bin_dir() -> Path:
    """Where initdb and pg_ctl are: $POSTGRES_BIN_DIR, Debian's versioned directory, or the PATH."""
    debian = sorted(glob.glob(DEBIAN_BIN_DIRS), key=lambda path: int(Path(path).parent.name), reverse=True)
    candidates = [os.environ.get("POSTGRES_BIN_DIR", ""), *debian]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL's initdb is missing: apt-get install postgresql (or set POSTGRES_BIN_DIR)")


@dataclass
class PostgresCluster:
    root: Path
    port: int = 0  # 0: a free port, chosen at start
    user: str = "dropbox"  # the cluster's superuser
    database: str = "dropbox"  # created on the first start; what ``url`` names
    settings: dict[str, str] = field(default_factory=dict)  # extra postgresql.conf settings
    run_as: str = "postgres"  # the system user when we are root
    password: str = ""
    # initdb syncs the new cluster's files to disk; a throwaway cluster (a benchmark's) may skip that:
    # seconds on a busy disk, for files deleted within minutes. The server's own settings stay as they are.
    sync_init: bool = True

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    # --- start and stop ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PostgresCluster:
        self.root = self.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.port = self.port or free_port()
        password_file = self.root / "password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(24))
        password_file.chmod(0o600)
        self.password = password_file.read_text().strip()
        self._hand_over(self.root)
        first_start = not (self.data_dir / "PG_VERSION").exists()
        if first_start:
            self._run(
                "initdb",
                f"--pgdata={self.data_dir}",
                f"--username={self.user}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                *([] if self.sync_init else ["--no-sync"]),
            )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            **self.settings,
        }
        server_options = " ".join(f"-c {name}={value}" for name, value in options.items())
        self._run(
            "pg_ctl", "start", "--wait", f"--timeout={int(timeout)}",
            f"--pgdata={self.data_dir}", f"--log={self.log_path}", f"--options={server_options}",
        )
        self._wait_ready(timeout)
        if first_start:
            self.create_database(self.database)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: open sessions are ended); the data stays."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "stop", "--wait", "--mode=fast", f"--timeout={int(timeout)}", f"--pgdata={self.data_dir}")

    def destroy(self) -> None:
        """Stop and delete everything: for throwaway clusters (the tests)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- databases --------------------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` (optionally a copy of ``template``); return its URL."""
        args = ["createdb", *self._client_args()]
        if template:
            args.append(f"--template={template}")
        self._run(*args, name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self._run("dropdb", *self._client_args(), "--if-exists", "--force", name)

    # --- helpers ----------------------------------------------------------------------------------

    def _client_args(self) -> list[str]:
        return ["--host=127.0.0.1", f"--port={self.port}", f"--username={self.user}", "--no-password"]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = self._run("pg_isready", "--host=127.0.0.1", f"--port={self.port}", check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections within {timeout}s; see {self.log_path}")
            time.sleep(0.1)

    def _as_other_user(self) -> bool:
        return os.geteuid() == 0

    def _hand_over(self, path: Path) -> None:
        """As root: give the cluster's directory to ``run_as`` and check it can get there."""
        if not self._as_other_user():
            return
        account = pwd.getpwnam(self.run_as)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, account.pw_uid, account.pw_gid)
        reachable = subprocess.run(
            ["test", "-w", str(path)], user=self.run_as, group=account.pw_gid, extra_groups=[], check=False
        )
        if reachable.returncode != 0:
            raise RuntimeError(
                f"{path} is not reachable by the {self.run_as!r} user PostgreSQL runs as "
                "(a parent directory is closed to it); put the cluster under a directory it can traverse, e.g. /tmp"
            )

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGPASSWORD": self.password,
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }
        command = [str(postgres_bin_dir() / program), *args]
        other = self._as_other_user()
        result = subprocess.run(
            command,
            env=env,
            cwd=self.root if other else None,
            user=self.run_as if other else None,
            group=pwd.getpwnam(self.run_as).pw_gid if other else None,
            extra_groups=[] if other else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
                + (f"; see {self.log_path}" if program == "pg_ctl" else "")
            )
        return result
