"""The benchmarks run end to end on tiny sizes, so they cannot rot (this checks they work, not how fast)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real  # runs every benchmark on stacks of its own

REPO = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"([\d,]+\.\d) \(min ([\d,]+\.\d), max ([\d,]+\.\d)\)")


def test_every_benchmark_prints_its_figures():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for title in ("Transfers:", "CPU seconds per GiB uploaded, by process", "download of a", "CDN hit", "Control path:", "Permission and metadata cache",
                  "Control path at scale:", "Presigning off the event loop", "Listing page", "Web app:"):
        assert title in out, f"{title!r} missing from:\n{out}"
    for row in (
        "upload: dbx", "upload: boto3 upload_file, in this process", "upload: boto3 upload_file + SHA-256",
        "client peak memory",
        "POST /dropbox/v1/files", "POST .../upload-urls", "GET /dropbox/v1/files/{id}, owner, cache off",
        "GET /dropbox/v1/files/{id}, owner: 1 gateway, SQLite",
        "GET /dropbox/v1/files/{id}, owner: 2 gateways, PostgreSQL, balancer",
        "upload: web app in headless Chromium", "SHA-256 in the browser: WebCrypto", "SHA-256 in the browser: JS fallback",
        "/healthz at rest", "/healthz during 2 upload-urls calls",
    ):
        line = next((line for line in out.splitlines() if row in line), None)
        assert line is not None, f"{row!r} missing from:\n{out}"
        median, low, high = (float(v.replace(",", "")) for v in FIGURE.search(line).groups())
        assert low <= median <= high
    assert " 0      |" in next(line for line in out.splitlines() if "GET /dropbox/v1/files/{id}, owner, cache on" in line)
