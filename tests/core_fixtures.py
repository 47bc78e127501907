"""The domain core on its own: a real database, the in-memory store, a clock the test moves.

No HTTP and no store process: these tests run the core's rules in milliseconds,
beside the end-to-end tests that run the same rules against the real store.
The database is a SQLite file; a module marked ``every_engine`` runs on
PostgreSQL as well (tests/conftest.py), which is where the core's transactions
and queries are tested on both engines.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC

import pytest

from gateway.cache import make_cache
from gateway.config import Config
from gateway.core import Core, build_core
from gateway.core.content import content_key
from gateway.core.uploads import UploadClaim
from gateway.db import Database
from gateway.db import database_url as sqlalchemy_url
from gateway.db import files as files_db
from protocol.fingerprints import file_fingerprint
from storage.memory import InMemoryObjectStore

CHUNK = 5 * 1024 * 1024


@dataclass
class FakeClock:
    """Time that moves only when a test says so."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Delays:
    """A sleep that ends when the test says (a pacer's delay): ``end()`` ends every one begun so far,
    as the passing of one delay's time would; ``until_begun(n)`` waits for the ``n``th to begin."""

    def __init__(self) -> None:
        self.begun = 0
        self._ended = asyncio.Event()
        self._changed = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        ended = self._ended
        async with self._changed:
            self.begun += 1
            self._changed.notify_all()
        await ended.wait()

    def end(self) -> None:
        self._ended.set()
        self._ended = asyncio.Event()

    async def until_begun(self, n: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.begun >= n), timeout=60)


def core_config(**overrides) -> Config:
    values = dict(
        s3_secret_key="memory", jwt_secret="core-test-jwt-secret-" + "x" * 32, events_token="events",
        cdn_secret="cdn", s3_bucket="memory", chunk_size=CHUNK, reconcile_grace=30, abandon_after=3600,
    )
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_store() -> InMemoryObjectStore:
    return InMemoryObjectStore(bucket="memory")


@pytest.fixture
async def core_database(database_url, database_path) -> Database:
    """The test's metadata database, migrated: SQLite, or PostgreSQL where the test runs on it."""
    db = await Database.open(sqlalchemy_url(database_url, str(database_path)))
    yield db
    await db.close()


@pytest.fixture
async def core(core_database, memory_store, clock) -> Core:
    config = core_config()
    cache = make_cache(config)
    yield build_core(config, core_database, memory_store, cache, clock)
    await cache.close()


async def new_user(core: Core, name: str) -> int:
    return (await core.accounts.sign_up(name, f"{name}@example.com", "correct horse battery"))["user_id"]


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def claim_for(data: bytes, name: str = "file.bin") -> UploadClaim:
    fps = [hashlib.sha256(chunk).hexdigest() for chunk in chunks_of(data)]
    return UploadClaim(name, len(data), "application/octet-stream", file_fingerprint(fps), CHUNK, fps)


async def send_chunks(core: Core, store: InMemoryObjectStore, user_id: int, file_id: str, data: bytes,
                      indexes: list[int] | None = None) -> list[int]:
    """What a client does with upload-urls: PUT each chunk to its presigned URL; the store's statuses."""
    pieces = chunks_of(data)
    urls = await core.uploads.upload_urls(user_id, file_id, indexes)
    return [store.send_presigned(p.method, p.url, p.headers, pieces[index]) for index, p in urls]


async def uploaded(core: Core, store: InMemoryObjectStore, user_id: int, data: bytes, name: str = "file.bin") -> str:
    """A file of ``user_id`` with ``data``, uploaded through the whole flow; its id."""
    file_id, _ = await core.uploads.start(user_id, claim_for(data, name))
    if (await files_db.get_file(core.db, file_id))["status"] == "uploading":
        await send_chunks(core, store, user_id, file_id, data)
        await core.uploads.finish(user_id, file_id)
    return file_id


def stored(store: InMemoryObjectStore, fingerprint: str) -> bytes | None:
    return store.read_object(content_key(fingerprint))


@contextlib.asynccontextmanager
async def cores_on_one_database(count: int, database_url: str, database_path, store, clock) -> AsyncIterator[list[Core]]:
    """``count`` cores on one database, each with its own connection pool and cache (as many gateway processes)."""
    opened, caches = [], []
    for _ in range(count):
        db = await Database.open(sqlalchemy_url(database_url, str(database_path)))
        config = core_config()
        caches.append(make_cache(config))
        opened.append((db, build_core(config, db, store, caches[-1], clock)))
    try:
        yield [core for _, core in opened]
    finally:
        for (db, _), cache in zip(opened, caches, strict=True):
            await cache.close()
            await db.close()
