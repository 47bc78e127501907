"""Pacing password checks per key (a client address) in this process: slowed down, never refused.

A slow-down that every attempt waits through one by one does not bound a
guessing rate: sixty concurrent connections from one address each waited
their two seconds side by side and made 17.2 guesses a second. Refusing the
address instead (429) refuses the right passwords of everyone else behind the
same NAT address, which the contract forbids. A :class:`Pacer` does neither:
a key has at most ``slots`` checks in flight, and a check that fails keeps its
slot ``delay`` seconds more before its answer goes out, so the failed checks
of one key are at most ``slots`` per ``delay`` seconds, whatever the number of
connections. The others wait their turn (first come, first served) and every
one is answered: a right password as soon as it is checked.

The slots live in this process's memory, so the bound is per gateway process:
N processes behind a balancer let one key make up to N times as many guesses.
A key's entry goes when nobody holds or waits for its slots.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class _Slots:
    free: asyncio.Semaphore
    users: int = 0  # requests holding or waiting for one of these slots


class Pacer:
    """At most ``slots`` checks in flight per key; a failed check holds its slot ``delay`` seconds more."""

    def __init__(self, slots: int, delay: float, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        self.slots = slots
        self.delay = delay
        self.sleep = sleep  # tests pass their own, to end each delay when they say
        self._keys: dict[str, _Slots] = {}

    def waiting(self, key: str) -> int:
        """Requests holding or waiting for one of ``key``'s slots now."""
        entry = self._keys.get(key)
        return entry.users if entry else 0

    async def check(self, key: str, check: Callable[[], Awaitable[bool]]) -> bool:
        """``check()`` in one of ``key``'s slots, once one is free; its result, after ``delay`` when False."""
        entry = self._keys.setdefault(key, _Slots(asyncio.Semaphore(self.slots)))
        entry.users += 1
        try:
            async with entry.free:
                right = await check()
                if not right:
                    await self.sleep(self.delay)
                return right
        finally:
            entry.users -= 1
            if not entry.users:
                del self._keys[key]
