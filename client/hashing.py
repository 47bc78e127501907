"""The contract's fingerprints of local files: all chunks on several threads (uploads), or some (downloads).

SHA-256 runs at about 1 GiB/s on one core, and an upload cannot start before
the gateway has every chunk's fingerprint, so the fingerprint pass is time the
whole upload waits. hashlib releases the GIL while it hashes, so chunks are
hashed on several threads at once, each reading its chunk at its offset into a
buffer of its own: memory holds ``threads x PIECE`` bytes of the file, however
large it is.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable

from protocol.fingerprints import chunk_count, chunk_length, file_fingerprint

# Bytes a hashing thread reads, then hashes, at a time: large, because each read and each hash lets
# go of the GIL and takes it back after; fewer pieces, fewer hand-offs between the threads.
PIECE = 8 * 1024 * 1024
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
    fd = os.open(path, os.O_RDONLY)
    try:
        return fingerprint_chunk_in(fd, index, file_size, chunk_size, buffer, path)
    finally:
        os.close(fd)


def fingerprint_chunk_in(fd: int, index: int, file_size: int, chunk_size: int, buffer: memoryview,
                         name: str = "the file") -> str:
    """Chunk ``index`` of the file open at ``fd`` (``name`` in messages), read at its offset and hashed."""
    offset = index * chunk_size
    left = chunk_length(index, file_size, chunk_size)
    digest = hashlib.sha256()
    while left:
        count = os.preadv(fd, [buffer[:min(len(buffer), left)]], offset)
        if not count:
            raise FileChanged(f"{name} ended {left} bytes early in chunk {index}")
        digest.update(buffer[:count])
        offset += count
        left -= count
    return digest.hexdigest()


class FingerprintPass:
    """The fingerprints of one file, hashed on ``threads`` threads from the moment this is made.

    Made without an event loop, so that ``dbx upload`` can start hashing its
    first file while the rest of the client (aiohttp above all) still loads:
    the hashing threads read and hash while the main thread imports.
    """

    def __init__(self, path: str, chunk_size: int, threads: int | None = None):
        self.path = path
        self.chunk_size = chunk_size
        self.size = os.stat(path).st_size
        local = threading.local()

        def job(index: int) -> str:
            buffer = getattr(local, "buffer", None)
            if buffer is None:
                buffer = local.buffer = memoryview(bytearray(min(PIECE, chunk_size)))
            return fingerprint_chunk_at(path, index, self.size, chunk_size, buffer)

        self._pool = ThreadPoolExecutor(threads or hash_threads(), thread_name_prefix="dbx-hash")
        self._chunks = [self._pool.submit(job, index) for index in range(chunk_count(self.size, chunk_size))]

    async def result(self, on_chunk: Callable[[int], None] | None = None) -> tuple[str, list[str], int]:
        """(file fingerprint, chunk fingerprints, size); ``on_chunk(length)`` as each chunk is done, in order.

        Cancelling stops at once: chunks not started are dropped, and the few
        being hashed finish in their threads. Raises :class:`FileChanged` when
        the file's size changed during the pass.
        """
        import asyncio  # here, not above: the pass starts before asyncio is loaded

        fingerprints = []
        try:
            for index, chunk in enumerate(self._chunks):
                fingerprints.append(await asyncio.wrap_future(chunk))
                if on_chunk:
                    on_chunk(chunk_length(index, self.size, self.chunk_size))
        finally:
            self.cancel()
        if os.stat(self.path).st_size != self.size:
            raise FileChanged(f"{self.path} changed size while it was being read")
        return file_fingerprint(fingerprints), fingerprints, self.size

    def cancel(self) -> None:
        """Drop the chunks not started; the threads end with the chunk each is hashing."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def fingerprint_file(path: str, chunk_size: int, *, threads: int | None = None,
                           on_chunk: Callable[[int], None] | None = None) -> tuple[str, list[str], int]:
    """(file fingerprint, chunk fingerprints, size), the chunks hashed on ``threads`` threads (see FingerprintPass)."""
    return await FingerprintPass(path, chunk_size, threads).result(on_chunk)


def verify_chunks(file: str | int, chunk_size: int, file_size: int, expected: dict[int, str],
                  on_read: Callable[[int], None] | None = None) -> set[int]:
    """The indexes of ``expected`` whose bytes in ``file`` (at their offsets) have that fingerprint.

    ``file`` is a path, or a descriptor open for reading (read at offsets, left
    open: ``dbx download`` checks the part file it has opened, not whatever the
    name leads to). One chunk at a time, in pieces: memory holds at most PIECE
    bytes of the file.
    """
    buffer = memoryview(bytearray(min(PIECE, chunk_size)))
    fd = os.open(file, os.O_RDONLY) if isinstance(file, str) else file
    good = set()
    try:
        for index in sorted(expected):
            try:
                if fingerprint_chunk_in(fd, index, file_size, chunk_size, buffer) == expected[index]:
                    good.add(index)
            except FileChanged:
                pass  # shorter than the file: its last chunks cannot check out
            if on_read:
                on_read(chunk_length(index, file_size, chunk_size))
    finally:
        if isinstance(file, str):
            os.close(fd)
    return good
