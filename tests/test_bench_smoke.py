"""The download benchmark runs end to end (on a tiny file: this checks it works, not how fast)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_download_bench_smoke():
    result = subprocess.run(
        [sys.executable, "-m", "bench.download", "--size", "9", "--runs", "1", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["size_mib"] == 9
    for kind in ("direct", "miss", "hit"):
        row = figures[kind]
        assert 0 < row["min_mib_s"] <= row["median_mib_s"] <= row["max_mib_s"]
    assert figures["direct"]["vs_direct"] == 1.0
