"""The local stack: embedded S3 store, gateway and CDN tier on 127.0.0.1.

``./dev up`` runs this. State (the store's data, the SQLite file, generated
secrets, the nginx cache) lives under ``var/``; Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cdn.nginx import start_local_cdn
from storage.embedded import EmbeddedStore

SECRET_NAMES = ("GATEWAY_S3_SECRET_KEY", "GATEWAY_JWT_SECRET", "GATEWAY_EVENTS_TOKEN", "GATEWAY_CDN_SECRET")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev up", description=__doc__)
    parser.add_argument("--state", default="var", help="state directory (default: var)")
    parser.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)))
    parser.add_argument("--cdn-port", type=int, default=int(os.environ.get("CDN_PORT", 8081)))
    parser.add_argument("--s3-port", type=int, default=int(os.environ.get("S3_PORT", 9000)))
    parser.add_argument("--no-wait", action="store_true", help="exit once the stack is ready (for scripts)")
    args = parser.parse_args(argv)

    state = Path(args.state).resolve()
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
        cors_origins=browser_origins(env["GATEWAY_PUBLIC_URL"]),
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
