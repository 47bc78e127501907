"""The tests' fork server for `dbx` (tests/dbx_forks.py) answers as the installed console script does."""
from __future__ import annotations

import pytest

from storage.embedded import free_port
from tests.test_client import PASSWORD, Dbx

NOWHERE = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every command fails its own way


@pytest.mark.parametrize("args, stdin", [
    ((), None),  # no command: a usage error
    (("ls", "/"), None),  # not logged in
    (("ls", "/", "--json"), None),
    (("mkdir", "no-slash"), None),  # a path the contract refuses, before any request
    (("signup", "someone", "--email", "someone@example.com", "--password-stdin"), f"{PASSWORD}\n".encode()),
    (("--help",), None),  # exit 0, a page on stdout
])
async def test_the_fork_server_and_the_console_script_answer_alike(tmp_path, args, stdin):
    dbx = Dbx(tmp_path / "home", NOWHERE)
    forked, script = await dbx(*args, stdin=stdin), await dbx.script(*args, stdin=stdin)
    assert (forked.rc, forked.stdout, forked.stderr) == (script.rc, script.stdout, script.stderr)
    assert forked.rc != 0 or args == ("--help",), forked


async def test_each_run_has_its_own_environment_and_directory(tmp_path):
    first, second = Dbx(tmp_path / "a", NOWHERE), Dbx(tmp_path / "b", NOWHERE.replace("127.0.0.1", "localhost"))
    runs = [await first("ls", "/"), await second("ls", "/"), await first("ls", "/", env={"DBX_SERVER": "http://127.0.0.2:9"})]
    assert [NOWHERE in runs[0].stderr, "localhost" in runs[1].stderr, "127.0.0.2:9" in runs[2].stderr] == [True] * 3, runs
