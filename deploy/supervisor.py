"""Process supervision for the local stack: start in order, watch, stop in reverse order.

Each part of the stack is a Component: how to tell it is alive, how to stop it,
and, for the parts whose loss the stack is built to survive (a gateway behind the
load balancer), how to start it again. The stack runs until Ctrl-C or SIGTERM, or
until a part it cannot do without exits; then everything started is stopped, last
started first.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable


@dataclass
class Component:
    name: str
    stop: Callable[[], object]  # what it returns is ignored
    alive: Callable[[], bool] = lambda: True
    # Start it again when it exits on its own; None: its exit stops the stack.
    restart: Callable[[], object] | None = None


@dataclass
class Supervisor:
    components: list[Component] = field(default_factory=list)
    restart_limit: int = 5  # restarts of one component before the stack gives up on it
    restarts: dict[str, int] = field(default_factory=dict)

    def add(self, component: Component) -> Component:
        self.components.append(component)
        return component

    def stop_all(self) -> None:
        """Stop every component, last started first; one that fails to stop does not keep the others running.
        A second Ctrl-C (or a SIGTERM) meanwhile is ignored: it would leave the rest running."""
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception as exc:  # noqa: BLE001 - report, then stop the rest
                print(f"stopping {component.name} failed: {exc}", file=sys.stderr, flush=True)
        self.components.clear()

    def check(self) -> Component | None:
        """Restart what may be restarted; return the first component that exited and may not be."""
        for component in self.components:
            if component.alive():
                continue
            count = self.restarts.get(component.name, 0)
            if component.restart is None or count >= self.restart_limit:
                return component
            self.restarts[component.name] = count + 1
            print(f"{component.name} exited; starting it again", file=sys.stderr, flush=True)
            component.restart()
        return None

    def run(self, ready_message: str = "", poll: float = 0.5) -> int:
        """Print ``ready_message``, then watch until Ctrl-C or SIGTERM (0) or until a component that
        cannot be restarted exits (1). Everything is stopped before it returns."""
        # SIGTERM like Ctrl-C; SIGINT too when started in the background, where the shell ignores it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            if ready_message:
                print(ready_message, flush=True)  # inside: a Ctrl-C right after it still stops everything
            while True:
                exited = self.check()
                if exited is not None:
                    print(f"{exited.name} exited; stopping the rest", file=sys.stderr, flush=True)
                    return 1
                time.sleep(poll)
        except KeyboardInterrupt:
            print("stopping ...", flush=True)
            return 0
        finally:
            self.stop_all()


def wait_http_ok(url: str, timeout: float, alive: Callable[[], bool] = lambda: True, what: str = "") -> None:
    """Wait until ``url`` answers 200, failing early when the process behind it has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what or url} exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


@dataclass
class GatewayProcess:
    """``python -m gateway`` with its settings in the environment and its log in a file."""

    env: dict[str, str]
    log_path: Path
    name: str = "gateway"
    process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return int(self.env["GATEWAY_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the stack, which stops the gateway in its turn
            )
        wait_http_ok(f"{self.url}/readyz", ready_timeout, self.alive, f"{self.name} (log: {self.log_path})")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None, "alive() means it was started"
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def component(self, restartable: bool = False) -> Component:
        return Component(self.name, self.stop, self.alive, self.start if restartable else None)

