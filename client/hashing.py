"""The contract's fingerprints of local files: all chunks on several threads (uploads), or some (downloads).

SHA-256 runs at about 1 GiB/s on one core, and an upload cannot start before
the gateway has every chunk's fingerprint, so the fingerprint pass is time the
whole upload waits. hashlib releases the GIL while it hashes, so chunks are
hashed on several threads at once, each reading its chunk at its offset into a
buffer of its own: memory holds ``threads x PIECE`` bytes of the file, however
large it is.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from collections.abc import Callable, Iterable

from protocol.fingerprints import chunk_count, chunk_length, file_fingerprint

PIECE = 1024 * 1024  # bytes a hashing thread reads at a time
MAX_HASH_THREADS = 8


class FileChanged(Exception):
    """The file is shorter than it was when the pass began."""


def hash_threads() -> int:
    """One thread per core (at least two, so reading and hashing overlap), at most MAX_HASH_THREADS."""
    return max(2, min(MAX_HASH_THREADS, os.cpu_count() or 1))


def chunk_digest(pieces: Iterable[bytes]) -> str:
    """A chunk's fingerprint (the lowercase hex SHA-256 of its bytes), from its bytes in pieces."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


def fingerprint_chunk_at(path: str, index: int, file_size: int, chunk_size: int, buffer: memoryview) -> str:
    """Chunk ``index`` of ``path``, read at its offset in ``buffer``-sized pieces and hashed.

    Opens the file itself, so that any number of threads may run it and a
    caller that stops waiting never closes a descriptor under a running read.
    """
    offset = index * chunk_size
    left = chunk_length(index, file_size, chunk_size)
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        while left:
            count = os.preadv(fd, [buffer[:min(len(buffer), left)]], offset)
            if not count:
                raise FileChanged(f"{path} ended {left} bytes early in chunk {index}")
            digest.update(buffer[:count])
            offset += count
            left -= count
    finally:
        os.close(fd)
    return digest.hexdigest()


async def fingerprint_file(path: str, chunk_size: int, *, threads: int | None = None,
                           on_chunk: Callable[[int], None] | None = None) -> tuple[str, list[str], int]:
    """(file fingerprint, chunk fingerprints, size), the chunks hashed on ``threads`` threads.

    ``on_chunk(length)`` is called on the event loop as each chunk is done.
    Cancelling stops at once: chunks not started are dropped, and the few
    being hashed finish in their threads. Raises :class:`FileChanged` when the
    file's size changed during the pass.
    """
    size = os.stat(path).st_size
    count = chunk_count(size, chunk_size)
    local = threading.local()

    def job(index: int) -> str:
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = memoryview(bytearray(min(PIECE, chunk_size)))
        return fingerprint_chunk_at(path, index, size, chunk_size, buffer)

    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(threads or hash_threads(), thread_name_prefix="dbx-hash")
    try:
        futures = [loop.run_in_executor(pool, job, index) for index in range(count)]
        fingerprints = []
        for index, future in enumerate(futures):
            fingerprints.append(await future)
            if on_chunk:
                on_chunk(chunk_length(index, size, chunk_size))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if os.stat(path).st_size != size:
        raise FileChanged(f"{path} changed size while it was being read")
    return file_fingerprint(fingerprints), fingerprints, size


def verify_chunks(path: str, chunk_size: int, file_size: int, expected: dict[int, str],
                  on_read: Callable[[int], None] | None = None) -> set[int]:
    """The indexes of ``expected`` whose bytes in ``path`` (at their offsets) have that fingerprint.

    One chunk at a time, in pieces: memory holds at most PIECE bytes of the file.
    """
    buffer = memoryview(bytearray(min(PIECE, chunk_size)))
    good = set()
    for index in sorted(expected):
        try:
            if fingerprint_chunk_at(path, index, file_size, chunk_size, buffer) == expected[index]:
                good.add(index)
        except FileChanged:
            pass  # shorter than the file: its last chunks cannot check out
        if on_read:
            on_read(chunk_length(index, file_size, chunk_size))
    return good


class Stopped(Exception):
    """A thread was told to stop (the command was interrupted)."""


T = TypeVar("T")


async def run_stoppable(fn: Callable[..., T], *args: Any, on_read: Callable[[int], None] | None = None) -> T:
    """Run a long read in a thread; cancelling the caller stops it at its next read.

    ``fn`` takes ``on_read`` as its last argument. Without this, Ctrl-C while a
    large partial download is checked would wait for the whole pass to finish.
    """
    stop = threading.Event()

    def checked(n: int) -> None:
        if stop.is_set():
            raise Stopped()
        if on_read:
            on_read(n)

    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, checked))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        try:
            await task
        except Stopped:
            pass
        raise
