"""The local stack (`./dev up`) as a user runs it: a real process with its real store, gateway and nginx."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from storage.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def readable_by_others(state: Path) -> list[str]:
    """Every entry under ``state`` (itself included) that its group or other users can open."""
    exposed = []
    for path in [state, *state.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            exposed.append(f"{path.relative_to(state.parent)} {stat.filemode(mode)}")
    return exposed


def start_stack(state: Path, *args: str, timeout: float = 90.0) -> subprocess.Popen:
    """``python -m deploy.stack`` with the usual umask of a login shell (022), until it says it is up."""
    ports = ["--gateway-port", str(free_port()), "--cdn-port", str(free_port()), "--s3-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.stack", "--state", str(state), *ports, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    deadline = time.monotonic() + timeout
    output = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("press Ctrl-C"):
            return process
    process.kill()
    process.wait()
    raise AssertionError("the stack did not come up:\n" + "".join(output) + process.stdout.read())


def stop_stack(process: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    return rest


def test_the_stack_keeps_its_state_and_secrets_to_its_user(tmp_path):
    state = tmp_path / "var"
    # What an older version left: var/ 755 and a file 644 in it.
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    old = state / "gateway.log"
    old.write_text("an older run\n")
    old.chmod(0o644)

    process = start_stack(state)
    try:
        # The secrets are where the issue found them readable, and the store's and gateway's files exist.
        assert "GATEWAY_CDN_SECRET" in (state / "stack.env").read_text()
        assert "bearer_token" in (state / "store" / "weed-config" / "notification.toml").read_text()
        assert (state / "cdn" / "cdn.conf").exists() and (state / "gateway.sqlite3").exists()
        assert readable_by_others(state) == []
    finally:
        if process.poll() is None:
            stop_stack(process)
    # What the processes wrote until they stopped, too.
    assert readable_by_others(state) == []
