"""The contract's fingerprint, computed incrementally (for downloads) or in one pass (for uploads)."""
from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any, BinaryIO, Callable, TypeVar

from gateway.fingerprints import file_fingerprint, fingerprint_stream


class ChunkHasher:
    """Feed bytes in any pieces; get the file fingerprint and chunk fingerprints.

    Holds one SHA-256 state and one 64-character string per finished chunk: constant
    memory in the bytes hashed.
    """

    def __init__(self, chunk_size: int):
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self.chunks: list[str] = []
        self.size = 0
        self._current = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            room = self.chunk_size - self._filled
            piece = view[:room]
            self._current.update(piece)
            self._filled += len(piece)
            self.size += len(piece)
            view = view[len(piece):]
            if self._filled == self.chunk_size:
                self.chunks.append(self._current.hexdigest())
                self._current = hashlib.sha256()
                self._filled = 0

    def chunk_fingerprints(self) -> list[str]:
        """Fingerprints of every chunk so far, the partial last one included."""
        if self._filled:
            return [*self.chunks, self._current.hexdigest()]
        return list(self.chunks)

    def hexdigest(self) -> str:
        return file_fingerprint(self.chunk_fingerprints())


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
