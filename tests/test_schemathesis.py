"""Schemathesis against the gateway: every check, every phase (stateful included), failing on any finding.

The gateway runs in-process on a loopback port, on a real database and the
in-memory store (tests/app_fixtures.py: the interface's shape is what is
checked here; the real store's side is tested end to end elsewhere); schemathesis
(its CLI, in a process of its own) loads the document the gateway serves,
logs in as a user through tests/schemathesis_hooks.py, and generates a
bounded number of requests per operation from a fixed seed, so the run is the
same every time and stays within about a minute. tests/schemathesis.toml
lists what a schema cannot say. When an endpoint is added, documenting it in
gateway/openapi.json is all this test needs.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import EVENTS_TOKEN, Api

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "schemathesis.toml"
PASSWORD = "schemathesis password"
MAX_EXAMPLES = 12
SEED = 20261125


async def test_schemathesis_finds_nothing(make_gateway, http, tmp_path):
    # One client address sends every request: no address slowdown, and the fuzzed password
    # changes (always with a wrong current password) must not lock the user out of its token.
    # The embedded store's event path is documented: the gateway serves it, as on the local stack.
    gateway = await make_gateway(chunk_size=5 * 1024 * 1024, login_failures=1_000_000,
                                 login_address_failures=1_000_000, store_part_events=True)
    user = await Api(http, gateway.url).signup(password=PASSWORD)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_GATEWAY": gateway.url,
        "SCHEMATHESIS_USERNAME": user.username,
        "SCHEMATHESIS_PASSWORD": PASSWORD,
        "SCHEMATHESIS_EVENTS_TOKEN": EVENTS_TOKEN,
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        str(schemathesis), "--config-file", str(CONFIG), "--no-color", "run", f"{gateway.url}/dropbox/v1/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--report", "junit", "--report-dir", str(tmp_path / "report"), "--output-sanitize", "false",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    selected, tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report).group(2, 3)
    assert selected == tested, f"schemathesis left operations untested:\n{report}"
