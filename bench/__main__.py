"""All benchmarks, one table each: ``./dev bench`` (``python -m bench``).

    python -m bench                       every benchmark at full size (1 GiB transfers; several minutes)
    python -m bench --smoke               tiny sizes: checks the benchmarks run, not how fast
    python -m bench NAME [OPTIONS]        one benchmark (transfer, download, control) with its own options,
                                          e.g. python -m bench transfer --size-mib 512 --runs 5 --upload-only
    python -m bench NAME --help           those options

Every figure is a median of several runs with min and max, and ratios are
against a baseline measured in the same run, because these machines are noisy.
The benchmarks use the service's public interfaces only: the local stack's
launcher, the HTTP API, the S3 API and the ``dbx`` command.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

# Each is a module of bench/ (transfer.py, ...) with a main(argv), in the order a whole run takes them.
BENCHMARKS = ("transfer", "download", "control", "cluster", "limits", "browser", "tree")
SMOKE = {
    "transfer": ["--size-mib", "12", "--runs", "1", "--chunk-mib", "5", "--no-warm-up"],
    "download": ["--size", "9", "--runs", "1"],
    "control": ["--seconds", "0.25", "--runs", "1", "--files", "3", "--concurrency", "4"],
    "cluster": ["--seconds", "0.25", "--runs", "1", "--files", "3", "--concurrency", "4", "--claims", "50"],
    "limits": ["--uploads", "2", "--chunks", "64", "--files", "4", "--runs", "1", "--rest-seconds", "0.3"],
    "browser": ["--size-mib", "12", "--runs", "1", "--chunk-mib", "5"],
    "tree": ["--files", "25", "--limit", "10", "--runs", "1"],
}


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


def run(name: str, argv: list[str]) -> None:
    """Import only the benchmark that runs (a whole run imports each in turn): one alone starts up to 0.6 s sooner
    without the others' Playwright, PostgreSQL and load-generator modules."""
    importlib.import_module(f"bench.{name}").main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and single runs")
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    if args.options and not args.name:
        parser.error("options need a benchmark NAME before them")
    print(f"machine: {describe_machine()}", flush=True)
    for name in [args.name] if args.name else BENCHMARKS:
        run(name, (SMOKE[name] if args.smoke else []) + args.options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
