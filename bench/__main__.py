"""All benchmarks, one table each: ``./dev bench`` (``python -m bench``).

    python -m bench            full sizes (1 GiB transfers; several minutes)
    python -m bench --smoke    tiny sizes: checks the benchmarks run, not how fast

Every figure is a median of several runs with min and max, and ratios are
against a baseline measured in the same run, because these machines are noisy.
"""
from __future__ import annotations

import argparse
import platform
import os
import sys

from bench import control, download, limits, transfer


def describe_machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} x {cpu}, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and single runs")
    args = parser.parse_args(argv)
    print(f"machine: {describe_machine()}")
    if args.smoke:
        transfer.main(["--size-mib", "12", "--runs", "1", "--chunk-mib", "5"])
        download.main(["--size", "9", "--runs", "1"])
        control.main(["--seconds", "0.5", "--runs", "1", "--files", "3", "--concurrency", "4"])
        limits.main(["--uploads", "2", "--chunks", "64", "--files", "4", "--runs", "1", "--rest-seconds", "0.3"])
    else:
        transfer.main([])
        download.main([])
        control.main([])
        limits.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
