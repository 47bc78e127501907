"""bench/stack.py's view of processes from /proc, which the benchmarks count CPU seconds with."""
from __future__ import annotations

import os
import subprocess

from bench.stack import children, descendants


def test_descendants_are_found_to_the_grandchildren_and_children_only_one_level_down():
    # A shell that starts a sleep and says its pid: the sleep is this process's grandchild.
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    assert shell.stdout is not None
    grandchild = int(shell.stdout.readline())
    try:
        assert {shell.pid, grandchild} <= set(descendants(os.getpid()))
        assert shell.pid in children(os.getpid()) and grandchild not in children(os.getpid())
        assert children(shell.pid) == [grandchild] == descendants(shell.pid)
    finally:
        os.kill(grandchild, 9)
        shell.wait()
