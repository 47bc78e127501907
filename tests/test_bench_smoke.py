"""The benchmarks run end to end on tiny sizes, so they cannot rot (this checks they work, not how fast).

One test per benchmark (``python -m bench --smoke NAME``): the durations report shows each, and a
failure names the benchmark.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.long]  # every benchmark starts stacks of its own

REPO = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"([\d,]+\.\d) \(min ([\d,]+\.\d), max ([\d,]+\.\d)\)")
# What each benchmark prints: its tables' titles, and rows that hold a figure (median, min, max).
PRINTS = {
    "transfer": (
        ("Transfers:", "CPU seconds per GiB uploaded, by process"),
        ("upload: dbx", "upload: boto3 upload_file, in this process", "upload: boto3 upload_file + SHA-256",
         "client peak memory"),
    ),
    "download": (("Download of a", "CDN hit", "CDN miss", "direct store GET"), ()),
    "folders": (
        ("Many small files:", "CPU seconds per 1,000 files", "What the gateway did per file"),
        ("dbx upload -r (the whole command", "boto3 put_object from threads"),
    ),
    "control": (
        ("Control path:", "Permission and metadata cache", "Small files:"),
        ("POST /dropbox/v1/files", "POST .../upload-urls", "GET /dropbox/v1/files/{id}, owner, cache off",
         "POST /dropbox/v1/files, inline 4 KiB", "boto3 put_object, 4 KiB"),
    ),
    "cluster": (
        ("Control path at scale:", "PostgreSQL statements/request", "Redis commands/request"),
        ("GET /dropbox/v1/files/{id}, owner: 1 gateway, SQLite",
         "GET /dropbox/v1/files/{id}, owner: 2 gateways, PostgreSQL, balancer"),
    ),
    "limits": (("Presigning beside other requests", "Listing page"), ("/healthz at rest", "/healthz during 2 upload-urls calls")),
    "browser": (
        ("Web app:", "Where the web app's upload time goes", "CPU seconds per upload"),
        ("upload: web app in headless Chromium", "SHA-256 in the browser: WebCrypto",
         "SHA-256 in the browser: WebAssembly", "SHA-256 in the browser: JS fallback"),
    ),
    "tree": (
        ("A folder of 25 files:",),
        ("sqlite: GET /healthz", "sqlite: last page (10 entries)", "postgresql: first page (10 entries)",
         "postgresql: search (one match)"),
    ),
    "sync": (
        ("First sync:", "Idle pass:", "Watch mode:"),
        ("dbx sync --once (the whole command", "boto3, 4 files at a time", "dbx sync --once, the whole command",
         "its pass (journal read, scan, plan)"),
    ),
}


# Options a smoke run adds to the benchmark's smoke sizes (what else it prints is checked too).
EXTRA = {"cluster": ["--top-statements", "3"]}


def smoke_run(name: str) -> str:
    """``python -m bench --smoke NAME``'s output; fails the test with its errors unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", name, *EXTRA.get(name, [])], cwd=REPO, capture_output=True,
        text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def line_with(out: str, text: str) -> str:
    line = next((line for line in out.splitlines() if text in line), None)
    assert line is not None, f"{text!r} missing from:\n{out}"
    return line


@pytest.mark.parametrize("name", PRINTS)
def test_the_benchmark_prints_its_figures(name):
    out = smoke_run(name)
    titles, rows = PRINTS[name]
    for title in titles:
        assert title in out, f"{title!r} missing from:\n{out}"
    for row in rows:
        figure = FIGURE.search(line_with(out, row))
        assert figure is not None, f"no figure in the {row!r} row of:\n{out}"
        median, low, high = (float(v.replace(",", "")) for v in figure.groups())
        assert low <= median <= high
    if name == "cluster":  # the servers counted work for every request on the cluster (and the reads used Redis)
        counted = line_with(out, "GET /dropbox/v1/files/{id}, owner: 2 gateways").split("|")[-3:-1]
        assert all(float(count) > 0 for count in counted), counted
        assert "POST /dropbox/v1/files, 2 gateways: the 3 most frequent PostgreSQL statements" in out
    if name == "sync":  # an idle pass reads no file content; both clients in watch mode saw every change
        assert "| 0 bytes in 0 files" in line_with(out, "file content read"), line_with(out, "file content read")
        assert re.search(r"\| \d[\d,]* +\| \d[\d,]* +\| \d[\d,]* +\|", line_with(out, "until it is complete on B"))
    if name == "browser":  # each upload's client was found and counted: Chromium's processes, the dbx command
        for who in ("web app", "dbx"):
            row = re.search(rf"^\| {who} +\|(.*)\|$", out, re.MULTILINE)
            assert row is not None, f"no CPU row for {who} in:\n{out}"
            client, store, gateway, total = (float(cell) for cell in row[1].split("|"))
            assert client > 0 and store > 0 and total > 0, row[0]
    if name == "control":  # the cached reads and both sides of the small files answered every request
        for row in ("GET /dropbox/v1/files/{id}, owner, cache on", "inline 4 KiB", "boto3 put_object, 4 KiB"):
            assert re.search(r"\| 0 +\|", line_with(out, row)), line_with(out, row)
        # What each request asked of the gateway's database and store, counted by the gateway itself.
        work = re.search(r"\| ([0-9.]+) / ([0-9.]+) / ([0-9.]+) +\|", line_with(out, "POST /dropbox/v1/files "))
        assert work is not None and float(work[1]) > 0 and float(work[3]) >= 1, line_with(out, "POST /dropbox/v1/files ")
        # The gateway's CPU and the load generator's, each a request's.
        cpu = re.search(r"\| ([0-9.]+) / ([0-9.]+) / ([0-9.]+) +\| ([0-9.]+) +\| ([0-9.]+) +\|",
                        line_with(out, "POST /dropbox/v1/files "))
        assert cpu is not None and float(cpu[4]) > 0 and float(cpu[5]) > 0, line_with(out, "POST /dropbox/v1/files ")


def test_the_readme_figures_are_regenerated_in_place(tmp_path):
    """``./dev bench --readme``: a block's old figures give way to a new run's, labelled; the prose stays."""
    from bench.readme import regenerate

    readme = tmp_path / "README.md"
    readme.write_text("Before.\n\n<!-- bench: download --size 9 --runs 1 -->\n```\nold figures\n```\n<!-- /bench -->\n"
                      "\nAfter.\n")
    assert regenerate(["download"], readme) == 0
    text = readme.read_text()
    assert text.startswith("Before.\n\n<!-- bench: download --size 9 --runs 1 -->\n```\n"
                           "$ ./dev bench download --size 9 --runs 1\nmachine: ")
    assert text.endswith("```\n<!-- /bench -->\n\nAfter.\n")
    assert "old figures" not in text
    for label in ("\nrun: ", " UTC, commit ", "CDN hit", "at the end"):
        assert label in text
    assert regenerate(["control"], readme) == 1  # no block of it: said, not silently done


def test_the_download_benchmark_times_another_checkouts_cdn_tier_in_the_same_runs():
    result = subprocess.run([sys.executable, "-m", "bench", "download", "--size", "9", "--runs", "2", "--other-cdn",
                             str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in ("miss", "hit"):
        assert re.search(r"\| \d\.\d\dx \(min", line_with(result.stdout, f"CDN {kind}, tier of {REPO}"))
    # CPU seconds of the store, nginx and the client: nginx's of the tier that served each download, none for
    # the store's own GETs.
    cpu = r"\| (\d+\.\d\d|-) +\| (\d+\.\d\d|-) +\| (\d+\.\d\d) +\|$"
    for label, nginx in (("direct store GET", False), ("CDN miss ", True), (f"CDN miss, tier of {REPO}", True),
                         (f"CDN hit, tier of {REPO}", True)):
        found = re.search(cpu, line_with(result.stdout, label))
        assert found and found[1] != "-" and (found[2] != "-") == nginx, line_with(result.stdout, label)


def test_the_folders_benchmark_times_another_checkouts_gateway_in_the_same_runs():
    result = subprocess.run([sys.executable, "-m", "bench", "folders", "--files", "20", "--runs", "2",
                             "--other-gateway", str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\| \d\.\d\dx \(min", line_with(result.stdout, f"dbx upload -r, gateway of {REPO}"))
    # Both gateways' own counts, side by side.
    assert re.search(r"\| SQL statements +\| [1-9][0-9.]* +\| [1-9][0-9.]* +\|", result.stdout), result.stdout
