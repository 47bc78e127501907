"""The client's pure logic, and its retry paths against a scripted fake gateway and store."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from client import errors
from client.api import GatewayClient, missing_chunks, retry_after_seconds, wait_words
from client.cli import build_parser, main, parse_duration, parse_rate
from client.output import CONTROL, file_row, info_lines, link_summary, link_table, printable, quota_line, show_time, whoami_lines
from client.config import Credentials, CredentialStore, config_dir, normalize_server, resolve_server
from client.download import (
    DownloadOptions,
    PartFile,
    claimed_chunks,
    download_file,
    from_ranges,
    part_path,
    read_sidecar,
    resolve_target,
    safe_name,
    sidecar_path,
    to_ranges,
)
from client import hashing as client_hashing
from client.hashing import fingerprint_file, verify_chunks
from client.transfer import backoff_delay
from client.output import parse_time
from client.upload import RateLimiter, UploadOptions, read_chunk, upload_file
from protocol.fingerprints import (EMPTY_FINGERPRINT, chunk_fingerprint, file_fingerprint, fingerprint_bytes,
                                   fingerprint_stream)
from tests.gates import Gate
from storage.embedded import free_port
from tests.harness import DBX, this_checkout_first



# -- fingerprints --------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 63, 64, 65, 200])
def test_chunk_digests_make_up_the_file_fingerprint(size):
    """What a download relies on: the chunk fingerprints, verified one by one, give the file's."""
    data = os.urandom(size)
    expected = fingerprint_stream(io.BytesIO(data), 8)
    chunks = [hashlib.sha256(data[i:i + 8]).hexdigest() for i in range(0, size, 8)]
    assert chunks == expected[1]
    assert file_fingerprint(chunks) == expected[0]


async def test_empty_file_fingerprint_is_sha256_of_nothing(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert await fingerprint_file(str(path), 5) == (EMPTY_FINGERPRINT, [], 0)
    assert file_fingerprint([]) == EMPTY_FINGERPRINT


def test_fingerprint_of_bytes_is_the_streamed_one():
    data = os.urandom(1000)
    assert fingerprint_bytes(data, 300) == fingerprint_stream(io.BytesIO(data), 300)[:2]
    assert fingerprint_bytes(b"", 300) == (EMPTY_FINGERPRINT, [])
    assert chunk_fingerprint(data[:300]) == hashlib.sha256(data[:300]).hexdigest()


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize("size,chunk_size,piece", [(0, 7, 4), (1, 7, 4), (7, 7, 4), (50, 7, 4), (49, 7, 3),
                                                   (1000, 64, 64), (1000, 64, 1000), (3000, 256, 100)])
async def test_chunks_hashed_on_several_threads_give_the_contracts_fingerprints(
        tmp_path, monkeypatch, threads, size, chunk_size, piece):
    monkeypatch.setattr(client_hashing, "PIECE", piece)  # chunks read in several pieces, or in one
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    done = []
    answer = await fingerprint_file(str(path), chunk_size, threads=threads, on_chunk=done.append)
    assert answer == fingerprint_stream(io.BytesIO(data), chunk_size)
    assert done == [len(data[i:i + chunk_size]) for i in range(0, size, chunk_size)]  # in order, one per chunk


async def test_a_file_that_changes_size_while_hashed_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(4096))
    real = client_hashing.fingerprint_chunk_at

    def growing(*args):
        with open(path, "ab") as f:
            f.write(b"more")
        return real(*args)

    monkeypatch.setattr(client_hashing, "fingerprint_chunk_at", growing)
    with pytest.raises(client_hashing.FileChanged):
        await fingerprint_file(str(path), 1024)

    def shrinking(path_, index, *args):
        os.truncate(path_, 100)
        return real(path_, index, *args)

    monkeypatch.setattr(client_hashing, "fingerprint_chunk_at", shrinking)
    with pytest.raises(client_hashing.FileChanged):
        await fingerprint_file(str(path), 1024)


async def test_cancelling_the_fingerprint_pass_leaves_the_other_chunks_unread(tmp_path, monkeypatch):
    """Cancelled while every hashing thread is inside a chunk: those chunks finish, no other one is read."""
    path = tmp_path / "f"
    path.write_bytes(bytes(100 * 1024))
    threads = 2
    started: list[int] = []
    hashers: set[threading.Thread] = set()
    lock = threading.Lock()
    all_busy = threading.Event()  # each hashing thread has started a chunk
    gate = threading.Event()  # a started chunk waits here until the test has cancelled the pass
    real = client_hashing.fingerprint_chunk_at

    def held(path_, index, *args):
        with lock:
            started.append(index)
            hashers.add(threading.current_thread())
            if len(started) == threads:
                all_busy.set()
        gate.wait(60)
        return real(path_, index, *args)

    monkeypatch.setattr(client_hashing, "fingerprint_chunk_at", held)
    task = asyncio.ensure_future(fingerprint_file(str(path), 1024, threads=threads))
    try:
        assert await asyncio.to_thread(all_busy.wait, 60), f"the hashing threads did not start: {started}"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gate.set()
    for thread in hashers:  # they finish the chunk each has started, then end: nothing is left to hash
        await asyncio.to_thread(thread.join, 60)
        assert not thread.is_alive(), "a hashing thread outlived the cancelled pass"
    assert sorted(started) == list(range(threads))  # the chunks in flight when it was cancelled, and no other


def test_verify_chunks_checks_each_chunk_at_its_offset(tmp_path):
    data = os.urandom(25)
    path = tmp_path / "f"
    path.write_bytes(data)
    _, fps, _ = fingerprint_stream(io.BytesIO(data), 10)
    seen = []
    assert verify_chunks(str(path), 10, 25, {0: fps[0], 2: fps[2]}, seen.append) == {0, 2}
    assert seen == [10, 5]
    assert verify_chunks(str(path), 10, 25, {1: fps[0], 2: fps[2]}) == {2}  # chunk 1 is not chunk 0
    path.write_bytes(data[:22])  # a part shorter than the file: its last chunk cannot check out
    assert verify_chunks(str(path), 10, 25, {2: fps[2]}) == set()



def test_read_chunk_reads_at_offsets(tmp_path):
    data = os.urandom(1000)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_chunk(fd, 0, 1000, 300) == data[:300]
        assert read_chunk(fd, 2, 1000, 300) == data[600:900]
        assert read_chunk(fd, 3, 1000, 300) == data[900:]
    finally:
        os.close(fd)


# -- small helpers -------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("2000000", 2_000_000), ("500K", 500 * 1024), ("10M", 10 * 1024 ** 2), ("1.5MiB", 1.5 * 1024 ** 2),
    ("2g", 2 * 1024 ** 3), ("8M/s", 8 * 1024 ** 2),
])
def test_parse_rate(text, value):
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["", "fast", "-1", "0", "10X"])
def test_parse_rate_refuses_nonsense(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate(text)


def test_parse_time_takes_unix_seconds_and_iso():
    assert parse_time(1700000000) == 1700000000.0
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20+00:00") == parse_time("2023-11-14T22:13:20") == 1700000000.0
    assert parse_time(None) is None and parse_time("soon") is None and parse_time(True) is None


def test_backoff_grows_exponentially_and_is_capped():
    delays = [backoff_delay(a, base=0.5, cap=30, jitter=0) for a in range(8)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30]
    for attempt in range(10):
        assert 0 <= backoff_delay(attempt, base=0.5, cap=30, jitter=0.25) <= 37.5


async def test_rate_limiter_spreads_bytes_over_time():
    limiter = RateLimiter(1_000_000)
    started = time.monotonic()
    for _ in range(5):
        await limiter.acquire(50_000)
    assert time.monotonic() - started >= 0.19  # 250 kB at 1 MB/s, the first slot free


def test_missing_chunks_from_a_409():
    assert missing_chunks({"error": {"code": "chunks_missing", "message": "m", "missing": [1, 3]}}) == [1, 3]
    assert missing_chunks({"error": {"code": "x"}}) is None
    assert missing_chunks(None) is None


def test_safe_name_and_targets(tmp_path):
    assert safe_name("../../etc/passwd", "f") == "passwd"
    assert safe_name("a\\b\\c.txt", "f") == "c.txt"
    assert safe_name("..", "fallback") == "fallback"
    assert safe_name("", "fallback") == "fallback"
    assert resolve_target(str(tmp_path), "x.bin", "id") == str(tmp_path / "x.bin")
    assert resolve_target(str(tmp_path / "y.bin"), "x.bin", "id") == str(tmp_path / "y.bin")
    assert resolve_target(None, "../x.bin", "id") == os.path.abspath("x.bin")


@pytest.mark.parametrize("remote,local", [
    (".bashrc", "bashrc"),
    ("../../.ssh/authorized_keys", "authorized_keys"),
    ("a/.profile", "profile"),
    ("..\\..\\.bashrc", "bashrc"),
    (" .hidden.tar.gz", "hidden.tar.gz"),
    ("...", "fallback"),
    (". ", "fallback"),
    ("re\x1b[2Jport\x07.txt", "re_[2Jport_.txt"),
    ("notes.txt", "notes.txt"),
])
def test_remote_names_never_make_dotfiles_paths_or_control_characters(remote, local):
    """A name the sharer chose must not land on ~/.bashrc, outside the directory, or on the terminal raw."""
    assert safe_name(remote, "fallback") == local


def test_done_chunks_are_kept_as_ranges():
    assert to_ranges([]) == []
    assert to_ranges([7, 0, 1, 2, 5, 8]) == [[0, 2], [5, 5], [7, 8]]
    assert from_ranges([[0, 2], [5, 5], [7, 8]], 10) == {0, 1, 2, 5, 7, 8}
    assert from_ranges([[0, 99]], 3) == {0, 1, 2}  # never past the last chunk
    for malformed in (None, "0-2", [[0]], [["0", 2]], [[0, 1.5]], [[True, 2]]):
        assert from_ranges(malformed, 10) == set()


def test_partial_downloads_are_reused_only_for_the_same_content(tmp_path):
    target = str(tmp_path / "t.bin")
    data = os.urandom(100)
    _, fps, _ = fingerprint_stream(io.BytesIO(data), 8)
    meta = {"file_id": "a", "fingerprint": file_fingerprint(fps), "file_size": 100, "chunk_size": 8}
    part = PartFile.open(target, meta, fps, set())
    # A new part is the file's full size (sparse) and its sidecar lists no chunk yet.
    assert Path(part_path(target)).stat().st_size == 100
    assert read_sidecar(target) == {**meta, "chunks_done": []}
    part.store(0, [data[:8]])
    assert read_sidecar(target)["chunks_done"] == [[0, 0]]  # flushed and recorded at once, the first time
    part.store(12, [data[96:]])
    part.store(1, [data[8:12], data[12:16]])  # as received: in pieces
    assert read_sidecar(target)["chunks_done"] == [[0, 0]]  # then at most once every SYNC_EVERY seconds
    part.close()  # and on the way out, whatever happened
    assert read_sidecar(target)["chunks_done"] == [[0, 1], [12, 12]]
    assert Path(part_path(target)).read_bytes()[:16] == data[:16]
    assert claimed_chunks(target, meta, len(fps)) == {0, 1, 12}
    # Another fingerprint, or a part of another size: nothing is claimed.
    assert claimed_chunks(target, {**meta, "fingerprint": "e" * 64}, len(fps)) == set()
    os.truncate(part_path(target), 101)
    assert claimed_chunks(target, meta, len(fps)) == set()
    os.truncate(part_path(target), 100)
    # A sidecar of an older dbx (a prefix, no chunks_done): nothing is claimed, the part starts over.
    sidecar = read_sidecar(target)
    Path(sidecar_path(target)).write_text(json.dumps({**meta}))
    assert claimed_chunks(target, meta, len(fps)) == set()
    Path(sidecar_path(target)).write_text(json.dumps(sidecar))
    # Claimed chunks are checked again: one scribbled over since is dropped from the sidecar.
    with open(part_path(target), "r+b") as f:
        f.write(b"XX")
    part = PartFile.open(target, meta, fps, {0, 1, 12})
    part.close()
    assert part.missing() == [0, *range(2, 12)]
    assert read_sidecar(target)["chunks_done"] == [[1, 1], [12, 12]]


def test_a_chunk_with_the_wrong_bytes_is_not_written(tmp_path):
    from client.download import ChunkMismatch

    target = str(tmp_path / "t.bin")
    data = os.urandom(20)
    _, fps, _ = fingerprint_stream(io.BytesIO(data), 10)
    part = PartFile.open(target, {"fingerprint": file_fingerprint(fps), "file_size": 20, "chunk_size": 10}, fps, set())
    with pytest.raises(ChunkMismatch):
        part.store(1, [b"x" * 10])
    part.close()
    assert Path(part_path(target)).read_bytes() == bytes(20)
    assert read_sidecar(target)["chunks_done"] == []


# -- credentials ---------------------------------------------------------------------


def test_credentials_are_private_and_per_server(tmp_path):
    store = CredentialStore(tmp_path / "cfg" / "dbx")
    store.save(Credentials("http://a:1/", "alice", "tok-a", time.time() + 100))
    store.save(Credentials("http://b:2", "bob", "tok-b", time.time() - 1))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert store.get("http://a:1").access_token == "tok-a"
    assert not store.get("http://a:1").expired
    assert store.get("http://b:2").expired
    assert store.default_server() == "http://b:2"
    assert store.remove("http://b:2") and store.get("http://b:2") is None
    assert not store.remove("http://b:2")
    leftovers = [p.name for p in store.directory.iterdir()]
    assert leftovers == ["credentials.json"]


def test_corrupt_credentials_mean_not_logged_in(tmp_path):
    store = CredentialStore(tmp_path)
    store.path.write_text("{not json")
    assert store.get("http://x") is None
    store.save(Credentials("http://x", "u", "t"))
    assert store.get("http://x").access_token == "t"


def test_config_dir_follows_xdg():
    assert config_dir({"XDG_CONFIG_HOME": "/tmp/cfg"}) == Path("/tmp/cfg/dbx")
    assert config_dir({"XDG_CONFIG_HOME": "relative"}) == Path.home() / ".config" / "dbx"
    assert config_dir({}) == Path.home() / ".config" / "dbx"


def test_server_precedence(tmp_path):
    store = CredentialStore(tmp_path)
    assert resolve_server(None, {}, store) == "http://127.0.0.1:8080"
    store.save(Credentials("http://remembered:1", "u", "t"))
    assert resolve_server(None, {}, store) == "http://remembered:1"
    assert resolve_server(None, {"DBX_SERVER": "env:2"}, store) == "http://env:2"
    assert resolve_server("https://flag:3/", {"DBX_SERVER": "env:2"}, store) == "https://flag:3"
    assert normalize_server(" http://x:1/ ") == "http://x:1"


# -- the command line ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["upload"], ["upload", "f", "--parallel", "0"], ["nope"],
                                  ["ls", "--shared", "--all"], ["upload", "f", "--limit-rate", "fast"],
                                  ["link"], ["link", "f", "--expires", "soon"], ["link", "f", "--password",
                                  "--password-stdin"], ["links"], ["unlink"], ["unlink", "a", "b"],
                                  ["download", "f", "--retries", "-1"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == errors.EXIT_USAGE
    assert "dbx: error:" in capsys.readouterr().err


def test_common_options_go_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--json", "ls"]).json is True
    assert parser.parse_args(["ls", "--json", "--server", "x"]).server == "x"
    assert parser.parse_args(["upload", "a", "b", "-p", "8"]).parallel == 8


def test_exit_codes_are_distinct():
    codes = [errors.EXIT_UNEXPECTED, errors.EXIT_USAGE, errors.EXIT_UNREACHABLE, errors.EXIT_BAD_LOGIN,
             errors.EXIT_AUTH, errors.EXIT_NOT_FOUND, errors.EXIT_REFUSED, errors.EXIT_STORE,
             errors.EXIT_INTEGRITY, errors.EXIT_EXISTS, errors.EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes) and 0 not in codes


def test_error_mapping_of_gateway_answers():
    client = GatewayClient("http://gw")
    cases = [
        (401, {"error": {"code": "invalid_credentials", "message": "m"}}, errors.BadLogin),
        (401, {"error": {"code": "token_expired", "message": "m"}}, errors.AuthRequired),
        (401, {"error": {"code": "invalid_token", "message": "m"}}, errors.AuthRequired),
        (404, {"error": {"code": "not_found", "message": "no such file"}}, errors.NotFound),
        (404, {"error": {"code": "unknown_endpoint", "message": "no such endpoint"}}, errors.ServerError),
        (405, {"error": {"code": "method_not_allowed", "message": "m"}}, errors.ServerError),
        (400, {"error": {"code": "wrong_chunk_size", "message": "m"}}, errors.Refused),
        (409, {"error": {"code": "conflict", "message": "m"}}, errors.Refused),
        (503, {"error": {"code": "store_unavailable", "message": "m"}}, errors.ServerError),
        (502, None, errors.ServerError),
    ]
    for status, body, kind in cases:
        error = client._error("GET", "/p", status, body, "rid", "file x")
        assert type(error) is kind, (status, body, error)
        assert error.message
    expired = client._error("GET", "/p", 401, {"error": {"code": "token_expired"}}, None, None)
    assert "dbx login" in expired.message and "expired" in expired.message
    server = client._error("GET", "/p", 500, {"error": {"code": "internal_error", "message": "boom"}}, "rid9", None)
    assert "rid9" in server.message


# -- contract v1.1: sessions, passwords, links, quotas, throttling ----------------------


@pytest.mark.parametrize("text,seconds", [
    ("7d", 7 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("90s", 90), ("1w", 7 * 86400), ("1d12h", 36 * 3600),
    ("2D", 2 * 86400), (" 1h 30m ", 5400), ("3600", 3600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "soon", "0", "0d", "-1d", "7y", "1.5d", "d7", "7d!"])
def test_parse_duration_refuses_nonsense(text):
    import argparse

    if text == "7":  # a bare number is seconds: valid
        assert parse_duration(text) == 7
        return
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_new_commands_parse_their_arguments():
    parser = build_parser()
    link = parser.parse_args(["link", "f1", "--expires", "7d", "--password-stdin", "--json"])
    assert (link.command, link.file_id, link.expires, link.password_stdin, link.password, link.json) == (
        "link", "f1", 7 * 86400, True, False, True)
    plain = parser.parse_args(["link", "f1"])
    assert plain.expires is None and not plain.password and not plain.password_stdin
    assert parser.parse_args(["links", "f1"]).file_id == "f1"
    assert parser.parse_args(["unlink", "l9"]).link_id == "l9"
    assert parser.parse_args(["logout"]).local is False and parser.parse_args(["logout", "--local"]).local is True
    assert parser.parse_args(["passwd", "--password-stdin"]).password_stdin is True
    assert parser.parse_args(["download", "f1", "--force"]).force is True
    assert parser.parse_args(["download", "f1"]).force is False


def test_retry_after_is_read_as_seconds_or_a_date():
    assert retry_after_seconds("30") == 30
    assert retry_after_seconds(" 0 ") == 0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", now=1700000000) == 60
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", now=1700000000) == 0  # already past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
    assert (wait_words(1), wait_words(42), wait_words(600), wait_words(None)) == (
        "in 1 second", "in 42 seconds", "in 10 minutes", "later")


def test_error_mapping_of_the_v1_1_answers():
    client = GatewayClient("http://gw")

    def error(status, code, retry_after=None, message="m"):
        return client._error("POST", "/p", status, {"error": {"code": code, "message": message}}, "rid", "file x",
                             retry_after=retry_after)

    login = error(429, "too_many_attempts", 30)
    assert type(login) is errors.Throttled and login.exit_code == errors.EXIT_THROTTLED == 11
    assert "too many failed logins" in login.message and "in 30 seconds" in login.message
    assert login.to_json()["retry_after"] == 30 and login.to_json()["code"] == "too_many_attempts"
    uploads = error(429, "too_many_uploads", 120)
    assert type(uploads) is errors.Throttled and "uploads in progress" in uploads.message
    assert "in 2 minutes" in uploads.message and not uploads.per_file  # the next files would be refused too
    unknown = error(429, "", None, "slow down")
    assert type(unknown) is errors.Throttled and "slow down" in unknown.message and "later" in unknown.message

    quota = error(403, "quota_exceeded", message="10 GiB used of 10 GiB")
    assert type(quota) is errors.Refused and quota.exit_code == errors.EXIT_REFUSED and quota.per_file
    assert "quota" in quota.message and "10 GiB used" in quota.message and "dbx rm" in quota.message
    assert quota.code == "quota_exceeded"
    forbidden = error(403, "forbidden")
    assert type(forbidden) is errors.AuthRequired  # as before for other 403s

    revoked = error(401, "token_revoked")
    assert type(revoked) is errors.AuthRequired and revoked.exit_code == errors.EXIT_AUTH
    assert "session" in revoked.message and "ended" in revoked.message and "dbx login" in revoked.message

    link = client._error("DELETE", "/p", 404, {"error": {"code": "not_found", "message": "m"}}, None, "link l1",
                         hint="`dbx links FILE_ID` lists the links of a file you own")
    assert "link l1" in link.message and "dbx links" in link.message and "dbx ls" not in link.message


@pytest.mark.parametrize("me,line", [
    ({"used_bytes": 1536, "quota_bytes": 1024 * 1024}, "used 1.5 KiB of 1.0 MiB (0%), 1022.5 KiB free"),
    ({"used_bytes": 3 * 1024 ** 3, "quota_bytes": 4 * 1024 ** 3}, "used 3.0 GiB of 4.0 GiB (75%), 1.0 GiB free"),
    ({"used_bytes": 5 * 1024 ** 3, "quota_bytes": 4 * 1024 ** 3}, "used 5.0 GiB of 4.0 GiB (125%), 0 B free"),
    ({"used_bytes": 0, "quota_bytes": None}, "used 0 B (no quota)"),
    ({"used_bytes": 10}, "used 10 B"),
    ({"quota_bytes": 100}, None),
    ({}, None),
])
def test_quota_line(me, line):
    assert quota_line(me) == line


def test_whoami_shows_the_quota_only_when_the_gateway_sends_it():
    me = {"user_id": 1, "username": "alice", "email": "a@example.com"}
    assert whoami_lines(me, "http://gw") == ["alice <a@example.com> on http://gw"]
    assert whoami_lines({**me, "quota_bytes": None, "used_bytes": 2048}, "http://gw") == [
        "alice <a@example.com> on http://gw", "used 2.0 KiB (no quota)"]


LINKS = [
    {"link_id": "l1", "file_id": "f1", "url": "http://gw/s/abc", "expires_at": None, "has_password": False,
     "created_at": "2026-11-25T10:00:00Z", "download_count": 3},
    {"link_id": "link-22", "file_id": "f1", "url": "http://gw/s/defghi", "expires_at": "2026-12-02T10:00:00Z",
     "has_password": True, "created_at": 1795600800, "download_count": 0},
]


def test_link_table_aligns_its_columns_and_puts_the_url_last():
    lines = link_table(LINKS)
    assert lines[0].split() == ["LINK_ID", "CREATED", "EXPIRES", "PASSWORD", "DOWNLOADS", "URL"]
    assert lines[1].split() == ["l1", "2026-11-25", "10:00", "UTC", "never", "no", "3", "http://gw/s/abc"]
    assert lines[2].split() == ["link-22", "2026-11-25", "10:00", "UTC", "2026-12-02", "10:00", "UTC", "yes", "0",
                                "http://gw/s/defghi"]
    assert len({line.index(word) for line, word in zip(lines, ("URL", "http", "http"), strict=True)}) == 1  # aligned


def test_link_summary_and_times():
    assert link_summary(LINKS[0]) == "link l1 to file f1: never expires, no password"
    assert link_summary(LINKS[1]) == "link link-22 to file f1: expires 2026-12-02 10:00 UTC, with a password"
    assert show_time(1700000000) == "2023-11-14 22:13 UTC" and show_time("whenever") == "whenever"


def test_names_from_other_people_reach_the_terminal_without_control_characters():
    evil = "x\x1b]0;owned\x07\x1b[2J.txt"
    assert printable(evil) == "x?]0;owned??[2J.txt"
    row = file_row({"file_id": "f1", "file_size": 10, "status": "uploaded", "created_at": "t", "file_name": evil,
                    "uploaded_by": "bob\x1b[31m"}, owner=True)
    assert "\x1b" not in row and "\x07" not in row and row.count("\t") == 5
    assert not any("\x1b" in line for line in info_lines({"file_id": "f1", "file_name": evil, "extra": "\x1b"}))
    assert "\x1b" not in link_table([{**LINKS[0], "url": "http://gw/s/\x1b[2J"}])[1]


REVERSED = "photo\u202egnp.exe"  # U+202E RIGHT-TO-LEFT OVERRIDE: shown as "photoexe.png", an .exe


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u2066", "\u2067",
                                     "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_bidirectional_controls_reach_the_terminal_replaced_like_other_control_characters(control):
    assert printable(f"photo{control}gnp.exe") == "photo?gnp.exe"
    assert safe_name(f"photo{control}gnp.exe", "f") == "photo_gnp.exe"  # the saved file's name too
    assert printable("مرحبا.txt \u200d👩\u200d💻") == "مرحبا.txt \u200d👩\u200d💻"  # right-to-left text and emoji stay


def test_names_reach_the_terminal_in_their_real_order_in_every_listing():
    row = file_row({"file_id": "f1", "file_size": 10, "status": "uploaded", "created_at": "t", "file_name": REVERSED,
                    "uploaded_by": "bob"}, owner=True)
    assert row.endswith("\tphoto?gnp.exe")
    assert "file_name:       photo?gnp.exe" in info_lines({"file_id": "f1", "file_name": REVERSED})


async def test_dbx_upload_and_download_print_a_reversing_name_escaped(fake, tmp_path, monkeypatch, capsys):
    """What the commands print themselves (results, progress bars, notes, errors) is escaped too."""
    from client import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    CredentialStore(tmp_path / "config" / "dbx").save(Credentials(fake.url, "alice", "token"))
    source = tmp_path / f"{REVERSED}\x1b[2J"
    source.write_bytes(os.urandom(fake.chunk_size + 1))
    assert await asyncio.to_thread(main, ["upload", str(source), "--server", fake.url]) == 0
    (tmp_path / "out").mkdir()
    assert await asyncio.to_thread(main, ["download", "f1", "-o", str(tmp_path / "out"), "--server", fake.url]) == 0
    assert await asyncio.to_thread(main, ["download", "f1", "-o", str(tmp_path / "out"), "--server", fake.url]) == 10
    cli.report_error(errors.Refused(f"the gateway refused the request: {REVERSED} is not allowed"))
    out, err = capsys.readouterr()
    assert "f1\tphoto?gnp.exe?[2J\t" in out and "photo?gnp.exe?[2J" in err
    assert (tmp_path / "out" / "photo_gnp.exe_[2J").read_bytes() == source.read_bytes()
    assert "photo?gnp.exe is not allowed" in err
    assert not CONTROL.search(out.replace("\t", "").replace("\n", "")), out
    assert not CONTROL.search(err.replace("\r", "").replace("\n", "")), err


def test_passwd_reads_the_current_and_the_new_password_from_stdin(monkeypatch, tmp_path, capsys):
    """Both lines are read before anything is sent; the same password twice is refused at once."""
    from client import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    CredentialStore(tmp_path / "dbx").save(Credentials("http://127.0.0.1:9", "alice", "token"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("same\nsame\n"))
    assert main(["passwd", "--password-stdin", "--server", "http://127.0.0.1:9"]) == errors.EXIT_USAGE
    assert "the new password is the current one" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("only-one-line\n"))
    assert main(["passwd", "--password-stdin", "--server", "http://127.0.0.1:9"]) == errors.EXIT_USAGE
    assert "no new password" in capsys.readouterr().err
    ctx = cli.Context(build_parser().parse_args(["passwd", "--password-stdin"]))
    monkeypatch.setattr(sys, "stdin", io.StringIO("old pw\r\nnew pw\n"))
    assert cli.read_passwords(ctx) == ("old pw", "new pw")




def test_logout_without_the_gateway_keeps_the_token_unless_local(monkeypatch, tmp_path, capsys):
    """A token the server still takes is not forgotten when the server cannot be asked to end it."""
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    store = CredentialStore(tmp_path / "dbx")
    store.save(Credentials(closed, "alice", "token"))
    assert main(["logout", "--server", closed]) == errors.EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "token is kept" in err and "dbx logout --local" in err
    assert store.get(closed) is not None

    assert main(["logout", "--server", closed, "--local", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": True, "server": closed, "logged_out": True, "session": "kept"}
    assert store.get(closed) is None
    assert main(["logout", "--server", closed]) == 0
    assert "not logged in" in capsys.readouterr().out


def test_logout_of_an_expired_session_needs_no_gateway(monkeypatch, tmp_path, capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    store = CredentialStore(tmp_path / "dbx")
    store.save(Credentials(closed, "alice", "token", expires_at=time.time() - 10))
    assert main(["logout", "--server", closed]) == 0
    assert "had expired" in capsys.readouterr().out and store.get(closed) is None


# -- retries against a scripted fake gateway + store ---------------------------------


class FakeStack:
    """Just enough of the contract, plus a store whose answers a test scripts per chunk."""

    def __init__(self, chunk_size: int = 64 * 1024, url_ttl: int = 3600):
        self.chunk_size = chunk_size
        self.url_ttl = url_ttl
        self.files: dict[str, dict] = {}
        self.stored: dict[tuple[str, int], bytes] = {}
        self.script: dict[int, list] = {}  # chunk index -> answers for the next PUTs (status or callable)
        self.puts: list[int] = []
        self.url_requests: list[list[int]] = []
        self.creates = 0
        self.complete_script: list = []  # answers for the next /complete calls, before the real one
        self.url_version = 0
        self.on_put = None
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/dropbox/v1/config", self.config)
        app.router.add_post("/dropbox/v1/files", self.create)
        app.router.add_get("/dropbox/v1/files/{id}", self.get)
        app.router.add_post("/dropbox/v1/files/{id}/upload-urls", self.urls)
        app.router.add_post("/dropbox/v1/files/{id}/complete", self.complete)
        app.router.add_put("/store/{id}/{index}", self.put)
        app.router.add_get("/cdn/{id}", self.cdn)
        self.cdn_script: list[str] = []  # answers for the next CDN GETs: 403, 500, truncate, ignore-range, corrupt
        self.cdn_requests: list[str | None] = []  # the Range header of each
        self.cdn_ignores_range = False  # answer every GET with the whole file, as a CDN without Range support
        self.cdn_broken_starts: set[int] = set()  # Range requests starting at these offsets always fail
        self.cdn_delay = 0.0  # seconds before each answer
        self.cdn_url: str | None = None  # where download URLs point (a Gate in front of this, say); None: here
        self.on_cdn = None  # called at every CDN request
        self.cdn_active = 0
        self.cdn_peak = 0  # the most CDN requests in flight at once
        self.gets = 0
        self.app = app

    async def start(self):
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self):
        await self.runner.cleanup()

    def obj(self, file_id: str) -> dict:
        f = self.files[file_id]
        chunks = [{"index": i, "fingerprint": fp, "status": "uploaded" if (file_id, i) in self.stored else "pending"}
                  for i, fp in enumerate(f["chunks"])]
        return {"file_id": file_id, "file_name": f["file_name"], "file_size": f["file_size"],
                "fingerprint": f["fingerprint"], "status": f["status"], "chunk_size": self.chunk_size,
                "total_chunks": len(chunks), "uploaded_chunks": sum(c["status"] == "uploaded" for c in chunks),
                "chunks": chunks, "uploaded_by": "u", "created_at": "now", "file_type": "x/y",
                **({"download_url": f"{self.cdn_url or self.url}/cdn/{file_id}?v={self.gets}"}
                   if f["status"] == "uploaded" else {})}

    async def config(self, request):
        return web.json_response({"chunk_size": self.chunk_size, "max_file_size": 1 << 40,
                                  "inline_upload_limit": 0, "upload_url_ttl": self.url_ttl, "download_url_ttl": 60})

    async def create(self, request):
        body = await request.json()
        self.creates += 1
        for file_id, f in self.files.items():
            if f["fingerprint"] == body["fingerprint"] and f["file_name"] == body["file_name"]:
                return web.json_response(self.obj(file_id), status=200)
        file_id = f"f{len(self.files) + 1}"
        self.files[file_id] = {**body, "status": "uploading" if body["chunks"] else "uploaded"}
        return web.json_response(self.obj(file_id), status=201)

    async def get(self, request):
        self.gets += 1
        return web.json_response(self.obj(request.match_info["id"]))

    def content(self, file_id: str) -> bytes:
        return b"".join(self.stored[(file_id, i)] for i in range(len(self.files[file_id]["chunks"])))

    async def cdn(self, request):
        """The CDN tier: 200 for the whole file, 206 for a ``Range`` of it, or what the test scripted."""
        file_id = request.match_info["id"]
        range_header = request.headers.get("Range")
        self.cdn_requests.append(range_header)
        if self.on_cdn:
            self.on_cdn()
        data = self.content(file_id)
        answer = self.cdn_script.pop(0) if self.cdn_script else None
        if self.cdn_ignores_range and answer is None:
            answer = "ignore-range"
        start, end = 0, len(data) - 1
        ranged = range_header is not None and answer != "ignore-range"
        if ranged:
            first, _, last = range_header.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else len(data) - 1
        if start in self.cdn_broken_starts:
            answer = "500"
        self.cdn_active += 1
        self.cdn_peak = max(self.cdn_peak, self.cdn_active)
        try:
            await asyncio.sleep(self.cdn_delay)  # lets parallel requests overlap
            if answer == "403":
                return web.json_response({"error": {"code": "download_url_expired", "message": "m"}}, status=403)
            if answer == "500":
                return web.json_response({"error": {"code": "store_unavailable", "message": "m"}}, status=502)
            body = data[start:end + 1]
            if answer == "corrupt":
                body = bytes(len(body))
            response = web.StreamResponse(status=206 if ranged else 200)
            response.content_length = len(body)
            if ranged:
                response.headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            await response.prepare(request)
            if answer == "truncate":
                await response.write(body[: len(body) // 2])
                await asyncio.sleep(0.05)
                request.transport.close()  # the connection drops halfway
                return response
            await response.write(body)
            await response.write_eof()
            return response
        finally:
            self.cdn_active -= 1

    async def urls(self, request):
        file_id = request.match_info["id"]
        f = self.files[file_id]
        if f["status"] != "uploading":
            return web.json_response({"error": {"code": "not_uploading", "message": "done"}}, status=409)
        wanted = (await request.json())["chunks"]
        self.url_requests.append(wanted)
        self.url_version += 1
        urls = []
        for i in wanted:
            urls.append({
                "index": i, "method": "PUT",
                "url": f"{self.url}/store/{file_id}/{i}?v={self.url_version}",
                "headers": {"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(f["chunks"][i])).decode()},
                "expires_at": int(time.time()) + self.url_ttl,
            })
        return web.json_response({"urls": urls})

    async def put(self, request):
        file_id, index = request.match_info["id"], int(request.match_info["index"])
        data = await request.read()
        self.puts.append(index)
        if self.on_put:
            self.on_put(index)
        answers = self.script.get(index)
        if answers:
            answer = answers.pop(0)
            if callable(answer):
                return answer(request)
            code = "NoSuchUpload" if answer == 404 else ("AccessDenied" if answer == 403 else "InternalError")
            return web.Response(status=answer, text=f"<Error><Code>{code}</Code><Message>scripted</Message></Error>")
        claimed = base64.b64decode(request.headers["x-amz-checksum-sha256"])
        if hashlib.sha256(data).digest() != claimed:
            return web.Response(status=400, text="<Error><Code>BadDigest</Code></Error>")
        self.stored[(file_id, index)] = data
        return web.Response(status=200)

    async def complete(self, request):
        file_id = request.match_info["id"]
        if self.complete_script:
            answer = self.complete_script.pop(0)
            return web.json_response(answer[1], status=answer[0])
        f = self.files[file_id]
        missing = [i for i in range(len(f["chunks"])) if (file_id, i) not in self.stored]
        if missing:
            return web.json_response({"error": {"code": "chunks_missing", "message": "m", "missing": missing}},
                                     status=409)
        f["status"] = "uploaded"
        return web.json_response(self.obj(file_id))


@pytest.fixture
async def fake():
    stack = await FakeStack().start()
    yield stack
    await stack.stop()


def quick(**overrides) -> UploadOptions:
    return UploadOptions(**{"quiet": True, "backoff_base": 0.01, "backoff_max": 0.05, "retries": 3, **overrides})


def random_file(tmp_path: Path, size: int, name: str = "data.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


async def test_transient_store_failures_are_retried(fake, tmp_path):
    path = random_file(tmp_path, 5 * fake.chunk_size + 10)
    fake.script = {1: [500, 503], 4: [500]}
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(path), quick(parallel=3))
    assert result.status == "uploaded"
    assert result.chunks_sent == 6 and result.chunk_retries == 3
    assert sorted(fake.puts) == [0, 1, 1, 1, 2, 3, 4, 4, 5]
    assert b"".join(fake.stored[("f1", i)] for i in range(6)) == path.read_bytes()


async def test_a_refused_url_is_replaced_by_a_fresh_one(fake, tmp_path):
    path = random_file(tmp_path, 2 * fake.chunk_size)
    fake.script = {0: [403]}
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(path), quick(parallel=1))
    assert result.status == "uploaded"
    assert sum(0 in wanted for wanted in fake.url_requests) == 2


async def test_urls_about_to_expire_are_renewed_before_use(tmp_path):
    fake = await FakeStack(url_ttl=5).start()  # shorter than the client's safety margin
    try:
        path = random_file(tmp_path, 3 * fake.chunk_size)
        async with GatewayClient(fake.url, "token") as client:
            result = await upload_file(client, str(path), quick(parallel=1))
        assert result.status == "uploaded"
        assert [i for wanted in fake.url_requests for i in wanted].count(2) >= 2
    finally:
        await fake.stop()


async def test_a_chunk_refused_every_time_is_exit_8_naming_it(fake, tmp_path):
    path = random_file(tmp_path, 2 * fake.chunk_size)
    fake.script = {1: [500] * 10}
    config = tmp_path / "cfg"
    CredentialStore(config / "dbx").save(Credentials(fake.url, "u", "token"))
    process = await asyncio.create_subprocess_exec(
        DBX, "upload", str(path), "--retries", "2", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=this_checkout_first({**os.environ, "XDG_CONFIG_HOME": str(config), "DBX_SERVER": fake.url}),
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == errors.EXIT_STORE, err.decode()
    assert b"refused chunk 1" in err and b"HTTP 500" in err and b"dbx upload" in err
    assert b"Traceback" not in err
    assert json.loads(out)["error"]["code"] == "store_refused"
    assert fake.puts.count(1) == 3


async def test_a_lost_multipart_upload_is_announced_again(fake, tmp_path):
    path = random_file(tmp_path, 2 * fake.chunk_size)
    fake.script = {1: [404]}
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(path), quick(parallel=1))
    assert result.status == "uploaded"
    assert fake.creates == 2
    assert result.chunks_sent == 2 and result.chunks_skipped == 0


async def test_chunks_the_store_lacks_at_completion_are_sent_again(fake, tmp_path):
    path = random_file(tmp_path, 3 * fake.chunk_size)

    fake.complete_script = [(409, {"error": {"code": "chunks_missing", "message": "m", "missing": [2]}})]
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(path), quick(parallel=2))
    assert result.status == "uploaded"
    assert fake.puts.count(2) == 2 and result.chunks_sent == 3


async def test_resume_sends_only_missing_chunks(fake, tmp_path):
    path = random_file(tmp_path, 4 * fake.chunk_size)
    fake.script = {2: [500] * 10}
    async with GatewayClient(fake.url, "token") as client:
        with pytest.raises(errors.StoreRefused):
            await upload_file(client, str(path), quick(parallel=1, retries=1))
        stored_before = {i for (_, i) in fake.stored}
        fake.script = {}
        fake.puts.clear()
        result = await upload_file(client, str(path), quick(parallel=4))
    assert result.resumed and result.status == "uploaded"
    assert result.chunks_skipped == len(stored_before)
    assert sorted(fake.puts) == sorted(set(range(4)) - stored_before)
    assert result.chunks_sent == 4 - len(stored_before)


async def test_a_file_that_changes_during_upload_is_an_integrity_error(fake, tmp_path):
    path = random_file(tmp_path, 3 * fake.chunk_size)

    def scribble(index):
        with open(path, "r+b") as f:
            f.seek(2 * fake.chunk_size)
            f.write(b"changed!")

    fake.on_put = scribble
    async with GatewayClient(fake.url, "token") as client:
        with pytest.raises(errors.IntegrityError) as info:
            await upload_file(client, str(path), quick(parallel=1))
    assert "changed" in info.value.message
    assert info.value.exit_code == errors.EXIT_INTEGRITY


async def test_uploads_are_deduplicated_and_empty_files_need_no_bytes(fake, tmp_path):
    empty = random_file(tmp_path, 0, "empty")
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(empty), quick())
        assert result.status == "uploaded" and result.chunks_total == 0 and fake.puts == []
        path = random_file(tmp_path, fake.chunk_size + 1)
        await upload_file(client, str(path), quick())
        fake.puts.clear()
        again = await upload_file(client, str(path), quick())
    assert again.chunks_sent == 0 and fake.puts == []


async def test_a_fingerprint_pass_started_early_is_used_only_with_the_gateways_chunk_size(fake, tmp_path, monkeypatch):
    """`dbx upload` starts hashing before it knows the chunk size; a pass of another size is made again."""
    import client.upload as upload_module

    made = []

    class Counted(client_hashing.FingerprintPass):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.chunk_size)

    monkeypatch.setattr(upload_module, "FingerprintPass", Counted)
    path = random_file(tmp_path, 3 * fake.chunk_size + 7)
    async with GatewayClient(fake.url, "token") as client:
        wrong = client_hashing.FingerprintPass(str(path), fake.chunk_size // 2)
        result = await upload_file(client, str(path), quick(), early=wrong)
        assert made == [fake.chunk_size] and result.status == "uploaded" and result.chunks_total == 4
        assert all(chunk.cancelled() or chunk.done() for chunk in wrong._chunks)
        made.clear()
        other = random_file(tmp_path, 2 * fake.chunk_size, "other.bin")
        right = client_hashing.FingerprintPass(str(other), fake.chunk_size)
        result = await upload_file(client, str(other), quick(), early=right)
    assert made == [] and result.status == "uploaded"
    assert fake.content(result.file_id) == other.read_bytes()


def test_dbx_upload_starts_hashing_its_first_file_at_once_with_the_remembered_chunk_size(tmp_path, monkeypatch):
    from client import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    server = "http://127.0.0.1:9"
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1000))

    def started(*argv: str):
        ctx = cli.Context(build_parser().parse_args([*argv, "--server", server]))
        cli.start_fingerprint(ctx)
        if ctx.early:
            ctx.early.cancel()
        return ctx.early

    assert started("upload", str(data)) is None  # not logged in: nothing to hash for
    store = CredentialStore(tmp_path / "config" / "dbx")
    store.save(Credentials(server, "alice", "token"))
    assert started("upload", str(data)).chunk_size == 8 * 1024 * 1024  # the contract's default
    store.remember_chunk_size(server, 5 * 1024 * 1024)
    assert store.chunk_size(server) == 5 * 1024 * 1024 and store.chunk_size("http://other") is None
    early = started("upload", str(data), "more-paths")
    assert (early.path, early.chunk_size) == (str(data), 5 * 1024 * 1024)
    assert started("upload", str(tmp_path)) is None  # a directory: the upload says so
    assert started("upload", str(tmp_path / "missing")) is None
    assert started("ls") is None
    store.save(Credentials(server, "alice", "new token"))  # logging in again keeps what the server said
    assert store.chunk_size(server) == 5 * 1024 * 1024


async def test_memory_for_a_chunk_is_read_only_when_sent(fake, tmp_path, monkeypatch):
    """Never more than `parallel` chunks are held: each worker reads its chunk when it sends it."""
    import client.upload as upload_module

    held = 0
    peak = 0
    real_read = upload_module.read_chunk

    def counting_read(*args):
        nonlocal held, peak
        held += 1
        peak = max(peak, held)
        return real_read(*args)

    async def release_after_send(self, index):
        nonlocal held
        try:
            return await original_send(self, index)
        finally:
            held -= 1

    original_send = upload_module.ChunkSender.send_chunk
    monkeypatch.setattr(upload_module, "read_chunk", counting_read)
    monkeypatch.setattr(upload_module.ChunkSender, "send_chunk", release_after_send)
    path = random_file(tmp_path, 20 * fake.chunk_size)
    async with GatewayClient(fake.url, "token") as client:
        result = await upload_file(client, str(path), quick(parallel=3))
    assert result.chunks_sent == 20
    assert peak <= 3


# -- downloads against the fake CDN ---------------------------------------------------


async def uploaded_file(fake: FakeStack, client: GatewayClient, tmp_path: Path, size: int) -> tuple[Path, str]:
    path = random_file(tmp_path, size, "source.bin")
    result = await upload_file(client, str(path), quick())
    return path, result.file_id


def fast_download(**overrides) -> DownloadOptions:
    return DownloadOptions(**{"quiet": True, "backoff_base": 0.01, "backoff_max": 0.05, "retries": 3, **overrides})


def chunk_ranges(size: int, chunk_size: int) -> list[str]:
    """The Range header of each chunk, in order."""
    return [f"bytes={start}-{min(start + chunk_size, size) - 1}" for start in range(0, size, chunk_size)]


def no_partial(target: Path) -> bool:
    return not Path(part_path(str(target))).exists() and not Path(sidecar_path(str(target))).exists()


async def test_download_fetches_chunks_in_parallel_with_chunk_aligned_ranges(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 10 * fake.chunk_size + 5)
        fake.cdn_delay = 0.02
        target = tmp_path / "out.bin"
        result = await download_file(client, file_id, str(target), fast_download(parallel=4))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert sorted(fake.cdn_requests) == sorted(chunk_ranges(source.stat().st_size, fake.chunk_size))
    assert fake.cdn_peak == 4  # parallel, and never more: memory holds at most 4 chunks
    assert (result.chunks_total, result.chunks_fetched, result.chunks_reused) == (11, 11, 0)
    assert result.bytes_received == source.stat().st_size and result.resumed_from == 0
    assert result.range_requests is True
    assert no_partial(target)


@pytest.mark.parametrize("size", [0, 1])
async def test_download_of_empty_and_one_byte_files(fake, tmp_path, size):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, size)
        target = tmp_path / "out.bin"
        result = await download_file(client, file_id, str(target), fast_download())
    assert target.read_bytes() == source.read_bytes()
    assert fake.cdn_requests == chunk_ranges(size, fake.chunk_size)  # none for an empty file
    assert result.chunks_fetched == result.chunks_total == size
    assert no_partial(target)


async def test_download_refuses_to_overwrite_an_existing_file_without_force(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 2 * fake.chunk_size + 5)
        target = tmp_path / "out.bin"
        target.write_bytes(b"mine")
        with pytest.raises(errors.LocalExists) as info:
            await download_file(client, file_id, str(target), fast_download())
        assert target.read_bytes() == b"mine"
        assert fake.cdn_requests == []  # refused before a byte moved
        assert no_partial(target)
        assert "--force" in info.value.message and str(target) in info.value.message
        assert info.value.exit_code == errors.EXIT_EXISTS

        result = await download_file(client, file_id, str(target), fast_download(force=True))
    assert target.read_bytes() == source.read_bytes() and result.chunks_fetched == 3


async def test_download_does_not_overwrite_a_file_that_appears_meanwhile(fake, tmp_path):
    """The last step places the part without replacing what is there, however late it came."""
    async with GatewayClient(fake.url, "token") as client:
        _, file_id = await uploaded_file(fake, client, tmp_path, 2 * fake.chunk_size)
        target = tmp_path / "late.bin"
        fake.on_cdn = lambda: target.exists() or target.write_bytes(b"late")
        with pytest.raises(errors.LocalExists) as info:
            await download_file(client, file_id, str(target), fast_download(parallel=1))
        assert target.read_bytes() == b"late"
        assert "--force" in info.value.message
        # The verified bytes are kept: the rerun that may overwrite fetches nothing again.
        fake.on_cdn = None
        fake.cdn_requests.clear()
        result = await download_file(client, file_id, str(target), fast_download(force=True))
    assert result.chunks_fetched == 0 and result.chunks_reused == 2 and fake.cdn_requests == []
    assert no_partial(target) and target.stat().st_size == 2 * fake.chunk_size


async def test_download_refreshes_a_refused_url(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 2 * fake.chunk_size + 5)
        fake.cdn_script = ["403"]
        gets_before = fake.gets
        result = await download_file(client, file_id, str(tmp_path / "out.bin"), fast_download())
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()
    assert fake.gets - gets_before == 2  # the file object again, for a fresh URL
    assert result.chunks_fetched == 3


async def test_a_url_refused_even_when_fresh_is_exit_8(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        _, file_id = await uploaded_file(fake, client, tmp_path, fake.chunk_size)
        fake.cdn_script = ["403"] * 10
        with pytest.raises(errors.StoreRefused) as info:
            await download_file(client, file_id, str(tmp_path / "out.bin"), fast_download())
    assert info.value.exit_code == errors.EXIT_STORE and "even when fresh" in info.value.message
    assert not (tmp_path / "out.bin").exists()


async def test_download_fetches_a_dropped_chunk_again(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 3 * fake.chunk_size + 5)
        fake.cdn_script = ["truncate"]
        result = await download_file(client, file_id, str(tmp_path / "out.bin"), fast_download(parallel=1))
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()
    ranges = chunk_ranges(source.stat().st_size, fake.chunk_size)
    assert fake.cdn_requests == [ranges[0], *ranges]  # chunk 0 broke halfway: asked for again, whole
    assert result.bytes_received == source.stat().st_size and result.chunks_fetched == 4


async def test_download_falls_back_to_one_stream_when_the_cdn_ignores_range(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 3 * fake.chunk_size + 7)
        data = source.read_bytes()
        target = str(tmp_path / "out.bin")
        obj = await client.get_file(file_id)
        fps = [c["fingerprint"] for c in obj["chunks"]]
        meta = {"file_id": file_id, "fingerprint": obj["fingerprint"], "file_size": obj["file_size"],
                "chunk_size": fake.chunk_size}
        part = PartFile.open(target, meta, fps, set())  # an earlier run verified chunk 1
        part.store(1, [data[fake.chunk_size:2 * fake.chunk_size]])
        part.close()
        fake.cdn_ignores_range = True
        result = await download_file(client, file_id, target, fast_download())
    assert Path(target).read_bytes() == data
    assert result.range_requests is False
    assert (result.chunks_reused, result.chunks_fetched) == (1, 3)
    assert result.resumed_from == fake.chunk_size and result.bytes_received == len(data) - fake.chunk_size
    assert fake.cdn_requests[0] is not None and fake.cdn_requests[-1] is None  # a Range, then the whole file
    assert no_partial(Path(target))


async def test_a_corrupted_chunk_is_refused_and_nothing_is_written(fake, tmp_path):
    target = tmp_path / "out.bin"
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 6 * fake.chunk_size + 3)
        fake.cdn_script = ["corrupt"]  # the first chunk asked for comes back as zeros
        with pytest.raises(errors.IntegrityError) as info:
            await download_file(client, file_id, str(target), fast_download())
        assert info.value.exit_code == errors.EXIT_INTEGRITY
        assert info.value.code == "fingerprint_mismatch"
        assert "does not match its fingerprint" in info.value.message and "nothing was written" in info.value.message
        assert not target.exists()
        # Only chunks that checked out are recorded, and their bytes are on disk.
        obj = await client.get_file(file_id)
        recorded = from_ranges(read_sidecar(str(target))["chunks_done"], 7)
        bad = int(fake.cdn_requests[0].removeprefix("bytes=").split("-")[0]) // fake.chunk_size
        assert bad not in recorded
        expected = {i: obj["chunks"][i]["fingerprint"] for i in recorded}
        assert verify_chunks(part_path(str(target)), fake.chunk_size, obj["file_size"], expected) == recorded
        # The next run fetches the rest.
        fake.cdn_requests.clear()
        result = await download_file(client, file_id, str(target), fast_download())
    assert target.read_bytes() == source.read_bytes()
    assert result.chunks_reused == len(recorded) and result.chunks_fetched == 7 - len(recorded)
    assert len(fake.cdn_requests) == 7 - len(recorded)


async def test_an_interrupted_download_resumes_with_only_the_missing_chunks(fake, tmp_path):
    """Ctrl-C (the task is cancelled): chunks written so far are recorded; the next run fetches the others."""
    target = tmp_path / "out.bin"
    let_through = 5
    gate = await Gate(fake.url, methods=("GET",)).start()  # in front of the CDN: its GETs are the chunks'
    fake.cdn_url = gate.url
    try:
        async with GatewayClient(fake.url, "token") as client:
            source, file_id = await uploaded_file(fake, client, tmp_path, 12 * fake.chunk_size + 1)
            ranges = chunk_ranges(source.stat().st_size, fake.chunk_size)
            gate.hold_after(let_through)
            task = asyncio.ensure_future(download_file(client, file_id, str(target), fast_download(parallel=2)))
            # Both workers wait at the gate, so each is done with the chunks it fetched before.
            await gate.holding(2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            kept = from_ranges((read_sidecar(str(target)) or {}).get("chunks_done"), 13)
            assert sorted(fake.cdn_requests) == sorted(ranges[i] for i in kept) and len(kept) == let_through
            assert not target.exists()
            gate.release()
            fake.cdn_requests.clear()
            result = await download_file(client, file_id, str(target), fast_download())
    finally:
        await gate.stop()
    assert target.read_bytes() == source.read_bytes()
    assert (result.chunks_reused, result.chunks_fetched) == (let_through, 13 - let_through)
    assert sorted(fake.cdn_requests) == sorted(ranges[i] for i in range(13) if i not in kept)
    assert result.resumed_from == sum(min(fake.chunk_size, source.stat().st_size - i * fake.chunk_size) for i in kept)


async def test_a_chunk_that_keeps_failing_stops_the_download_and_keeps_the_rest(fake, tmp_path):
    target = tmp_path / "out.bin"
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 4 * fake.chunk_size)
        fake.cdn_broken_starts = {2 * fake.chunk_size}
        with pytest.raises(errors.ServerError) as info:
            await download_file(client, file_id, str(target), fast_download(parallel=1, retries=2))
        message = info.value.message
        assert "chunk 2" in message and "HTTP 502" in message and "dbx download" in message
        assert "2 of 4 chunks are kept" in message
        assert fake.cdn_requests.count(chunk_ranges(4 * fake.chunk_size, fake.chunk_size)[2]) == 3
        fake.cdn_broken_starts = set()
        fake.cdn_requests.clear()
        result = await download_file(client, file_id, str(target), fast_download())
    assert target.read_bytes() == source.read_bytes()
    assert (result.chunks_reused, result.chunks_fetched) == (2, 2)
    assert sorted(fake.cdn_requests) == chunk_ranges(4 * fake.chunk_size, fake.chunk_size)[2:]


async def test_a_stale_part_that_no_longer_checks_out_is_fetched_again(fake, tmp_path):
    target = tmp_path / "out.bin"
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, 3 * fake.chunk_size)
        obj = await client.get_file(file_id)
        # The right sidecar, claiming every chunk; the wrong bytes: the check on resume tells.
        Path(part_path(str(target))).write_bytes(os.urandom(3 * fake.chunk_size))
        Path(sidecar_path(str(target))).write_text(json.dumps({
            "file_id": file_id, "fingerprint": obj["fingerprint"], "file_size": obj["file_size"],
            "chunk_size": fake.chunk_size, "chunks_done": [[0, 2]],
        }))
        result = await download_file(client, file_id, str(target), fast_download())
    assert target.read_bytes() == source.read_bytes()
    assert (result.chunks_reused, result.chunks_fetched) == (0, 3)


async def test_chunks_that_do_not_make_up_the_fingerprint_are_refused(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        _, file_id = await uploaded_file(fake, client, tmp_path, 2 * fake.chunk_size)
        fake.files[file_id]["chunks"][1] = "0" * 64
        with pytest.raises(errors.ServerError) as info:
            await download_file(client, file_id, str(tmp_path / "out.bin"), fast_download())
    assert info.value.code == "inconsistent_file"
    assert fake.cdn_requests == [] and no_partial(tmp_path / "out.bin")


# -- what dbx writes beside the target: never through a link ------------------------------


async def planted_part(fake: FakeStack, client: GatewayClient, tmp_path: Path, planted: str) -> tuple[Path, str, Path, Path]:
    """A download an earlier run began (chunk 0 of 3 verified and recorded), then ``out.bin<planted>``
    made a link to a victim file of the same size as the shared one.

    Unguarded, dbx writes the chunks it fetches through a ``.part`` link (the victim's bytes fail the
    claimed chunk 0, so the part starts over, in place) and its sidecar through a ``.part.json.tmp`` one.
    """
    source, file_id = await uploaded_file(fake, client, tmp_path, 3 * fake.chunk_size)
    obj = await client.get_file(file_id)
    target = tmp_path / "out.bin"
    meta = {"file_id": file_id, "fingerprint": obj["fingerprint"], "file_size": obj["file_size"],
            "chunk_size": fake.chunk_size}
    part = PartFile.open(str(target), meta, [c["fingerprint"] for c in obj["chunks"]], set())
    part.store(0, [source.read_bytes()[:fake.chunk_size]])
    part.close()
    victim = tmp_path / "victim"
    victim.write_bytes(b"v" * obj["file_size"])
    link = tmp_path / f"out.bin{planted}"
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    return source, file_id, target, victim


@pytest.mark.parametrize("planted", [".part", ".part.json", ".part.json.tmp"])
async def test_download_never_writes_through_a_planted_link(fake, tmp_path, planted):
    """A link where dbx keeps its partial download is refused, naming it; the file it points to is left alone."""
    link = tmp_path / f"out.bin{planted}"
    async with GatewayClient(fake.url, "token") as client:
        source, file_id, target, victim = await planted_part(fake, client, tmp_path, planted)
        with pytest.raises(errors.LocalExists) as info:
            await download_file(client, file_id, str(target), fast_download())
        assert victim.read_bytes() == b"v" * 3 * fake.chunk_size
        assert link.is_symlink() and not target.exists() and fake.cdn_requests == []
        message = info.value.message
        assert f"{link} is a symbolic link to {victim}" in message and "--force" in message
        assert info.value.exit_code == errors.EXIT_EXISTS and info.value.code == "not_a_partial_download"
        # --force removes the link itself, never what it points to; the earlier run's chunk is kept
        # only while its part and sidecar are still there.
        result = await download_file(client, file_id, str(target), fast_download(force=True))
    assert victim.read_bytes() == b"v" * 3 * fake.chunk_size
    assert target.read_bytes() == source.read_bytes() and not target.is_symlink()
    assert result.chunks_reused == (1 if planted == ".part.json.tmp" else 0)
    assert no_partial(target) and not link.is_symlink()


async def test_download_refuses_a_directory_or_a_file_with_other_names_where_its_part_goes(fake, tmp_path):
    async with GatewayClient(fake.url, "token") as client:
        source, file_id = await uploaded_file(fake, client, tmp_path, fake.chunk_size)
        target = tmp_path / "out.bin"
        Path(part_path(str(target))).mkdir()
        for force in (False, True):  # a directory is never removed
            with pytest.raises(errors.LocalExists) as info:
                await download_file(client, file_id, str(target), fast_download(force=force))
            assert f"{part_path(str(target))} is a directory" in info.value.message
        Path(part_path(str(target))).rmdir()
        victim = tmp_path / "victim"
        victim.write_bytes(b"v" * fake.chunk_size)
        os.link(victim, part_path(str(target)))  # a hard link: writing into it writes into the victim
        with pytest.raises(errors.LocalExists) as info:
            await download_file(client, file_id, str(target), fast_download())
        assert "has 1 other hard link" in info.value.message
        await download_file(client, file_id, str(target), fast_download(force=True))
    assert victim.read_bytes() == b"v" * fake.chunk_size and target.read_bytes() == source.read_bytes()


async def test_a_part_replaced_by_a_link_during_the_download_is_not_placed(fake, tmp_path):
    """The part's name must still lead to the file dbx wrote when it is moved onto the target."""
    async with GatewayClient(fake.url, "token") as client:
        _, file_id = await uploaded_file(fake, client, tmp_path, 2 * fake.chunk_size)
        target = tmp_path / "out.bin"
        victim = tmp_path / "victim"
        victim.write_bytes(b"victim")

        def swap() -> None:
            if not os.path.islink(part_path(str(target))):
                os.unlink(part_path(str(target)))
                os.symlink(victim, part_path(str(target)))

        fake.on_cdn = swap
        for force in (False, True):
            with pytest.raises(errors.LocalExists) as info:
                await download_file(client, file_id, str(target), fast_download(force=force))
            assert f"{part_path(str(target))} was replaced while dbx downloaded into it" in info.value.message
            assert f"a symbolic link to {victim}" in info.value.message
            assert not os.path.lexists(target) and victim.read_bytes() == b"victim"
            os.unlink(part_path(str(target)))


def test_a_part_file_is_opened_without_following_links(tmp_path):
    """The last guard, should a link appear after the checks: the part is opened with O_NOFOLLOW."""
    target = str(tmp_path / "t.bin")
    data = os.urandom(20)
    _, fps, _ = fingerprint_stream(io.BytesIO(data), 10)
    meta = {"fingerprint": file_fingerprint(fps), "file_size": 20, "chunk_size": 10}
    victim = tmp_path / "victim"
    victim.write_bytes(bytes(20))
    os.symlink(victim, part_path(target))
    with pytest.raises(errors.LocalExists, match="symbolic link"):
        PartFile.open(target, meta, fps, {0})
    assert victim.read_bytes() == bytes(20)


# -- the client stands alone --------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SERVER_PACKAGES = ("gateway", "storage", "cdn", "deploy", "bench")
IMPORT_ALL_OF_THE_CLIENT = """
import importlib.abc, json, sys
SERVER = {server!r}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER:
            raise ImportError(f"the client imported {{name}}")

sys.meta_path.insert(0, Refuse())
import client.cli, client.upload, client.download, client.__init__, client.sync.apply, client.sync.command
try:
    client.cli.main(["--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def distribution_closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need, theirs, and so on (extras left out), lowercase."""
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # for another platform (colorama: Windows); not installed, so not what was imported
        for requirement in requirements:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))
    return seen


def standalone_project() -> dict:
    import tomllib

    return tomllib.loads((REPO / "client" / "standalone" / "pyproject.toml").read_text())


def test_the_client_runs_with_the_server_packages_absent_and_needs_only_its_declared_dependencies():
    """Issue 16: dbx installs and runs without gateway/ or storage/ (importing them here fails on purpose)."""
    import subprocess
    from importlib import metadata

    result = subprocess.run([sys.executable, "-c", IMPORT_ALL_OF_THE_CLIENT.format(server=SERVER_PACKAGES)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert not loaded & set(SERVER_PACKAGES)
    declared = [re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in standalone_project()["project"]["dependencies"]]
    allowed = distribution_closure(declared)
    providers = metadata.packages_distributions()
    ours = {path.name for path in REPO.iterdir() if (path / "__init__.py").exists()}
    assert loaded & ours == {"client", "protocol"}
    # Modules no distribution provides are the interpreter's (cython_runtime, the editable install's finder);
    # setuptools' distutils shim is loaded by site, before any import of ours.
    third_party = {module for module in loaded - set(sys.stdlib_module_names) - ours - {"_distutils_hack"}
                   if module in providers}
    undeclared = {module: providers[module] for module in third_party
                  if not {d.lower().replace("_", "-") for d in providers[module]} & allowed}
    assert not undeclared, f"imported by the client but not among its dependencies: {undeclared}"


def test_the_standalone_client_package_is_the_client_and_protocol_with_the_same_command():
    """client/standalone/pyproject.toml builds `dbx-client`: pip install client/standalone."""
    import configparser

    project = standalone_project()
    where = project["tool"]["setuptools"]["package-dir"]
    base = REPO / "client" / "standalone"
    # Every package of the client (a folder with __init__.py), each where the project has it: a
    # subpackage left out (client/sync once was) installs a dbx whose every command fails to import.
    packages = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "client").rglob("__init__.py")}
    assert sorted(project["tool"]["setuptools"]["packages"]) == sorted(packages | {"protocol"})
    for package in packages | {"protocol"}:
        assert (base / where[package]).resolve() == REPO.joinpath(*package.split("."))
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert f"dbx = {project['project']['scripts']['dbx']}" in setup["options.entry_points"]["console_scripts"]
    server_requirements = setup["options"]["install_requires"].split()
    for requirement in project["project"]["dependencies"]:
        assert requirement in server_requirements  # the same lower bounds as the whole project's
