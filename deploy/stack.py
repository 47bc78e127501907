"""The local stack: embedded S3 store, gateway and CDN tier on 127.0.0.1.

``./dev up`` runs this; ``./dev up --cluster`` runs the gateway as several
processes on PostgreSQL and Redis behind an nginx load balancer at the
gateway's usual address. State (the store's data, the database, generated
secrets, the nginx cache) lives under ``var/``; Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import grp
import os
import secrets
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from cdn.nginx import NginxServer, start_local_cdn
from deploy import lan
from deploy.balancer import start_balancer
from deploy.postgres import PostgresCluster
from deploy.processes import spawn_group
from deploy.redis_server import LocalRedis
from deploy.supervisor import Component, GatewayProcess, Supervisor, wait_http_ok
from gateway.logs import configure_logging
from storage.embedded import EmbeddedStore

# CDN_S3_SECRET_KEY: the CDN tier's read-only store key, for nginx alone.
SECRET_NAMES = (
    "GATEWAY_S3_SECRET_KEY", "GATEWAY_JWT_SECRET", "GATEWAY_EVENTS_TOKEN", "GATEWAY_CDN_SECRET", "CDN_S3_SECRET_KEY"
)
# Files the stack and its processes create are for its own user only: the secrets
# end up in several of them (cdn.conf, the store's notification.toml, stack.env).
PRIVATE_UMASK = 0o077


def private_state_dir(path: Path) -> Path:
    """Create ``path`` 0700, and take group and other access away from what an older run left there.

    Together with PRIVATE_UMASK (inherited by every process the stack starts) nothing
    under the state directory is readable by other users. A process that sets a file's
    mode itself (SeaweedFS writes its volume info files 0644 by rename) is still out of
    their reach behind the 0700 directory; the stack runs this again when it stops.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory, dirnames, filenames in os.walk(path):
        for name in [directory, *(os.path.join(directory, entry) for entry in dirnames + filenames)]:
            mode = os.lstat(name).st_mode
            if mode & 0o077 and not stat.S_ISLNK(mode):
                os.chmod(name, stat.S_IMODE(mode) & 0o700)
    return path


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """Secrets are generated on the first run and kept, so tokens and URLs survive restarts."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name and value:
                values[name] = value
    missing = [name for name in SECRET_NAMES if name not in values]
    if missing:
        for name in missing:
            values[name] = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
    return values


def gateway_environment(state: Path, secrets_: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: value for name, value in secrets_.items() if name.startswith("GATEWAY_")})
    if args.address:
        # What clients are given names the address other machines use (unless set by hand, e.g. the https
        # addresses of a TLS proxy in front); the parts themselves stay on 127.0.0.1 (deploy/lan.py).
        for name, value in lan.public_environment(args.address, lan_ports(args)).items():
            env.setdefault(name, value)
    env.setdefault("GATEWAY_HOST", "127.0.0.1")
    env.setdefault("GATEWAY_PORT", str(args.gateway_port))
    env.setdefault("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{args.gateway_port}")
    env.setdefault("GATEWAY_DATABASE_PATH", str(state / "gateway.sqlite3"))
    env.setdefault("GATEWAY_S3_ENDPOINT", f"http://127.0.0.1:{args.s3_port}")
    env.setdefault("GATEWAY_CDN_URL", f"http://127.0.0.1:{args.cdn_port}")
    return env


def lan_ports(args: argparse.Namespace) -> lan.Ports:
    """The ports clients use: in cluster mode the balancer's is the gateway's."""
    return lan.Ports(gateway=args.gateway_port, cdn=args.cdn_port, s3=args.s3_port)


def open_to_postgres(state: Path) -> None:
    """As root, PostgreSQL runs as the ``postgres`` user (it refuses root): its cluster under
    ``state`` is reachable only if that user may pass through ``state``. Let its group
    traverse (not list) the state directory: 0710 root:postgres. Everything inside stays 0600/0700."""
    if os.geteuid() != 0:
        return
    os.chown(state, -1, grp.getgrnam("postgres").gr_gid)
    state.chmod(0o710)


def postgres_alive(cluster: PostgresCluster) -> bool:
    try:
        pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def postgres_component(postgres: PostgresCluster) -> Component:
    """PostgreSQL, started again when it stops (a crash, a restart for an upgrade): the gateways ride that out.

    A restart by hand (``pg_ctl restart``) may be bringing it back already: the one start
    that fails because of it is no failure.
    """

    def restart() -> None:
        try:
            postgres.start()
        except RuntimeError:
            if not postgres_alive(postgres):
                raise

    def stop() -> None:  # the supervisor stops a part that exited too: nothing to stop then
        if postgres_alive(postgres):
            postgres.stop()

    return Component("PostgreSQL", stop, lambda: postgres_alive(postgres), restart)


def redis_component(redis: LocalRedis) -> Component:
    """Redis, started again when it exits, empty (a cache): the gateways read the database meanwhile."""
    return process_component("Redis", redis)


def start_single(args: argparse.Namespace, state: Path, env: dict[str, str], supervisor: Supervisor) -> list[str]:
    """One gateway process on the SQLite database under ``state``."""
    gateway = GatewayProcess(env, state / "gateway.log")
    supervisor.add(gateway.component())  # before it starts: a failed start is stopped too
    gateway.start()
    return [f"  gateway:          {gateway.url}  (log: {gateway.log_path})"]


def start_cluster(args: argparse.Namespace, state: Path, env: dict[str, str], supervisor: Supervisor) -> list[str]:
    """PostgreSQL, Redis, several gateway processes and the load balancer on the gateway's address."""
    open_to_postgres(state)
    print(f"starting PostgreSQL on 127.0.0.1:{args.postgres_port} ...", flush=True)
    # Each part is in the supervisor's hands before it starts: a failed or interrupted start is stopped too.
    postgres = PostgresCluster(state / "postgres", port=args.postgres_port)
    supervisor.add(postgres_component(postgres))
    postgres.start()
    redis = LocalRedis(state / "redis", port=args.redis_port)
    supervisor.add(redis_component(redis))
    redis.start()
    lines = [f"  PostgreSQL:       127.0.0.1:{postgres.port}  (password: {postgres.root / 'password'})",
             f"  Redis:            127.0.0.1:{redis.port}  (password: {redis.root / 'password'})"]
    ports = [args.gateway_base_port + i for i in range(args.gateways)]
    for number, port in enumerate(ports, start=1):
        gateway_env = dict(env, GATEWAY_PORT=str(port), GATEWAY_DATABASE_URL=postgres.url, GATEWAY_CACHE_URL=redis.url)
        name = f"gateway {number}"
        print(f"starting {name} on 127.0.0.1:{port} ...", flush=True)
        gateway = GatewayProcess(gateway_env, state / f"gateway-{number}.log", name=name)
        # A gateway that dies is started again; meanwhile the balancer sends its requests to the others.
        supervisor.add(gateway.component())
        gateway.start()
        lines.append(f"  {name}:        {gateway.url}  (log: {gateway.log_path})")
    balancer = start_balancer(state / "lb", args.gateway_port, ports)
    supervisor.add(nginx_component(balancer))
    wait_http_ok(f"{balancer.url}/readyz", 30, balancer.alive, "the load balancer")
    return [f"  gateway (nginx load balancer): {balancer.url}  (access log: {state / 'lb' / 'access.log'})", *lines]


class OwnsAProcess(Protocol):
    process: subprocess.Popen | None

    def start(self) -> object: ...

    def stop(self) -> None: ...


def process_component(name: str, part: OwnsAProcess) -> Component:
    """A part that runs as one process of ours (the store, Redis)."""
    return Component(name, part.stop, lambda: part.process is not None and part.process.poll() is None, part.start,
                     lambda: None if part.process is None else part.process.returncode)


def nginx_component(server: NginxServer) -> Component:
    """An nginx of the stack (the CDN tier, the load balancer): stopping it ends its whole process group."""
    return Component(server.what, server.stop, server.alive, server.start, server.exit_status)


def browser_origins(public_url: str) -> tuple[str, ...]:
    """The origins the web app is opened from, which the store must answer CORS for.

    The gateway's public origin; on a loopback address both spellings a person
    types (127.0.0.1 and localhost), since a browser treats them as two origins.
    """
    parts = urlsplit(public_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return (origin,)
    port = f":{parts.port}" if parts.port else ""
    return tuple(f"{parts.scheme}://{host}{port}" for host in ("127.0.0.1", "localhost"))



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", default="var", help="state directory (default: var)")
    parser.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)),
                        help="the gateway's address (the load balancer's with --cluster)")
    parser.add_argument("--cdn-port", type=int, default=int(os.environ.get("CDN_PORT", 8081)))
    parser.add_argument("--s3-port", type=int, default=int(os.environ.get("S3_PORT", 9000)))
    parser.add_argument("--no-wait", action="store_true", help="exit once the stack is ready (for scripts)")
    parser.add_argument("--address", type=lan.checked_address, default=os.environ.get("STACK_ADDRESS") or None,
                        help="an IP address of this machine that other machines use: the gateway, the CDN tier "
                             "and the store are reachable there too, and the URLs clients are given name it "
                             "(default: 127.0.0.1 only; STACK_ADDRESS)")
    cluster = parser.add_argument_group("cluster mode")
    cluster.add_argument("--cluster", action="store_true",
                         help="PostgreSQL, Redis and several gateways behind an nginx load balancer")
    cluster.add_argument("--gateways", type=int, default=2, help="gateway processes (default: 2)")
    cluster.add_argument("--gateway-base-port", type=int, default=8090,
                         help="the gateways listen on this port and the next ones (default: 8090)")
    cluster.add_argument("--postgres-port", type=int, default=5433, help="PostgreSQL's port (default: 5433)")
    cluster.add_argument("--redis-port", type=int, default=6380, help="Redis's port (default: 6380)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("info")  # the supervisor's events, one JSON object per line
    os.umask(PRIVATE_UMASK)
    state = private_state_dir(Path(args.state).resolve())
    secrets_ = load_or_create_secrets(state / "stack.env")
    env = gateway_environment(state, secrets_, args)
    access_key = env.setdefault("GATEWAY_S3_ACCESS_KEY", "gateway")
    bucket = env.setdefault("GATEWAY_S3_BUCKET", "dropbox-content")
    # The CDN tier reads the store with a read-only key of its own; the gateway never holds it.
    cdn_env = {
        **env,
        "CDN_S3_ACCESS_KEY": os.environ.get("CDN_S3_ACCESS_KEY", "cdn"),
        "CDN_S3_SECRET_KEY": secrets_["CDN_S3_SECRET_KEY"],
    }

    store = EmbeddedStore(
        state / "store",
        access_key,
        env["GATEWAY_S3_SECRET_KEY"],
        bucket,
        s3_port=args.s3_port,
        webhook_url=f"http://127.0.0.1:{args.gateway_port}/dropbox/v1/events/seaweedfs",
        webhook_token=env["GATEWAY_EVENTS_TOKEN"],
        reader_keys=(cdn_env["CDN_S3_ACCESS_KEY"], cdn_env["CDN_S3_SECRET_KEY"]),
        cors_origins=browser_origins(env["GATEWAY_PUBLIC_URL"]),
        spawn=spawn_group,  # ends with the launcher, however it ends
    )
    supervisor = Supervisor()
    # The state directory is tightened again last, after every process wrote its last file.
    supervisor.add(Component("state directory", lambda: private_state_dir(state)))
    # Ctrl-C and SIGTERM stop the stack cleanly, also while it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"starting the embedded S3 store on {store.endpoint} ...", flush=True)
        supervisor.add(process_component("S3 store", store))
        store.start()
        start = start_cluster if args.cluster else start_single
        lines = start(args, state, env, supervisor)
        front = lan.front_config(args.address, lan_ports(args)) if args.address else ""
        supervisor.add(nginx_component(start_local_cdn(state / "cdn", cdn_env, args.cdn_port, front=front)))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - report and clean up whatever started
        print(f"the local stack failed to start: {exc or 'interrupted'}", file=sys.stderr, flush=True)
        supervisor.stop_all()
        return 1

    ready = (
        "the local stack is up:\n"
        + "\n".join(lines)
        + f"\n  CDN tier (nginx): http://127.0.0.1:{args.cdn_port}\n"
        f"  S3 store:         {store.endpoint}  bucket {bucket}, access key {access_key}\n"
        f"  secrets:          {state / 'stack.env'}\n"
        + (f"  other machines:   {env['GATEWAY_PUBLIC_URL']}  (the gateway, the CDN tier and the store on "
           f"{args.address} too)\n" if args.address else "")
        + "press Ctrl-C to stop"
    )
    if args.no_wait:
        print(ready, flush=True)
        return 0
    return supervisor.run(ready)


if __name__ == "__main__":
    sys.exit(main())
