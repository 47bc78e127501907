"""Slow clients (slowloris) for the nginx tiers' tests: many connections, each with half a request head sent.

The attacking connections come from 127.0.0.2 and the other client from
127.0.0.3 (both loopback addresses on Linux), so limits per client address
tell them apart as they would two machines.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

NEVER = 30  # seconds after which a wait fails the test: the server did not act at all
# More half-sent requests than one nginx worker took before (1,024 connections; the review held
# 2,050 against two workers): the tiers under test run one worker.
HELD = 1100
HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: "
ATTACKER, OTHER = "127.0.0.2", "127.0.0.3"

Held = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


@asynccontextmanager
async def held_half_sent(port: int, count: int) -> AsyncIterator[Held]:
    """``count`` connections from ATTACKER to ``port``, each with half a request head sent, until the block ends."""
    held: Held = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
            writer.write(HALF_A_HEAD)
            held.append((reader, writer))
        await asyncio.gather(*(writer.drain() for _, writer in held))
        yield held
    finally:
        for _, writer in held:
            writer.close()


async def request_from(port: int, path: str) -> bytes:
    """A whole GET from OTHER: the answer, as it came until the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(OTHER, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(), NEVER)
    finally:
        writer.close()


async def closed_by_the_server(held: Held) -> list[bytes]:
    """What the server sent on each held connection before it closed it."""
    return list(await asyncio.gather(*(asyncio.wait_for(reader.read(), NEVER) for reader, _ in held)))
