"""The contract's fingerprints: in one pass over a file (uploads), or chunk by chunk (downloads)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from typing import Any, BinaryIO, Callable, Iterable, TypeVar

from protocol.fingerprints import chunk_length, fingerprint_stream


class CountingReader:
    """A read-only file wrapper that reports how many bytes were read."""

    def __init__(self, stream: BinaryIO, on_read: Callable[[int], None] | None = None):
        self._stream = stream
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data and self._on_read:
            self._on_read(len(data))
        return data


def fingerprint_file(path: str, chunk_size: int, on_read: Callable[[int], None] | None = None) -> tuple[str, list[str], int]:
    """(file fingerprint, chunk fingerprints, size) in one streamed pass."""
    with open(path, "rb", buffering=0) as f:
        return fingerprint_stream(CountingReader(f, on_read), chunk_size)  # type: ignore[arg-type]


def chunk_digest(pieces: Iterable[bytes]) -> str:
    """A chunk's fingerprint (the lowercase hex SHA-256 of its bytes), from its bytes in pieces."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


def verify_chunks(path: str, chunk_size: int, file_size: int, expected: dict[int, str],
                  on_read: Callable[[int], None] | None = None) -> set[int]:
    """The indexes of ``expected`` whose bytes in ``path`` (at their offsets) have that fingerprint.

    Reads one chunk at a time: memory holds at most ``chunk_size`` bytes.
    """
    good = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        for index in sorted(expected):
            length = chunk_length(index, file_size, chunk_size)
            data = os.pread(fd, length, index * chunk_size)
            if on_read:
                on_read(length)
            if len(data) == length and chunk_digest([data]) == expected[index]:
                good.add(index)
    finally:
        os.close(fd)
    return good


class Stopped(Exception):
    """A hashing thread was told to stop (the command was interrupted)."""


T = TypeVar("T")


async def run_stoppable(fn: Callable[..., T], *args: Any, on_read: Callable[[int], None] | None = None) -> T:
    """Run a long read in a thread; cancelling the caller stops it at its next read.

    ``fn`` takes ``on_read`` as its last argument. Without this, Ctrl-C during
    the fingerprint of a large file would wait for the whole pass to finish.
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
