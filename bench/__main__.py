"""All benchmarks, one table each: ``./dev bench`` (``python -m bench``).

    python -m bench                       every benchmark at full size (1 GiB transfers; several minutes)
    python -m bench --smoke               tiny sizes: checks the benchmarks run, not how fast
    python -m bench NAME [OPTIONS]        one benchmark (transfer, folders, download, control, sync, ...) with its own options,
                                          e.g. python -m bench transfer --size-mib 512 --runs 5 --upload-only
    python -m bench NAME --help           those options
    python -m bench --readme [NAME ...]   run what README.md shows (or only those) and put the new figures there

Every figure is a median of several runs with min and max, and ratios are
against a baseline measured in the same run, because these machines are noisy.
The benchmarks use the service's public interfaces only: the local stack's
launcher, the HTTP API, the S3 API and the ``dbx`` command.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import structlog

# Each is a module of bench/ (transfer.py, ...) with a main(argv), in the order a whole run takes them.
BENCHMARKS = ("transfer", "folders", "download", "control", "cluster", "limits", "browser", "tree", "changes", "sync")
SMOKE = {
    "transfer": ["--size-mib", "12", "--runs", "1", "--chunk-mib", "5", "--no-warm-up"],
    "folders": ["--files", "30", "--runs", "1"],
    "download": ["--size", "9", "--runs", "1"],
    "control": ["--seconds", "0.25", "--runs", "1", "--files", "3", "--concurrency", "4"],
    "cluster": ["--seconds", "0.25", "--runs", "1", "--files", "3", "--concurrency", "4", "--claims", "50"],
    "limits": ["--uploads", "2", "--chunks", "64", "--files", "4", "--runs", "1", "--rest-seconds", "0.3"],
    "browser": ["--size-mib", "12", "--runs", "1", "--chunk-mib", "5"],
    "tree": ["--files", "25", "--limit", "10", "--runs", "1"],
    "changes": ["--waits", "50", "--healthz", "20", "--rounds", "5"],
    "sync": ["--files", "20", "--large", "2", "--large-mib", "12", "--idle-files", "200", "--changes", "5", "--runs", "1"],
}


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers (a VM's model name may say only "AMD EPYC")."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first CPU's block is enough
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        return "unknown CPU"
    details = [f"family {fields['cpu family']}, model {fields['model']}"] if "cpu family" in fields else []
    if "hypervisor" in fields.get("flags", "").split():
        details.append("virtual machine")
    return fields.get("model name", "unknown CPU") + (f" ({', '.join(details)})" if details else "")


def describe_machine() -> str:
    """What the figures were measured on: CPU model, cores, memory, kernel, Python."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def describe_run() -> str:
    """When and with which code: the date (UTC), this checkout's commit and the machine's load as the run starts."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # README.md is no code (and ./dev bench --readme writes into it as it goes).
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!README.md"):
        commit += " with uncommitted changes"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{when}, commit {commit}, load average {os.getloadavg()[0]:.2f} at the start"


def run(name: str, argv: list[str]) -> None:
    """Import only the benchmark that runs (a whole run imports each in turn): one alone starts up to 0.6 s sooner
    without the others' Playwright, PostgreSQL and load-generator modules."""
    importlib.import_module(f"bench.{name}").main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and single runs")
    parser.add_argument("--readme", action="store_true",
                        help="run the benchmarks whose figures README.md shows (or only NAME ...) with the options "
                             "written there, and put the new figures in their place (bench/readme.py)")
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    if args.options and not args.name and not args.readme:
        parser.error("options need a benchmark NAME before them")
    if args.readme:
        from bench.readme import regenerate

        return regenerate([args.name, *args.options] if args.name else [])
    # The tables go to stdout (and into README.md); what the parts log goes to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(f"machine: {describe_machine()}", flush=True)
    print(f"run: {describe_run()}", flush=True)
    for name in [args.name] if args.name else BENCHMARKS:
        run(name, (SMOKE[name] if args.smoke else []) + args.options)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
