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
import json
import os
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import gateway
from gateway.http.routes.openapi import with_settings
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - in-process
from tests.harness import EVENTS_TOKEN, Api, upload

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "schemathesis.toml"
PASSWORD = "schemathesis password"
MAX_EXAMPLES = 12
# The fast lane (`--fast`) still sends every operation its examples and a few fuzzed and stateful
# ones: a change to the interface's shape shows within its minute. The full suite fuzzes more and adds
# the coverage phase (every boundary of every parameter: two thirds of the fast lane's schemathesis time).
FAST_LANE_MAX_EXAMPLES = 2
FAST_LANE_PHASES = "examples,fuzzing,stateful"
SEED = 20261125


@pytest.mark.long
async def test_schemathesis_finds_nothing(make_gateway, http, tmp_path, pytestconfig):
    # One client address sends every request: no address slowdown, and the fuzzed password
    # changes (always with a wrong current password) must not lock the user out of its token.
    # The embedded store's event path is documented: the gateway serves it, as on the local stack.
    gateway = await make_gateway(chunk_size=5 * 1024 * 1024, login_failures=1_000_000,
                                 login_address_failures=1_000_000, signup_rate=0,
                                 store_part_events=True)
    user = await Api(http, gateway.url).signup(password=PASSWORD)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    fast = pytestconfig.getoption("fast")
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
        "--checks", "all", "--phases", FAST_LANE_PHASES if fast else ",".join(PHASES),
        "--max-examples", str(FAST_LANE_MAX_EXAMPLES if fast else MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--report", "junit", "--report-dir", str(tmp_path / "report"), "--output-sanitize", "false",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    selected, tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report).group(2, 3)
    assert selected == tested, f"schemathesis left operations untested:\n{report}"


# --- tests/schemathesis.toml: each exception covers the one operation it names ---------------------

# The operations where a schema-valid request may be a 400, each for a rule the toml states.
EXCEPTIONS = {"createFile", "createUploadUrls", "createFolder", "updateFolder", "deleteFolder", "updateFile", "copyFile",
              "getMetadata", "listChanges", "waitForChanges", "uploadBatch"}
PHASES = ("examples", "coverage", "fuzzing", "stateful")


def accepted_statuses(config) -> dict[tuple[str, str], list[str]]:
    """(operationId, phase) -> the statuses positive_data_acceptance takes, as schemathesis reads ``config``."""
    import schemathesis

    document = json.loads((Path(gateway.__file__).parent / "openapi.json").read_text(encoding="utf-8"))
    schema = schemathesis.openapi.from_dict(with_settings(document, 5 * 1024 * 1024, 40 * 1024**3), config=config)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for phase in PHASES:
            checks = schema.config.checks_config_for(operation=operation, phase=phase)
            found[operation.definition.raw["operationId"], phase] = list(checks.positive_data_acceptance.expected_statuses)
    return found


def test_each_exception_of_the_toml_covers_only_the_operation_it_names():
    """A block's include-path and include-method are alternatives: together they once let every POST
    (and GET /dropbox/v1/files) answer 400 to valid data, which hid the share and link findings."""
    from schemathesis.config import SchemathesisConfig

    defaults = accepted_statuses(SchemathesisConfig.from_dict({}))
    configured = accepted_statuses(SchemathesisConfig.from_path(CONFIG))
    changed = {operation for (operation, _), statuses in configured.items() if statuses != defaults[operation, _]}
    assert changed == EXCEPTIONS
    for (operation, phase), statuses in configured.items():
        if operation in EXCEPTIONS:  # the default list and 400, nothing dropped (3xx once was)
            assert sorted(statuses) == sorted([*defaults[operation, phase], "400"]), (operation, phase)


# --- schema-valid requests schemathesis found refused --------------------------------------------


async def test_a_share_of_an_empty_file_id_is_a_missing_file_as_the_schema_allows(make_gateway, http):
    gateway = await make_gateway()
    api = Api(http, gateway.url)
    owner, friend = await api.signup(), await api.signup()
    for file_id in ("", "not-a-file-id"):  # like any id in a path that is no file id: no such file
        answer = await owner.post("/dropbox/v1/files/share", json={"file_id": file_id, "users": [friend.username]})
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found", answer.body
    for malformed in (None, 7, ["x"], "x" * 65):  # what the schema refuses
        answer = await owner.post("/dropbox/v1/files/share", json={"file_id": malformed, "users": [friend.username]})
        assert answer.status == 400 and answer.body["error"]["field"] == "file_id", answer.body


async def test_a_links_expires_in_is_a_json_integer_so_393_point_0_is_393_seconds(make_gateway, http):
    gateway = await make_gateway(chunk_size=5 * 1024 * 1024)
    owner = await Api(http, gateway.url).signup()
    file = await upload(owner, b"shared by a link", 5 * 1024 * 1024)
    made = await owner.post(f"/dropbox/v1/files/{file['file_id']}/links", json={"expires_in": 393.0})
    assert made.status == 201, made.body
    lives = datetime.fromisoformat(made.body["expires_at"]) - datetime.fromisoformat(made.body["created_at"])
    assert lives == timedelta(seconds=393)
    for refused in (393.5, "393", True, 0.0):
        answer = await owner.post(f"/dropbox/v1/files/{file['file_id']}/links", json={"expires_in": refused})
        assert answer.status == 400 and answer.body["error"]["field"] == "expires_in", (refused, answer.body)
