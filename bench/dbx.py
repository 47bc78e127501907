"""The benchmarks' user of the service: the real ``dbx`` command, run as its own process."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stack import BenchStack, signup

MIB = 1024 * 1024


def make_file(path: Path, size: int) -> Path:
    """``size`` random bytes (incompressible, and new content every time: never deduplicated)."""
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 16 * MIB))
            handle.write(block)
            remaining -= len(block)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(MIB))
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(buffer[:count])
    return digest.hexdigest()


class Dbx:
    """A new user of ``stack``, logged in with ``dbx login`` in a config directory of its own.

    ``checkout``: run the client of another checkout of this repository (its
    directory holds client/ and protocol/) instead of this one.
    """

    def __init__(self, stack: BenchStack, home: Path, password: str = "bench password", checkout: Path | None = None):
        self.username, self.token = signup(stack.gateway_url, password=password)
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home), "DBX_SERVER": stack.gateway_url,
                    "DBX_PASSWORD": password}
        # `python -m` looks in the working directory first, then PYTHONPATH: both must be the checkout.
        self.cwd = checkout.resolve() if checkout else None
        if self.cwd:
            self.env["PYTHONPATH"] = str(self.cwd)
        subprocess.run([sys.executable, "-m", "client", "login", self.username, "--quiet"], env=self.env,
                       cwd=self.cwd, check=True, capture_output=True)

    def __call__(self, *args: str) -> tuple[float, dict, int]:
        """Run ``dbx --json --quiet ARGS``; return (seconds, its last JSON line, peak RSS in KiB)."""
        # Its output goes to files, not pipes: a command that prints more than a pipe holds (`upload -r
        # --json`, a line a file) would wait for a reader while this waits for it to end.
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "client", "--json", "--quiet", *args], env=self.env,
                                       cwd=self.cwd, stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            stdout.seek(0)
            stderr.seek(0)
            out, err = stdout.read(), stderr.read()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise RuntimeError(f"dbx {' '.join(args)} failed ({process.returncode}): {err.decode()[-500:]}")
        lines = [line for line in out.decode().splitlines() if line.strip()]
        return seconds, (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss
