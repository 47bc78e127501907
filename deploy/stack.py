"""The local stack: embedded S3 store, gateway and CDN tier on 127.0.0.1.

``./dev up`` runs this. State (the store's data, the SQLite file, generated
secrets, the nginx cache) lives under ``var/``; Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cdn.nginx import start_local_cdn
from storage.embedded import EmbeddedStore

SECRET_NAMES = ("GATEWAY_S3_SECRET_KEY", "GATEWAY_JWT_SECRET", "GATEWAY_EVENTS_TOKEN", "GATEWAY_CDN_SECRET")
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


def wait_ready(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def gateway_environment(state: Path, secrets_: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(secrets_)
    env.setdefault("GATEWAY_HOST", "127.0.0.1")
    env.setdefault("GATEWAY_PORT", str(args.gateway_port))
    env.setdefault("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{args.gateway_port}")
    env.setdefault("GATEWAY_DATABASE_PATH", str(state / "gateway.sqlite3"))
    env.setdefault("GATEWAY_S3_ENDPOINT", f"http://127.0.0.1:{args.s3_port}")
    env.setdefault("GATEWAY_CDN_URL", f"http://127.0.0.1:{args.cdn_port}")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev up", description=__doc__)
    parser.add_argument("--state", default="var", help="state directory (default: var)")
    parser.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)))
    parser.add_argument("--cdn-port", type=int, default=int(os.environ.get("CDN_PORT", 8081)))
    parser.add_argument("--s3-port", type=int, default=int(os.environ.get("S3_PORT", 9000)))
    parser.add_argument("--no-wait", action="store_true", help="exit once the stack is ready (for scripts)")
    args = parser.parse_args(argv)

    os.umask(PRIVATE_UMASK)
    state = private_state_dir(Path(args.state).resolve())
    secrets_ = load_or_create_secrets(state / "stack.env")
    env = gateway_environment(state, secrets_, args)
    access_key = env.setdefault("GATEWAY_S3_ACCESS_KEY", "gateway")
    bucket = env.setdefault("GATEWAY_S3_BUCKET", "dropbox-content")

    store = EmbeddedStore(
        state / "store",
        access_key,
        env["GATEWAY_S3_SECRET_KEY"],
        bucket,
        s3_port=args.s3_port,
        webhook_url=f"http://127.0.0.1:{args.gateway_port}/dropbox/v1/events/seaweedfs",
        webhook_token=env["GATEWAY_EVENTS_TOKEN"],
    )
    processes: list[subprocess.Popen] = []
    extra_stops = []

    def stop_all(*_):
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for stop in extra_stops:
            stop()
        store.stop()
        private_state_dir(state)

    try:
        print(f"starting the embedded S3 store on {store.endpoint} ...", flush=True)
        store.start()
        log = open(state / "gateway.log", "ab")
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(gateway)
        wait_ready(f"http://127.0.0.1:{args.gateway_port}/readyz", 60, gateway)
        nginx = start_local_cdn(state / "cdn", env, args.cdn_port)
        extra_stops.append(nginx.stop)
    except Exception as exc:  # noqa: BLE001 - report and clean up whatever started
        print(f"the local stack failed to start: {exc}", file=sys.stderr)
        stop_all()
        return 1

    print(
        "the local stack is up:\n"
        f"  gateway:          http://127.0.0.1:{args.gateway_port}  (log: {state / 'gateway.log'})\n"
        f"  CDN tier (nginx): http://127.0.0.1:{args.cdn_port}\n"
        f"  S3 store:         {store.endpoint}  bucket {bucket}, access key {access_key}\n"
        f"  secrets:          {state / 'stack.env'}\n"
        "press Ctrl-C to stop",
        flush=True,
    )
    if args.no_wait:
        return 0
    # Ctrl-C and SIGTERM both stop the stack cleanly (SIGINT too when started in the background,
    # where the shell leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        print("a process of the stack exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
