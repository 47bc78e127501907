"""Processes the local stack owns as a whole: a process group each, and nothing left behind.

A server that forks (nginx: a master and its workers) is started as the leader of a
session and process group of its own, so Ctrl-C at the terminal reaches the stack alone
and the stack can signal the server and everything it forked at once. Its workers
outlive a master that is SIGKILLed (they go on serving and hold its port), so stopping
signals the group, not the leader, also when the leader has already exited, and waits
until no process of the group is left. If the launcher itself dies, the leader gets
SIGTERM from the kernel (PR_SET_PDEATHSIG), on which nginx's master stops its workers.
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent dies.

    Linux sends it when the *thread* that forked the child ends, so only the main
    thread (which lives as long as the launcher) gets one; from another thread the
    child would be killed when that thread ends: None, the child is not tied.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the launcher died before the tie held
            os.kill(os.getpid(), sig)

    return tie


def spawn_group(argv: list[str], **popen: object) -> subprocess.Popen:
    """Start ``argv`` as the leader of a process group of its own, tied to the launcher's life
    when started from its main thread (die_with_parent)."""
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=die_with_parent(), **popen)  # type: ignore[call-overload]


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies left out) of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after its last ')'.
        state, _ppid, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def wait_exited(pids: Iterable[int], timeout: float) -> bool:
    """Wait until every process of ``pids`` has exited (children or not); False if ``timeout`` passed first."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))  # readable once the process has exited
        except ProcessLookupError:
            continue
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        waiting = set(fds)
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            for fd, _ in poller.poll(max(left, 0.0) * 1000):
                waiting.discard(fd)
                poller.unregister(fd)
            if waiting and left <= 0:
                return False
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_gone(process: subprocess.Popen, timeout: float) -> bool:
    """Wait until the leader (reaped) and every other process of its group have exited."""
    deadline = time.monotonic() + timeout
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    while members := group_members(process.pid):
        if not wait_exited(members, deadline - time.monotonic()):
            return False
    return True


def kill_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started as a group leader (spawn_group) and whatever is left of its group.

    SIGTERM to the group, SIGKILL to what lingers after ``timeout``. Also when the
    leader has exited already: what it forked (nginx's workers) may still run, as orphans.
    """
    pgid = process.pid
    if process.poll() is not None and not group_members(pgid):
        return  # nothing left; the group's number may even be someone else's by now
    _signal_group(pgid, signal.SIGTERM)
    if not group_gone(process, timeout):
        _signal_group(pgid, signal.SIGKILL)
        group_gone(process, timeout)
