"""The real `dbx` command against the real local stack (gateway, SeaweedFS, nginx CDN tier).

The gateway runs in the test's event loop, so the command runs with
asyncio.create_subprocess_exec: a blocking subprocess call would starve it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from client.hashing import hash_threads
from protocol.fingerprints import fingerprint_stream
from gateway.config import MAX_CHUNKS
from gateway.core.content import content_key
from storage.embedded import free_port
from tests import dbx_forks
from tests.gates import Gate
from tests.harness import DBX, Api, this_checkout_first

MIB = 1024 * 1024
CHUNK = 5 * MIB  # the smallest chunk size the gateway accepts keeps the files small
PASSWORD = "correct horse battery"


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def json_lines(self) -> list:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-3000:]}"


class Dbx:
    """Runs the installed `dbx` with its own config directory and server."""

    def __init__(self, home: Path, server: str):
        self.home = home
        self.server = server
        home.mkdir(parents=True, exist_ok=True)
        self.config_home = home / "config"
        self.env = this_checkout_first({
            **{k: v for k, v in os.environ.items() if not k.startswith("DBX_")},
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "DBX_SERVER": server,
            "PYTHONUNBUFFERED": "1",
        })

    async def start(self, *args: str, env: dict | None = None, stdin: bytes | None = None) -> asyncio.subprocess.Process:
        assert DBX, "the dbx console script is not installed: pip install -e ."
        return await asyncio.create_subprocess_exec(
            DBX, *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})}, cwd=str(self.home),
        )

    async def __call__(self, *args: str, env: dict | None = None, stdin: bytes | None = None, timeout: float = 180) -> Run:
        """Run the command to its end, forked from tests/dbx_forks.py's server (see there why)."""
        rc, out, err = await dbx_forks.run(args, {**self.env, **(env or {})}, str(self.home), stdin, timeout)
        return Run(rc, out.decode(), err.decode())

    async def script(self, *args: str, env: dict | None = None, stdin: bytes | None = None, timeout: float = 180) -> Run:
        """The same through the installed console script, a new interpreter."""
        process = await self.start(*args, env=env, stdin=stdin)
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
            raise AssertionError(f"dbx {' '.join(args)} did not finish in {timeout}s:\n{err.decode()[-3000:]}") from None
        return Run(process.returncode, out.decode(), err.decode())

    async def login(self, username: str, password: str = PASSWORD) -> Run:
        run = await self("login", username, env={"DBX_PASSWORD": password})
        assert run.rc == 0, run
        return run


def no_traceback(run: Run) -> None:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run


def write_random(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n
    return path


def fingerprint_of(path: Path, chunk_size: int = CHUNK) -> str:
    with open(path, "rb") as f:
        return fingerprint_stream(f, chunk_size)[0]


async def stored_sha256(gateway, fingerprint: str) -> str:
    """SHA-256 of the object in the store, read with the gateway's credentials (not through the gateway)."""
    from tests.harness import BUCKET, raw_s3

    def read() -> str:
        body = raw_s3(gateway.config.s3_endpoint).get_object(Bucket=BUCKET, Key=content_key(fingerprint))["Body"]
        digest = hashlib.sha256()
        for piece in body.iter_chunks(MIB):
            digest.update(piece)
        return digest.hexdigest()

    return await asyncio.to_thread(read)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


@pytest.fixture
async def stack(make_gateway):
    return await make_gateway(chunk_size=CHUNK)


async def logged_in(gateway_url: str, http, tmp_path) -> Dbx:
    """A user made through the API, logged in with `dbx login`."""
    api = await Api(http, gateway_url).signup(password=PASSWORD)
    dbx = Dbx(tmp_path, gateway_url)
    await dbx.login(api.username)
    dbx.api = api
    return dbx


@pytest.fixture
async def user(stack, http, tmp_path):
    return await logged_in(stack.url, http, tmp_path)


# -- accounts ------------------------------------------------------------------------


async def test_signup_stores_a_private_token_and_whoami_uses_it(stack, tmp_path):
    dbx = Dbx(tmp_path, stack.url)
    name = "cli-" + secrets.token_hex(3)
    run = await dbx("signup", name, "--email", f"{name}@example.com", "--password-stdin", "--json",
                    stdin=f"{PASSWORD}\n".encode())
    assert run.rc == 0, run
    assert run.json()["username"] == name
    credentials = dbx.config_home / "dbx" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert json.loads(credentials.read_text())["servers"][stack.url]["username"] == name

    me = await dbx("whoami", "--json")
    assert me.rc == 0, me
    assert me.json()["username"] == name
    assert me.json()["used_bytes"] == 0 and me.json()["quota_bytes"] > 0
    assert "used 0 B of " in (await dbx("whoami")).stdout

    out = await dbx("logout")
    assert out.rc == 0, out
    assert (await dbx("whoami")).rc == 5
    assert (await dbx("login", name, "--password-stdin", stdin=f"{PASSWORD}\n".encode())).rc == 0
    assert (await dbx("whoami")).rc == 0

    again = await dbx("signup", name, "--email", f"{name}@example.com", env={"DBX_PASSWORD": PASSWORD})
    assert again.rc == 7, again
    assert "taken" in again.stderr
    no_traceback(again)


async def test_wrong_password_is_exit_4_and_says_so(user):
    run = await user("login", user.api.username, env={"DBX_PASSWORD": "not the password"})
    assert run.rc == 4, run
    assert "wrong username or password" in run.stderr
    no_traceback(run)


async def test_missing_password_without_a_terminal_is_a_usage_error(user):
    run = await user("login", user.api.username)
    assert run.rc == 2, run
    assert "DBX_PASSWORD" in run.stderr and "--password-stdin" in run.stderr
    no_traceback(run)


async def test_server_down_names_the_server_and_what_to_do(user):
    down = f"http://127.0.0.1:{free_port()}"
    run = await user("login", "someone", "--server", down, env={"DBX_PASSWORD": PASSWORD})
    assert run.rc == 3, run
    assert down in run.stderr and "cannot reach the gateway" in run.stderr and "DBX_SERVER" in run.stderr
    no_traceback(run)
    # Logged in, then the gateway goes away.
    creds = user.config_home / "dbx" / "credentials.json"
    data = json.loads(creds.read_text())
    data["servers"][down] = data["servers"][user.server]
    creds.write_text(json.dumps(data))
    for args in (("ls",), ("info", "abc"), ("upload", __file__)):
        run = await user(*args, "--json", env={"DBX_SERVER": down})
        assert run.rc == 3, run
        assert "cannot reach the gateway" in run.stderr and down in run.stderr
        assert run.json()["error"]["code"] == "unreachable"
        no_traceback(run)


async def test_not_logged_in_and_expired_token_say_run_dbx_login(stack, user, tmp_path):
    stranger = Dbx(tmp_path / "stranger", stack.url)
    run = await stranger("ls")
    assert run.rc == 5, run
    assert "dbx login" in run.stderr and "not logged in" in run.stderr
    no_traceback(run)

    # A token the gateway itself says has expired (the local clock thinks it is still fine).
    now = int(time.time())
    expired = jwt.encode(
        {"sub": str(user.api.user_id), "username": user.api.username, "iat": now - 100, "exp": now - 10,
         "iss": "dropbox-gateway", "jti": "an-old-token", "gen": 0},
        stack.config.jwt_secret, algorithm="HS256",
    )
    creds = user.config_home / "dbx" / "credentials.json"
    data = json.loads(creds.read_text())
    data["servers"][stack.url]["access_token"] = expired
    creds.write_text(json.dumps(data))
    run = await user("ls")
    assert run.rc == 5, run
    assert "expired" in run.stderr and "dbx login" in run.stderr
    no_traceback(run)


# -- uploads -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK + 12345], ids=["empty", "one-byte", "multi-chunk"])
async def test_upload_then_info_round_trip(stack, user, tmp_path, size):
    path = write_random(tmp_path / f"data-{size}.bin", size)
    run = await user("upload", str(path), "--json")
    assert run.rc == 0, run
    [result] = run.json_lines()
    fingerprint = fingerprint_of(path)
    total = -(-size // CHUNK)
    assert result["ok"] is True
    assert result["status"] == "uploaded"
    assert result["fingerprint"] == fingerprint
    assert result["file_size"] == size
    assert result["chunks_total"] == total
    assert result["chunks_sent"] == total
    assert result["bytes_sent"] == size

    info = await user("info", result["file_id"], "--json")
    assert info.rc == 0, info
    obj = info.json()
    assert obj["file_id"] == result["file_id"]
    assert obj["file_name"] == path.name
    assert obj["status"] == "uploaded"
    assert obj["file_size"] == size
    assert obj["fingerprint"] == fingerprint
    assert obj["uploaded_chunks"] == obj["total_chunks"] == total
    assert obj["uploaded_by"] == user.api.username
    # The store holds exactly these bytes.
    assert await stored_sha256(stack, fingerprint) == sha256_file(path)

    human = await user("info", result["file_id"])
    assert human.rc == 0 and fingerprint in human.stdout and path.name in human.stdout


async def test_upload_several_files_and_again_sends_nothing(user, tmp_path):
    a = write_random(tmp_path / "a.bin", CHUNK + 1)
    b = write_random(tmp_path / "b.bin", 10)
    first = await user("upload", str(a), str(b), "--json", "--parallel", "3")
    assert first.rc == 0, first
    assert [r["chunks_sent"] for r in first.json_lines()] == [2, 1]
    again = await user("upload", str(a), str(b), "--json")
    assert again.rc == 0, again
    results = again.json_lines()
    assert [r["chunks_sent"] for r in results] == [0, 0]
    assert [r["file_id"] for r in results] == [r["file_id"] for r in first.json_lines()]
    assert all(r["status"] == "uploaded" and r["already_uploaded"] for r in results)

    # The same content under another name: a new file, no bytes moved.
    renamed = await user("upload", str(a), "--name", "a-copy.bin", "--json")
    assert renamed.rc == 0, renamed
    [copy] = renamed.json_lines()
    assert copy["deduplicated"] is True and copy["chunks_sent"] == 0 and copy["file_name"] == "a-copy.bin"
    assert copy["file_id"] not in [r["file_id"] for r in results]


async def test_upload_errors_are_per_file_with_exit_codes(user, tmp_path):
    good = write_random(tmp_path / "good.bin", 100)
    run = await user("upload", str(tmp_path / "missing.bin"), str(good), "--json")
    assert run.rc == 6, run
    missing, ok = run.json_lines()
    assert missing["ok"] is False and missing["error"]["exit_code"] == 6
    assert ok["ok"] is True and ok["status"] == "uploaded"
    assert "no such file" in run.stderr and "missing.bin" in run.stderr
    no_traceback(run)

    directory = await user("upload", str(tmp_path))
    assert directory.rc == 2 and "is a directory" in directory.stderr, directory


async def read_until(stream: asyncio.StreamReader, pattern: re.Pattern, buffer: bytearray, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        found = pattern.search(buffer.decode(errors="replace"))
        if found:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{pattern.pattern!r} never appeared in:\n{buffer.decode(errors='replace')[-2000:]}")
        piece = await asyncio.wait_for(stream.read(4096), left)
        if not piece:
            raise AssertionError(f"the stream ended before {pattern.pattern!r}:\n{buffer.decode(errors='replace')}")
        buffer += piece


# A test that interrupts a transfer holds it at a gate (tests/gates.py) and waits until dbx is stuck there, so
# the signal comes at the same point of the transfer however fast or loaded the machine is.
PARALLEL = 2  # each command's --parallel: with this many requests held, every worker waits at the gate


@pytest.fixture
async def store_gate(store):
    """A gate in front of the store for the chunk PUTs."""
    gate = await Gate(store.endpoint, methods=("PUT",)).start()
    yield gate
    await gate.stop()


@pytest.fixture
async def gated_user(make_gateway, store_gate, http, tmp_path):
    """A user of a gateway whose presigned URLs name the store gate."""
    gateway = await make_gateway(chunk_size=CHUNK, s3_public_endpoint=store_gate.url)
    return await logged_in(gateway.url, http, tmp_path)


async def start_held_upload(user, gate: Gate, path: Path, stored: int):
    """Start an upload and return (process, file_id) once ``stored`` chunks are in the store and the rest held."""
    gate.hold_after(stored)
    process = await user.start("upload", str(path), "--parallel", str(PARALLEL))
    match = await read_until(process.stderr, re.compile(r"file_id=([A-Za-z0-9_-]+)"), bytearray())
    await gate.holding(PARALLEL)
    assert gate.answered == [200] * stored, gate.answered
    return process, match.group(1)


async def test_killed_upload_resumes_sending_only_missing_chunks(gated_user, store_gate, tmp_path):
    total, stored = 8, 3
    path = write_random(tmp_path / "big.bin", total * CHUNK - 1000)
    process, file_id = await start_held_upload(gated_user, store_gate, path, stored)
    process.kill()  # kill -9: no cleanup at all
    await process.wait()
    store_gate.release()  # the held chunks never reach the store; the rerun's pass

    before = (await gated_user.api.get(f"/dropbox/v1/files/{file_id}")).body
    assert before["status"] == "uploading", before

    run = await gated_user("upload", str(path), "--json")
    assert run.rc == 0, run
    [result] = run.json_lines()
    assert result["file_id"] == file_id
    assert result["resumed"] is True
    assert result["status"] == "uploaded"
    assert (result["chunks_skipped"], result["chunks_sent"]) == (stored, total - stored), result
    assert "resuming" in run.stderr
    info = await gated_user("info", file_id, "--json")
    assert info.json()["status"] == "uploaded" and info.json()["fingerprint"] == fingerprint_of(path)


async def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(gated_user, store_gate, tmp_path):
    total, stored = 6, 2
    path = write_random(tmp_path / "interrupted.bin", total * CHUNK)
    process, file_id = await start_held_upload(gated_user, store_gate, path, stored)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    store_gate.release()
    assert process.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err and b"Traceback" not in err

    run = await gated_user("upload", str(path), "--json", "--quiet")
    assert run.rc == 0, run
    assert run.stderr == ""
    [result] = run.json_lines()
    assert result["file_id"] == file_id and result["status"] == "uploaded"
    assert (result["chunks_skipped"], result["chunks_sent"]) == (stored, total - stored), result


def bytes_read(pid: int) -> int | None:
    """What process ``pid`` has read so far (rchar in /proc/PID/io: files, pipes, sockets); None once it is gone."""
    try:
        return int(re.search(r"^rchar: (\d+)$", Path(f"/proc/{pid}/io").read_text(), re.MULTILINE).group(1))
    except (OSError, AttributeError):
        return None


async def test_ctrl_c_while_fingerprinting_a_large_file_stops_at_once(make_gateway, http, tmp_path):
    """Ctrl-C stops the hashing threads: they finish the chunks they are at, read no further, and dbx exits.

    Measured in bytes, not seconds: how much dbx reads after the signal does not
    depend on how loaded the machine is, how long it takes to exit does.
    """
    chunk = 64 * MIB
    gateway = await make_gateway(chunk_size=chunk, max_file_size=MAX_CHUNKS * chunk)
    dbx = await logged_in(gateway.url, http, tmp_path)
    # dbx remembers a server's chunk size at its first upload; the next one hashes in that size from its start.
    assert (await dbx("upload", str(write_random(tmp_path / "small.bin", 1000)), "--quiet")).rc == 0
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(MAX_CHUNKS * chunk)  # 625 GiB, sparse: no disk space, and minutes of hashing on any machine
    process = await dbx.start("upload", str(path))
    try:
        await read_until(process.stderr, re.compile("hashing"), bytearray())  # the pass is under way
        before = bytes_read(process.pid)
        assert before is not None, "dbx ended before the signal"
        process.send_signal(signal.SIGINT)
        exited = asyncio.ensure_future(process.communicate())
        # Each thread ends the chunk it is at; until the signal's cancel comes round, it may start a few more.
        limit = hash_threads() * 16 * chunk
        deadline = time.monotonic() + 120  # only for a dbx that hangs without reading: any stop takes far less
        while not (await asyncio.wait({exited}, timeout=0.05))[0]:
            now = bytes_read(process.pid)
            read = 0 if now is None else now - before
            assert read <= limit, f"dbx read {read // MIB} MiB after Ctrl-C: the hashing threads were not stopped"
            assert time.monotonic() < deadline, "dbx neither exited nor read after Ctrl-C"
        _, err = exited.result()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err and b"Traceback" not in err
    listed = (await dbx.api.get("/dropbox/v1/files")).body["files"]
    assert [file["file_name"] for file in listed] == ["small.bin"], "the interrupted upload was announced"


async def communicate_watching_peak_rss(process) -> tuple[bytes, bytes, int]:
    """Wait for ``process`` like communicate(), sampling its peak resident memory (KiB) meanwhile."""
    peak_kib = 0
    status = Path(f"/proc/{process.pid}/status")
    communicate = asyncio.ensure_future(process.communicate())
    while not communicate.done():
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            if match:
                peak_kib = max(peak_kib, int(match.group(1)))
        except OSError:
            pass
        await asyncio.sleep(0.05)
    out, err = communicate.result()
    return out, err, peak_kib

@pytest.mark.slow
async def test_upload_memory_stays_flat(user, tmp_path):
    """A file much larger than parallel x chunk_size uploads in bounded memory."""
    size = 30 * CHUNK  # 150 MiB
    path = write_random(tmp_path / "large.bin", size)
    process = await user.start("upload", str(path), "--json", "--quiet", "--parallel", "2")
    out, err, peak_kib = await communicate_watching_peak_rss(process)
    assert process.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["chunks_sent"] == 30
    # The interpreter, aiohttp and tqdm take ~40-60 MiB; two chunks in flight add ~10 MiB (58 MiB measured).
    assert 0 < peak_kib < 100 * 1024, f"peak RSS {peak_kib // 1024} MiB for a {size // MIB} MiB file"


# -- downloads (the CDN tier) ----------------------------------------------------------


@pytest.fixture
async def cdn_stack(make_gateway, cdn):
    """The gateway with the real nginx CDN tier (the session's `cdn` fixture) in front of the store."""
    return await make_gateway(chunk_size=CHUNK, cdn_url=cdn.url)


@pytest.fixture
async def cdn_user(cdn_stack, http, tmp_path):
    return await logged_in(cdn_stack.url, http, tmp_path)


def download_args(file_id: str, *options: str) -> list[str]:
    """`dbx download OPTIONS -- FILE_ID`: a file id can begin with "-", which argparse takes for an option."""
    return ["download", *options, "--", file_id]


async def upload_one(dbx: Dbx, path: Path) -> dict:
    run = await dbx("upload", str(path), "--json", "--quiet")
    assert run.rc == 0, run
    return run.json_lines()[0]


@pytest.mark.parametrize("size", [0, 1, 2 * CHUNK + 777], ids=["empty", "one-byte", "multi-chunk"])
async def test_download_round_trip_verified(cdn_user, tmp_path, size):
    source = write_random(tmp_path / f"source-{size}.bin", size)
    uploaded = await upload_one(cdn_user, source)
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()
    run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
    assert run.rc == 0, run
    result = run.json()
    assert result["path"] == str(target)
    assert result["fingerprint"] == uploaded["fingerprint"]
    assert result["chunks_total"] == result["chunks_fetched"] == -(-size // CHUNK)
    assert result["chunks_reused"] == 0 and result["bytes_received"] == size
    assert sha256_file(target) == sha256_file(source)
    assert not Path(str(target) + ".part").exists() and not Path(str(target) + ".part.json").exists()

    # Into a directory: the server's file name.
    run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target.parent), "--quiet"))
    assert run.rc == 0, run
    assert sha256_file(target.parent / source.name) == sha256_file(source)


async def test_parallel_download_of_a_multi_chunk_file_is_identical(cdn_stack, cdn_user, tmp_path):
    """Chunks fetched at once with Range requests through nginx (a cache miss, then a hit) give the same bytes."""
    source = write_random(tmp_path / "many.bin", 7 * CHUNK + 123)
    uploaded = await upload_one(cdn_user, source)
    expected = sha256_file(source)
    assert await stored_sha256(cdn_stack, uploaded["fingerprint"]) == expected
    for attempt in ("miss", "hit"):
        target = tmp_path / f"many-{attempt}.bin"
        run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
        assert run.rc == 0, run
        result = run.json()
        assert (result["chunks_total"], result["chunks_fetched"], result["chunks_reused"]) == (8, 8, 0)
        assert result["range_requests"] is True
        assert sha256_file(target) == expected


def write_partial(target: Path, source: Path, uploaded: dict, chunks: list[int], done: list[list[int]]) -> None:
    """What an interrupted run leaves: the listed chunks at their offsets in a full-size part, and its sidecar."""
    data = source.read_bytes()
    part = bytearray(len(data))
    for index in chunks:
        part[index * CHUNK:(index + 1) * CHUNK] = data[index * CHUNK:(index + 1) * CHUNK]
    Path(str(target) + ".part").write_bytes(part)
    Path(str(target) + ".part.json").write_text(json.dumps({
        "file_id": uploaded["file_id"], "fingerprint": uploaded["fingerprint"],
        "file_size": uploaded["file_size"], "chunk_size": CHUNK, "chunks_done": done,
    }))


async def test_download_resumes_with_only_the_chunks_an_earlier_run_lacked(cdn_user, tmp_path):
    source = write_random(tmp_path / "resume.bin", 3 * CHUNK + 4321)
    uploaded = await upload_one(cdn_user, source)
    target = tmp_path / "resume-copy.bin"
    write_partial(target, source, uploaded, [0, 2], [[0, 0], [2, 2]])
    run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
    assert run.rc == 0, run
    result = run.json()
    assert (result["chunks_reused"], result["chunks_fetched"]) == (2, 2)
    assert result["resumed_from"] == 2 * CHUNK
    assert result["bytes_received"] == uploaded["file_size"] - 2 * CHUNK
    assert sha256_file(target) == sha256_file(source)


@pytest.fixture
async def cdn_gate(cdn):
    """A gate in front of the CDN tier for the chunk GETs."""
    gate = await Gate(cdn.url, methods=("GET",)).start()
    yield gate
    await gate.stop()


@pytest.fixture
async def gated_cdn_user(make_gateway, cdn_gate, http, tmp_path):
    """A user of a gateway whose download URLs name the CDN gate."""
    gateway = await make_gateway(chunk_size=CHUNK, cdn_url=cdn_gate.url)
    return await logged_in(gateway.url, http, tmp_path)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
async def test_interrupted_download_resumes_fetching_only_missing_chunks(gated_cdn_user, cdn_gate, tmp_path, how):
    total, fetched = 24, 3
    source = write_random(tmp_path / "interrupted.bin", total * CHUNK - 99)
    uploaded = await upload_one(gated_cdn_user, source)
    target = tmp_path / "interrupted-copy.bin"
    sidecar = Path(str(target) + ".part.json")

    def recorded() -> int:
        try:
            done = json.loads(sidecar.read_text()).get("chunks_done", [])
        except (OSError, ValueError):
            return 0
        return sum(last - first + 1 for first, last in done)

    cdn_gate.hold_after(fetched)
    process = await gated_cdn_user.start(*download_args(uploaded["file_id"], "-o", str(target), "--quiet",
                                                        "--parallel", str(PARALLEL)))
    await cdn_gate.holding(PARALLEL)  # every worker waits at the gate: the chunks let through are written
    assert cdn_gate.answered == [206] * fetched, cdn_gate.answered
    process.send_signal(how)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    cdn_gate.release()
    kept = recorded()
    if how == signal.SIGINT:
        assert process.returncode == 130, err.decode()[-2000:]
        assert b"interrupted" in err and b"Traceback" not in err
        assert kept == fetched, err.decode()[-2000:]  # the part is closed: what is written is listed
    else:
        # The sidecar lists the first chunk at once, later ones about once a second: a crash loses at most that.
        assert 1 <= kept <= fetched, err.decode()[-2000:]
    assert not target.exists()

    run = await gated_cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
    assert run.rc == 0, run
    result = run.json()
    assert (result["chunks_reused"], result["chunks_fetched"]) == (kept, total - kept)
    assert sha256_file(target) == sha256_file(source)
    assert not sidecar.exists()


async def test_download_never_reuses_a_part_of_other_content(cdn_user, tmp_path):
    source = write_random(tmp_path / "fresh.bin", CHUNK + 10)
    uploaded = await upload_one(cdn_user, source)
    target = tmp_path / "fresh-copy.bin"
    Path(str(target) + ".part").write_bytes(os.urandom(5000))
    Path(str(target) + ".part.json").write_text(json.dumps({
        "fingerprint": hashlib.sha256(b"something else").hexdigest(), "file_size": 5000, "chunk_size": CHUNK,
        "chunks_done": [[0, 0]],
    }))
    run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
    assert run.rc == 0, run
    assert run.json()["resumed_from"] == 0 and run.json()["chunks_reused"] == 0
    assert sha256_file(target) == sha256_file(source)


async def test_download_checks_a_partial_again_and_refetches_what_no_longer_matches(cdn_user, tmp_path):
    source = write_random(tmp_path / "verify.bin", 2 * CHUNK + 10)
    uploaded = await upload_one(cdn_user, source)
    target = tmp_path / "verify-copy.bin"
    # The right sidecar, claiming chunks 0 and 1; chunk 1's bytes were damaged since.
    write_partial(target, source, uploaded, [0], [[0, 1]])
    run = await cdn_user(*download_args(uploaded["file_id"], "-o", str(target), "--json"))
    assert run.rc == 0, run
    assert (run.json()["chunks_reused"], run.json()["chunks_fetched"]) == (1, 2)
    no_traceback(run)
    assert sha256_file(target) == sha256_file(source)


@pytest.mark.slow
async def test_download_memory_stays_flat(cdn_user, tmp_path):
    """A file much larger than parallel x chunk_size downloads in bounded memory."""
    source = write_random(tmp_path / "large.bin", 30 * CHUNK)  # 150 MiB
    uploaded = await upload_one(cdn_user, source)
    target = tmp_path / "large-copy.bin"
    process = await cdn_user.start(*download_args(uploaded["file_id"], "-o", str(target), "--json", "--quiet"))
    out, err, peak_kib = await communicate_watching_peak_rss(process)
    assert process.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["chunks_fetched"] == 30
    assert sha256_file(target) == sha256_file(source)
    # The interpreter, aiohttp and tqdm take ~40-60 MiB; four 5 MiB chunks in flight add ~20 MiB.
    assert 0 < peak_kib < 100 * 1024, f"peak RSS {peak_kib // 1024} MiB for a {30 * CHUNK // MIB} MiB file"


async def test_download_of_unknown_file_is_exit_6(cdn_user, tmp_path):
    run = await cdn_user(*download_args("no-such-file-id", "-o", str(tmp_path / "x")))
    assert run.rc == 6, run
    assert "not found" in run.stderr and "dbx ls" in run.stderr
    no_traceback(run)
    assert not (tmp_path / "x").exists()


async def test_a_shared_dotfile_never_lands_on_a_dotfile_and_nothing_is_overwritten(cdn_stack, cdn_user, http,
                                                                                    tmp_path):
    """A sharer names a file `.bashrc`; the reader downloads it from their home directory (issue 17, item 5)."""
    source = write_random(tmp_path / "payload", 3000)
    run = await cdn_user("upload", str(source), "--name", ".bashrc", "--json", "--quiet")
    assert run.rc == 0, run
    file_id = run.json()["file_id"]
    bob_api = await Api(http, cdn_stack.url).signup(password=PASSWORD)
    await cdn_user("share", file_id, bob_api.username)
    bob = Dbx(tmp_path / "bob", cdn_stack.url)
    await bob.login(bob_api.username)
    bashrc = bob.home / ".bashrc"
    bashrc.write_text("alias ls='ls --color'\n")

    run = await bob(*download_args(file_id))  # the working directory is bob's home
    assert run.rc == 0, run
    assert bashrc.read_text() == "alias ls='ls --color'\n"
    assert (bob.home / "bashrc").read_bytes() == source.read_bytes()

    (bob.home / "bashrc").write_text("my own\n")
    run = await bob(*download_args(file_id))
    assert run.rc == 10, run
    assert "--force" in run.stderr and "exists" in run.stderr
    no_traceback(run)
    assert (bob.home / "bashrc").read_text() == "my own\n"

    run = await bob(*download_args(file_id, "--force"))
    assert run.rc == 0, run
    assert (bob.home / "bashrc").read_bytes() == source.read_bytes()
    assert bashrc.read_text() == "alias ls='ls --color'\n"


# -- listing, sharing, deleting ---------------------------------------------------------


async def test_ls_lists_own_files(user, tmp_path):
    path = write_random(tmp_path / "listed.bin", 1234)
    uploaded = await upload_one(user, path)
    run = await user("ls", "--json")
    assert run.rc == 0, run
    assert uploaded["file_id"] in [f["file_id"] for f in run.json()["files"]]
    human = await user("ls")
    assert human.rc == 0 and uploaded["file_id"] in human.stdout and "listed.bin" in human.stdout


async def test_share_ls_shared_unshare_and_rm(cdn_stack, cdn_user, http, tmp_path):
    alice = cdn_user
    bob_api = await Api(http, cdn_stack.url).signup(password=PASSWORD)
    bob = Dbx(tmp_path / "bob", cdn_stack.url)
    await bob.login(bob_api.username)
    source = write_random(tmp_path / "shared.bin", CHUNK + 3)
    uploaded = await upload_one(alice, source)
    file_id = uploaded["file_id"]

    # Before sharing, bob cannot see it.
    hidden = await bob("info", file_id)
    assert hidden.rc == 6, hidden

    shared = await alice("share", file_id, bob_api.username, "--json")
    assert shared.rc == 0, shared
    assert bob_api.username in shared.json()["shared_with"]
    again = await alice("share", file_id, bob_api.username)  # idempotent
    assert again.rc == 0, again

    unknown = await alice("share", file_id, "nobody-" + secrets.token_hex(3))
    assert unknown.rc == 6 and "nobody-" in unknown.stderr, unknown
    no_traceback(unknown)

    listing = await bob("ls", "--shared", "--json")
    assert listing.rc == 0, listing
    assert [f["file_id"] for f in listing.json()["shared"]] == [file_id]
    both = await bob("ls", "--all", "--json")
    assert both.json()["files"] == [] and len(both.json()["shared"]) == 1
    human = await bob("ls", "shared")
    assert human.rc == 0 and file_id in human.stdout and alice.api.username in human.stdout
    assert (await bob("info", file_id)).rc == 0
    copy = tmp_path / "bob-copy.bin"
    got = await bob("download", file_id, "-o", str(copy), "--quiet")
    assert got.rc == 0, got
    assert sha256_file(copy) == sha256_file(source)

    # Only the owner shares, unshares or deletes.
    assert (await bob("rm", file_id)).rc == 6
    assert (await bob("share", file_id, alice.api.username)).rc in (6, 7)

    gone = await alice("unshare", file_id, bob_api.username)
    assert gone.rc == 0, gone
    assert (await bob("info", file_id)).rc == 6
    assert (await bob("ls", "--shared", "--json")).json()["shared"] == []

    removed = await alice("rm", file_id)
    assert removed.rc == 0, removed
    assert file_id not in [f["file_id"] for f in (await alice("ls", "--json")).json()["files"]]
    missing = await alice("rm", file_id)
    assert missing.rc == 6 and "not found" in missing.stderr, missing
    no_traceback(missing)


# -- sessions against the real gateway (issue 14, item 3; contract v1.1) -------------------------


def stored_token(dbx: Dbx, server: str) -> str:
    data = json.loads((dbx.config_home / "dbx" / "credentials.json").read_text())
    return data["servers"][server]["access_token"]


async def test_dbx_logout_ends_the_session_on_the_gateway(stack, user, http):
    token = stored_token(user, stack.url)
    run = await user("logout", "--json")
    assert run.rc == 0, run
    assert run.json()["session"] == "ended"
    revoked = await Api(http, stack.url, token).get("/dropbox/v1/users/me")
    assert revoked.status == 401 and revoked.body["error"]["code"] == "token_revoked"
    assert (await user("whoami")).rc == 5


async def test_a_session_ended_elsewhere_says_so(stack, user, http):
    """The token is revoked by another client of the same session: dbx says the session ended (exit 5)."""
    assert (await Api(http, stack.url, stored_token(user, stack.url)).delete("/dropbox/v1/tokens/current")).status == 204
    run = await user("whoami")
    assert run.rc == 5, run
    assert "dbx login" in run.stderr
    no_traceback(run)
    again = await user("logout", "--json")
    assert again.rc == 0 and again.json()["session"] == "already ended", again


async def test_dbx_passwd_changes_the_password_and_ends_every_other_session(stack, user, http, tmp_path):
    other = Dbx(tmp_path / "laptop", stack.url)
    await other.login(user.api.username)
    old_token = stored_token(user, stack.url)
    new_password = "a brand new password"
    run = await user("passwd", "--password-stdin", "--json", stdin=f"{PASSWORD}\n{new_password}\n".encode())
    assert run.rc == 0, run
    assert run.json()["password_changed"] is True and run.json()["logged_in"] is True
    assert stored_token(user, stack.url) != old_token
    assert (await user("whoami")).rc == 0, "logged in again with the new password"
    ended = await other("whoami")
    assert ended.rc == 5, ended
    old = await Api(http, stack.url).post("/dropbox/v1/tokens", json={"username": user.api.username, "password": PASSWORD})
    assert old.status == 401
    await other.login(user.api.username, new_password)


async def test_dbx_passwd_with_a_wrong_current_password_changes_nothing(stack, user):
    run = await user("passwd", "--password-stdin", stdin=b"not my password\na brand new password\n")
    assert run.rc == 4, run  # a wrong password, as for `dbx login`
    assert "current password is wrong" in run.stderr
    no_traceback(run)
    assert (await user("whoami")).rc == 0
    await user.login(user.api.username, PASSWORD)


async def test_dbx_login_is_throttled_after_wrong_passwords(make_gateway, http, tmp_path):
    gateway = await make_gateway(chunk_size=CHUNK, login_failures=2)
    api = await Api(http, gateway.url).signup(password=PASSWORD)
    dbx = Dbx(tmp_path, gateway.url)
    for _ in range(2):
        assert (await dbx("login", api.username, env={"DBX_PASSWORD": "a wrong password"})).rc == 4
    run = await dbx("login", api.username, env={"DBX_PASSWORD": PASSWORD})
    assert run.rc == 11, run
    assert "try again" in run.stderr.lower() or "retry" in run.stderr.lower() or "minute" in run.stderr.lower()
    no_traceback(run)
