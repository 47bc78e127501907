"""A full disk: logging never fails a request, a write answers the contract's 503, /readyz names the disk.

No disk is filled: the log goes to a stream whose writes fail as on a full disk
(ENOSPC), and SQLite is held to the pages it has (``PRAGMA max_page_count``),
which answers SQLITE_FULL ("database or disk is full"), as a full disk does.
"""
from __future__ import annotations

import errno
import io
import logging
import secrets

import pytest
import structlog
from sqlalchemy import event

from gateway.logs import LOG_WRITES, configure_logging
from protocol.fingerprints import file_fingerprint
from tests.app_fixtures import app_gateway as gateway, make_app  # noqa: F401 - the gateway in-process
from tests.harness import Api

FILES = "/dropbox/v1/files"


class FullDisk(io.TextIOBase):
    """A log stream on a full disk: every write fails."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def log_on_a_full_disk():
    """The gateway's logging set up as `python -m gateway` does, to a full disk; restored afterwards."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("info", FullDisk())
    yield
    structlog.configure(**saved)
    root.handlers[:], root.level = handlers, level
    LOG_WRITES.wrote()  # what the tests after this one log goes to a disk with room


def assert_disk_full(answer) -> None:
    assert answer.status == 503, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body["error"]["code"] == "disk_full"


async def test_a_full_disk_under_the_log_fails_no_request(log_on_a_full_disk, gateway, http):  # noqa: F811
    api = Api(http, gateway.url)
    dropped = LOG_WRITES.dropped
    health = await api.get("/healthz")
    assert health.status == 200 and health.body == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status == 503 and ready.body["error"]["failing"] == ["disk"], ready.body
    assert "No space left" in ready.body["checks"]["disk"]
    assert ready.body["checks"]["database"] == "ok"
    user = await api.signup()  # the database has room: writes work, only their log lines are lost
    assert (await user.get("/dropbox/v1/users/me")).status == 200
    assert (await api.get("/nowhere")).body["error"]["code"] == "unknown_endpoint"
    assert LOG_WRITES.dropped > dropped
    metrics = gateway.core.metrics.registry
    assert metrics.get_sample_value("gateway_log_lines_dropped_total") == LOG_WRITES.dropped


def claim_of_many_chunks(chunk_size: int, chunks: int = 200) -> dict:
    """An upload's claim whose chunk rows need new database pages (some 20 KiB of them)."""
    fingerprints = [secrets.token_hex(32) for _ in range(chunks)]
    return {"file_name": "big.bin", "file_size": chunks * chunk_size, "chunk_size": chunk_size,
            "fingerprint": file_fingerprint(fingerprints), "chunks": fingerprints}


async def test_a_full_database_disk_answers_503_where_a_write_is_needed(gateway, http):  # noqa: F811
    api = Api(http, gateway.url)
    user = await api.signup()
    db = gateway.core.db
    pages = await db.fetchval("PRAGMA page_count")

    def no_more_pages(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(db.engine.sync_engine, "connect", no_more_pages)
    await db.engine.dispose()  # every connection from now on is held to the pages there are
    try:
        assert_disk_full(await user.post(FILES, json=claim_of_many_chunks(gateway.config.chunk_size)))
        ready = await api.get("/readyz")
        assert ready.status == 503 and ready.body["error"]["failing"] == ["disk"], ready.body
        assert "full" in ready.body["checks"]["disk"]
        assert (await user.get(FILES)).status == 200, "reading still works"
        assert (await user.get("/dropbox/v1/users/me")).status == 200
    finally:
        event.remove(db.engine.sync_engine, "connect", no_more_pages)
        await db.engine.dispose()

    # Room again: the next write works, and the disk is no longer named.
    started = await user.post(FILES, json=claim_of_many_chunks(gateway.config.chunk_size))
    assert started.status == 201, started.body
    assert (await api.get("/readyz")).status == 200
