"""The operator's command, ``python -m gateway.admin``, on the gateway's database.

The gateway runs in-process on the same SQLite file (``none://`` cache: the
command cannot reach an in-process memory cache, see gateway/core/admin.py),
so each command's effect is checked through the API. A few runs are real
processes, as an operator runs them (the password on standard input); the
others call the command's ``main`` on a thread of this process (an interpreter
start and a migration check per run cost seconds on a busy machine).
"""
from __future__ import annotations

import asyncio
import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from unittest import mock

import structlog

from gateway.admin import main

from gateway.config import GIB
from tests.app_fixtures import make_app as make_gateway  # noqa: F401 - the gateway in-process
from tests.harness import Api, this_checkout_first

PASSWORD = "correct horse battery"
TOKENS = "/dropbox/v1/tokens"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def admin_env(database_path) -> dict[str, str]:
    env = {**os.environ, "GATEWAY_DATABASE_PATH": str(database_path), "GATEWAY_DATABASE_URL": "",
           "GATEWAY_CACHE_URL": "none://"}
    for secret in ("GATEWAY_JWT_SECRET", "GATEWAY_S3_SECRET_KEY", "GATEWAY_CDN_SECRET", "GATEWAY_EVENTS_TOKEN"):
        env.pop(secret, None)  # it needs none of them
    return env


async def admin(database_path, *args: str, stdin: str = "") -> Ran:
    """The command's ``main`` with these arguments and standard input, on a thread (its own event loop)."""
    def run() -> Ran:
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, admin_env(database_path), clear=True), \
                mock.patch("sys.stdin", io.StringIO(stdin)), redirect_stdout(out), redirect_stderr(err):
            logging = structlog.get_config()
            try:
                code = main(args)
            except SystemExit as exc:  # argparse's refusals
                code = int(exc.code or 0)
            finally:
                structlog.configure(**logging)  # main sent the logs to ``err``: the test process's go on as before
        return Ran(code, out.getvalue(), err.getvalue())

    return await asyncio.to_thread(run)


async def admin_process(database_path, *args: str, stdin: str = "") -> Ran:
    """``python -m gateway.admin`` as an operator runs it."""
    env = this_checkout_first(admin_env(database_path))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.admin", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def listed(ran: Ran) -> dict[str, list[str]]:
    """``list``'s rows by username."""
    lines = ran.out.splitlines()
    assert lines[0].split("\t") == ["id", "username", "email", "created_at", "status", "quota_bytes", "used_bytes"]
    return {row.split("\t")[1]: row.split("\t") for row in lines[1:]}


async def log_in(api: Api, password: str = PASSWORD):
    return await api.post(TOKENS, json={"username": "alice", "password": password})


async def test_create_list_set_quotas_disable_and_enable(make_gateway, http, database_path):
    gateway = await make_gateway(cache_url="none://", signup="closed")
    api = Api(http, gateway.url)
    created = await admin_process(database_path, "create-user", "alice", "alice@example.com", "--quota", "1GiB",
                                  stdin=PASSWORD + "\n")
    assert created.code == 0, created.err
    assert (await log_in(api)).status == 200
    row = listed(await admin(database_path, "list"))["alice"]
    assert row[2] == "alice@example.com" and row[4:] == ["active", str(GIB), "0"]

    assert (await admin(database_path, "set-quota", "alice", "unlimited")).code == 0
    assert listed(await admin(database_path, "list"))["alice"][5] == "unlimited"
    assert (await admin(database_path, "set-quota", "alice", "default")).code == 0
    assert listed(await admin(database_path, "list"))["alice"][5] == str(gateway.core.config.user_quota_bytes)

    token = (await log_in(api)).body["access_token"]
    as_alice = Api(http, gateway.url, token)
    assert (await admin(database_path, "disable", "alice")).code == 0
    assert listed(await admin(database_path, "list"))["alice"][4] == "disabled"
    ended = await as_alice.get("/dropbox/v1/users/me")
    assert ended.status == 401 and ended.body["error"]["code"] == "token_revoked"
    refused = await log_in(api)
    assert refused.status == 401 and refused.body["error"]["code"] == "account_disabled"
    wrong = await log_in(api, "not her password")
    assert wrong.body["error"]["code"] == "invalid_credentials", "only the right password learns it is disabled"
    assert (await admin(database_path, "enable", "alice")).code == 0
    assert (await log_in(api)).status == 200
    assert (await as_alice.get("/dropbox/v1/users/me")).status == 401, "tokens ended by disabling stay ended"


async def test_invitations_from_the_command_sign_people_up(make_gateway, http, database_path):
    gateway = await make_gateway(signup="invite")
    api = Api(http, gateway.url)
    ran = await admin(database_path, "invite", "--count", "2", "--expires-in", "3600")
    assert ran.code == 0, ran.err
    codes = ran.out.split()
    assert len(codes) == 2 and len(set(codes)) == 2
    for n, code in enumerate(codes):
        body = {"username": f"guest-{n}", "email": f"guest{n}@example.com", "password": PASSWORD, "invitation": code}
        assert (await api.post("/dropbox/v1/users", json=body)).status == 201


async def test_no_password_on_the_command_line_and_clear_refusals(make_gateway, database_path):
    await make_gateway()  # migrates the database
    as_argument = await admin_process(database_path, "create-user", "bob", "bob@example.com", PASSWORD)
    assert as_argument.code == 2 and "unrecognized arguments" in as_argument.err
    short = await admin(database_path, "create-user", "bob", "bob@example.com", stdin="short\n")
    assert short.code == 2 and "8 to 1024 characters" in short.err
    bad_name = await admin(database_path, "create-user", "-x", "bob@example.com", stdin=PASSWORD + "\n")
    assert bad_name.code == 2
    unknown = await admin(database_path, "disable", "nobody")
    assert unknown.code == 1 and "no user named 'nobody'" in unknown.err
    assert (await admin(database_path, "create-user", "bob", "bob@example.com", stdin=PASSWORD + "\n")).code == 0
    taken = await admin(database_path, "create-user", "BOB", "bob2@example.com", stdin=PASSWORD + "\n")
    assert taken.code == 1 and "taken" in taken.err
    assert (await admin(database_path, "set-quota", "bob", "lots")).code == 2
