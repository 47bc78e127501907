"""Thumbnails of images and of PDFs' first pages: made in the background, once per content.

The transaction that makes a file ``uploaded`` (gateway/core/uploads.py) also queues its content
(:meth:`Thumbnails.want`) when the file is an image or a PDF by its type or name: a row per
fingerprint in the ``thumbnails`` table, so a content shared by many files (deduplication, copies,
other users' uploads of the same bytes) is queued and made once. Nothing of this runs on a request.

A worker in every gateway (gateway/http/app.py's ``thumbnails_ctx``) claims queued rows under a
lease (gateway/db/thumbnails.py: one UPDATE, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers
of several gateways never claim the same content), reads the content from the store, has it
decoded in a child process with limits (gateway/thumbnailer.py says why a process), writes the
WebP under ``thumbnails/<fingerprint>`` in the store and marks the row ``made``. A PDF also gets its
first page at a size to read (``PAGE_EDGE``), under ``thumbnails/<fingerprint>-page``, made by a second
child before the row is ``made``: the preview shows it, as PDF viewers (and PDF.js) are too large a
surface to open anyone's file with in the app's origin, and the CDN tier serves nothing inline that
may script. Both or neither: a first page that cannot be made leaves the content without either.
A content it cannot read (not an image, a decompression bomb, truncated, larger than
``thumbnail_max_source_bytes``, a decoder that crashed or ran out of time or memory) is marked
``none``: it gets no thumbnail and is never tried again. A store failure gives the claim back, to
be tried again later (``RETRY_SECONDS`` times the attempts, ``MAX_ATTEMPTS`` in all). A worker that
dies holding a claim delays that content by ``LEASE_SECONDS``.

The content's removal (gateway/core/deletion.py) forgets the row and deletes the thumbnail under
the content lock; a worker finishing after that finds its claim gone, under the same lock, and
deletes what it wrote (unless the content was queued and made again meanwhile).

Thumbnails are served like downloads, by the CDN tier with signed URLs
(gateway/core/downloads.py's ``thumbnail_url``), to whoever may read a file of that content: the
API puts ``thumbnail_url`` in the file objects it gives (gateway/http/views.py), and ``page_url`` in
those of PDFs.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import thumbnailer
from gateway.config import Config
from gateway.core.clock import Clock, stamp_in, stamp_now
from gateway.core.content import content_key, page_key, thumbnail_key
from gateway.core.downloads import thumbnail_url
from gateway.core.metrics import Metrics
from gateway.db import Database
from gateway.db import thumbnails as thumbnails_db
from gateway.db.thumbnails import MADE, NONE, QUEUED, Job
from protocol.fingerprints import chunk_fingerprint, hex_to_b64
from storage import ObjectStore, StoreError

log = structlog.get_logger("gateway.thumbnails")

# Which files are queued: by media type, or by name when the type says nothing (a browser gives
# HEIC files no type). The child decides by the bytes themselves what it reads.
THUMBNAIL_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif",
                             "application/pdf"})
THUMBNAIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".pdf")
PDF_TYPE, PDF_EXTENSION = "application/pdf", ".pdf"
BATCH = 4  # rows one claim takes: a worker holds no more than it makes in a few seconds
LEASE_SECONDS = 300  # longer than the slowest job: a read, a child's timeout, a write
RETRY_SECONDS = 30
MAX_ATTEMPTS = 5
THUMBNAILER = Path(thumbnailer.__file__)


@dataclass(frozen=True)
class Decoded:
    """What the child made: the thumbnail's bytes, or None and why not."""

    data: bytes | None
    reason: str | None = None


Decoder = Callable[[bytes], Awaitable[Decoded]]


def essence_of(file_type: str | None) -> str:
    return (file_type or "").split(";", 1)[0].strip().lower()


def wants_thumbnail(file_type: str | None, file_name: str) -> bool:
    return essence_of(file_type) in THUMBNAIL_TYPES or file_name.lower().endswith(THUMBNAIL_EXTENSIONS)


def is_pdf_file(file_type: str | None, file_name: str) -> bool:
    """A PDF by its type or name: its file object gets ``page_url`` once its thumbnail is made (the worker
    makes the page of every content whose bytes are a PDF's, so a file named .pdf that is an image has none)."""
    return essence_of(file_type) == PDF_TYPE or file_name.lower().endswith(PDF_EXTENSION)


async def decode_in_child(data: bytes, *, seconds: float, memory_bytes: int, edge: int = thumbnailer.EDGE) -> Decoded:
    """Run gateway/thumbnailer.py on ``data`` in a process of its own, limited, and killed after ``seconds``;
    the picture's longer side ``edge`` pixels.

    ``-I`` (isolated) and an empty environment: the child sees none of the gateway's settings or
    secrets and imports only the standard library and the decoders from the interpreter's own
    site-packages. Its CPU limit is the wall-clock timeout, rounded up.
    """
    cpu_seconds = max(1, int(seconds + 0.999))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", str(THUMBNAILER), str(memory_bytes), str(cpu_seconds), str(edge),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={}, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(data), seconds)
    except TimeoutError:
        return Decoded(None, f"the decoder took more than {seconds:g} s")
    finally:
        if process.returncode is None:  # timed out, or this task was cancelled (the gateway stopping)
            process.kill()
            await process.wait()
    if process.returncode == 0 and out:
        return Decoded(out)
    return Decoded(None, child_failure(process.returncode, err))


def child_failure(returncode: int | None, err: bytes) -> str:
    """Why the child made nothing, in one line: its own words, or the signal that ended it."""
    said = err.decode("utf-8", "replace").strip().splitlines()
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return f"the decoder was ended by {name}"
    return (said[-1] if said else f"the decoder exited with {returncode}")[:300]


class Thumbnails:
    def __init__(self, config: Config, db: Database, store: ObjectStore, clock: Clock,
                 decode: Decoder | None = None, metrics: Metrics | None = None, decode_page: Decoder | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.db = db
        self.store = store
        self.clock = clock
        self.decode = decode or self._decode_in_child
        self.decode_page = decode_page or self._decode_page_in_child
        self._wake = asyncio.Event()
        self._finished = asyncio.Condition()  # notified as this process's worker finishes a content

    # --- queueing, in the upload's transaction ------------------------------------------------------

    async def want(self, conn: AsyncConnection, fingerprint: str, size: int, file_type: str, file_name: str) -> bool:
        """Queue the content of a file that just became ``uploaded``, if it is an image or a PDF; whether it did."""
        if not self.config.thumbnails or not wants_thumbnail(file_type, file_name):
            return False
        await thumbnails_db.want(conn, fingerprint, size, stamp_now(self.clock))
        return True

    def nudge(self) -> None:
        """After the commit that queued something: this process's worker looks now, not at its next round."""
        self._wake.set()

    async def wait_for_work(self, seconds: float) -> None:
        """Until :meth:`nudge` or ``seconds`` (other gateways' uploads are found then)."""
        try:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a cancel that comes as the
            # wake-up does, and the worker's stop then waits for ever (gateway/http/app.py's every()).
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    # --- the worker ---------------------------------------------------------------------------------

    async def run_once(self) -> dict[str, int]:
        """Claim a batch of queued contents and make each; how many were made, got none, or wait for a retry."""
        counts = {MADE: 0, NONE: 0, "retry": 0, "lost": 0}
        token = secrets.token_hex(12)
        jobs = await thumbnails_db.claim(self.db, token, stamp_now(self.clock), stamp_in(self.clock, LEASE_SECONDS),
                                         BATCH)
        for job in jobs:
            counts[await self.make(job)] += 1
        if jobs:
            log.info("thumbnails", **counts)
            self.metrics.thumbnails_done(counts)
        return counts

    async def drain(self) -> int:
        """Rounds until a claim finds nothing due; how many contents were claimed."""
        claimed = 0
        while done := sum((await self.run_once()).values()):
            claimed += done
        return claimed

    async def make(self, job: Job) -> str:
        """One claimed content: ``made``, ``none``, ``retry`` (the store failed) or ``lost`` (the claim was)."""
        fingerprint = job["fingerprint"]
        if job["source_size"] > self.config.thumbnail_max_source_bytes:
            return await self._finish(job, NONE, f"larger than {self.config.thumbnail_max_source_bytes} bytes")
        try:
            data = await self.store.get_object(content_key(fingerprint))
        except StoreError as exc:
            return await self._retry(job, exc)
        if data is None:
            return await self._finish(job, NONE, "the store does not hold the content")
        decoded = await self.decode(data)
        if decoded.data is None:
            return await self._finish(job, NONE, decoded.reason)
        made = {thumbnail_key(fingerprint): decoded.data}
        if thumbnailer.is_pdf(data):
            page = await self.decode_page(data)
            if page.data is None:
                return await self._finish(job, NONE, f"the first page at {thumbnailer.PAGE_EDGE} pixels: {page.reason}")
            made[page_key(fingerprint)] = page.data
        try:
            for key, picture in made.items():
                await self.store.put_object(key, picture, hex_to_b64(chunk_fingerprint(picture)))
        except StoreError as exc:
            return await self._retry(job, exc)
        return await self._finish(job, MADE)

    async def _finish(self, job: Job, state: str, reason: str | None = None) -> str:
        try:
            return await self._finish_locked(job, state, reason)
        finally:
            async with self._finished:
                self._finished.notify_all()

    async def _finish_locked(self, job: Job, state: str, reason: str | None) -> str:
        """Under the content lock (as its removal): the row's new state, or, when the claim is gone and the
        content has no thumbnail now, the object just written removed."""
        async with self.db.transaction() as conn:
            await self.db.lock_content(conn, job["fingerprint"])
            if await thumbnails_db.finish(conn, job, state, stamp_now(self.clock), reason):
                log.info("thumbnail_" + state, fingerprint=job["fingerprint"], reason=reason)
                return state
            if state == MADE and await thumbnails_db.state_of(conn, job["fingerprint"]) != MADE:
                await self.store.delete(thumbnail_key(job["fingerprint"]))
                await self.store.delete(page_key(job["fingerprint"]))
        log.info("thumbnail_claim_lost", fingerprint=job["fingerprint"])
        return "lost"

    async def _retry(self, job: Job, exc: StoreError) -> str:
        if job["attempts"] >= MAX_ATTEMPTS:
            return await self._finish(job, NONE, f"the store failed {job['attempts']} times: {exc}")
        log.warning("thumbnail_store_failed", fingerprint=job["fingerprint"], error=str(exc))
        later = stamp_in(self.clock, RETRY_SECONDS * job["attempts"])
        return "retry" if await thumbnails_db.retry_later(self.db, job, later) else "lost"

    async def _decode_in_child(self, data: bytes) -> Decoded:
        return await decode_in_child(data, seconds=self.config.thumbnail_timeout,
                                     memory_bytes=self.config.thumbnail_memory_bytes)

    async def _decode_page_in_child(self, data: bytes) -> Decoded:
        return await decode_in_child(data, seconds=self.config.thumbnail_timeout,
                                     memory_bytes=self.config.thumbnail_memory_bytes, edge=thumbnailer.PAGE_EDGE)

    async def settled(self, fingerprint: str, recheck: float = 1.0) -> str | None:
        """The content's state once it is no longer queued (``made``, ``none``; None: no row): how a test
        waits for a thumbnail. Looks again each time this process's worker finishes a content, and every
        ``recheck`` seconds for the workers of other gateways."""
        async with self._finished:
            while (state := await thumbnails_db.state_of(self.db, fingerprint)) == QUEUED:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), recheck)
        return state

    # --- reading -------------------------------------------------------------------------------------

    async def urls(self, fingerprints: Iterable[str]) -> dict[str, tuple[str, int]]:
        """(signed CDN URL, expiry) of each of these contents that has a thumbnail. The caller gives only
        contents the reader may read (files it was given)."""
        made = await thumbnails_db.made_among(self.db, fingerprints)
        return {fingerprint: thumbnail_url(self.config, fingerprint) for fingerprint in made}

    def page_url(self, fingerprint: str) -> tuple[str, int]:
        """(signed CDN URL, expiry) of a PDF content's first page, for one whose thumbnail :meth:`urls` gave."""
        return thumbnail_url(self.config, fingerprint, page=True)

