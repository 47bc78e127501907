"""Process supervision for the local stack: start in order, watch, repair, stop in reverse order.

Each part of the stack is a Component: how to tell it is alive, how to stop it (also
what is left of it once it exited: nginx's workers outlive a killed master), and how
to start it again. A part that exits is logged and started again, at once the first
time; one that keeps exiting soon after each start is started again after a delay
that doubles each time (Backoff), and the log says so, so a part that cannot run
does not spin. The stack runs until Ctrl-C or SIGTERM (or a part without a way to
start it again exits); then everything started is stopped, last started first.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from deploy.processes import spawn_group

log = structlog.get_logger("deploy.supervisor")


@dataclass
class Component:
    name: str
    stop: Callable[[], object]  # what it returns is ignored; called on a part that exited too
    alive: Callable[[], bool] = lambda: True
    # Start it again when it exits on its own; None: its exit stops the stack.
    restart: Callable[[], object] | None = None
    # How it ended, for the log (a Popen's returncode), once it has.
    exit_status: Callable[[], int | None] = lambda: None


@dataclass(frozen=True)
class Backoff:
    """When a part that exited is started again: at once the first time. Each further exit (or failed
    start) within ``settle`` seconds of its last start is one more in a row, and waits ``first``
    seconds, doubled for each, at most ``longest``; an exit after ``settle`` seconds of running is a
    first one again. Docker's restart policy works alike."""

    first: float = 1.0
    longest: float = 60.0
    settle: float = 30.0

    def delay(self, exits_in_a_row: int) -> float:
        return 0.0 if exits_in_a_row <= 1 else min(self.longest, self.first * 2 ** (exits_in_a_row - 2))


@dataclass
class Restarts:
    """One component's record: its exits in a row, when it last started, when it is due to start again."""

    started_at: float
    exits_in_a_row: int = 0
    due: float | None = None  # None: it runs (or should)


def exit_description(status: int | None) -> str:
    if status is None:
        return "exited"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


@dataclass
class Supervisor:
    components: list[Component] = field(default_factory=list)
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    restarts: dict[str, Restarts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for component in self.components:  # those given at construction count as started now
            self.restarts.setdefault(component.name, Restarts(started_at=self.clock()))

    def add(self, component: Component) -> Component:
        self.components.append(component)
        self.restarts[component.name] = Restarts(started_at=self.clock())
        return component

    def stop_all(self) -> None:
        """Stop every component, last started first; one that fails to stop does not keep the others running.
        A second Ctrl-C (or a SIGTERM) meanwhile is ignored: it would leave the rest running."""
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        for component in reversed(self.components):
            self._stop(component)
        self.components.clear()

    def _stop(self, component: Component) -> None:
        try:
            component.stop()
        except Exception as exc:  # noqa: BLE001 - report, then go on with the rest
            log.error("part_stop_failed", part=component.name, error=str(exc) or type(exc).__name__)

    def check(self) -> Component | None:
        """Start again what exited and is due; return the first component that exited and cannot be."""
        for component in self.components:
            record = self.restarts[component.name]
            if record.due is None:
                if component.alive():
                    continue
                log.warning("part_exited", part=component.name, how=exit_description(component.exit_status()))
                if component.restart is None:
                    return component
                self._stop(component)  # what is left of it
                self._schedule(component, record)
            if record.due is not None and self.clock() >= record.due:
                self._restart(component, record)
        return None

    def _schedule(self, component: Component, record: Restarts) -> None:
        """Count an exit (or a failed start) and set when to start it again."""
        now = self.clock()
        if now - record.started_at >= self.backoff.settle:
            record.exits_in_a_row = 0  # it had run a good while: this exit is a first one
        record.exits_in_a_row += 1
        delay = self.backoff.delay(record.exits_in_a_row)
        record.due = now + delay
        if delay:
            log.warning("part_restart_delayed", part=component.name, delay_seconds=delay,
                        exits_in_a_row=record.exits_in_a_row,
                        reason=f"it exited {record.exits_in_a_row} times in a row, each within "
                               f"{self.backoff.settle:g}s of its start")

    def _restart(self, component: Component, record: Restarts) -> None:
        assert component.restart is not None, "only a restartable component is scheduled"
        record.due = None
        record.started_at = began = self.clock()
        log.info("part_restarting", part=component.name, exits_in_a_row=record.exits_in_a_row)
        try:
            component.restart()
        except Exception as exc:  # noqa: BLE001 - it did not come up: clean up, try again later
            log.error("part_restart_failed", part=component.name, error=str(exc) or type(exc).__name__)
            self._stop(component)
            self._schedule(component, record)
            return
        log.info("part_restarted", part=component.name, seconds=round(self.clock() - began, 2))

    def run(self, ready_message: str = "", poll: float = 0.5) -> int:
        """Print ``ready_message``, then watch until Ctrl-C or SIGTERM (0) or until a component that
        cannot be restarted exits (1). Everything is stopped before it returns."""
        # SIGTERM like Ctrl-C; SIGINT too when started in the background, where the shell ignores it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            if ready_message:
                print(ready_message, flush=True)  # inside: a Ctrl-C right after it still stops everything
            for record in self.restarts.values():
                record.started_at = self.clock()  # the whole stack has just come up
            while True:
                lost = self.check()
                if lost is not None:
                    log.error("stack_stopping", reason=f"{lost.name} exited and cannot be started again")
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
        time.sleep(0.05)  # a coarser poll would add half of it to every start
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
            # A session of its own: Ctrl-C reaches the stack, which stops the gateway in its turn;
            # tied to the launcher's life, so a killed launcher leaves no gateway behind.
            self.process = spawn_group([sys.executable, "-m", "gateway"], env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT)
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

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def component(self) -> Component:
        return Component(self.name, self.stop, self.alive, self.start, self.exit_status)

