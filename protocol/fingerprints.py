"""The contract's fingerprints, and where content lives in the store.

A file is cut into ``chunk_size`` pieces; a chunk's fingerprint is the hex
SHA-256 of its bytes; the file's fingerprint is the hex SHA-256 of the chunk
digests (raw, 32 bytes each) in order -- for an empty file, SHA-256 of nothing.
That is exactly the COMPOSITE SHA-256 checksum S3 computes for a multipart
upload whose parts are the chunks, so the store can verify it for us.

Shared by the gateway and its clients; imports nothing else of this project.
"""
from __future__ import annotations

import base64
import hashlib
import re
from typing import BinaryIO
from collections.abc import Iterable, Iterator

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024  # the contract's default; each gateway says its own in GET /config
EMPTY_FINGERPRINT = hashlib.sha256(b"").hexdigest()


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and bool(HEX64.match(value))


def chunk_count(file_size: int, chunk_size: int) -> int:
    return -(-file_size // chunk_size)  # ceiling division; 0 for an empty file


def chunk_length(index: int, file_size: int, chunk_size: int) -> int:
    return min(chunk_size, file_size - index * chunk_size)


def chunk_fingerprint(data: bytes | memoryview) -> str:
    """A chunk's fingerprint: the lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def file_fingerprint(chunk_fingerprints: Iterable[str]) -> str:
    digests = [bytes.fromhex(fp) for fp in chunk_fingerprints]
    if not digests:
        return EMPTY_FINGERPRINT
    return hashlib.sha256(b"".join(digests)).hexdigest()


def hex_to_b64(fingerprint: str) -> str:
    """S3 writes SHA-256 checksums in base64."""
    return base64.b64encode(bytes.fromhex(fingerprint)).decode()


def composite_checksum(fingerprint: str, parts: int) -> str:
    """The store's checksum of a completed multipart object with this fingerprint."""
    return f"{hex_to_b64(fingerprint)}-{parts}"


def fingerprint_stream(stream: BinaryIO, chunk_size: int) -> tuple[str, list[str], int]:
    """One pass, constant memory: (file fingerprint, chunk fingerprints, size)."""
    chunks: list[str] = []
    size = 0
    for chunk in iter_chunks(stream, chunk_size):
        chunks.append(chunk_fingerprint(chunk))
        size += len(chunk)
    return file_fingerprint(chunks), chunks, size


def fingerprint_bytes(data: bytes, chunk_size: int) -> tuple[str, list[str]]:
    """(file fingerprint, chunk fingerprints) of bytes in memory."""
    view = memoryview(data)
    chunks = [chunk_fingerprint(view[start:start + chunk_size]) for start in range(0, len(data), chunk_size)]
    return file_fingerprint(chunks), chunks


def iter_chunks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        while len(chunk) < chunk_size:  # a pipe may return short reads
            more = stream.read(chunk_size - len(chunk))
            if not more:
                break
            chunk += more
        yield chunk
        if len(chunk) < chunk_size:
            return
