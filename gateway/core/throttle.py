"""Throttling repeated failures per key (a username, a client address, a link), counted in the database.

Every gateway process reads and writes the same counters (the ``throttle``
table), so the limits hold however many processes serve the requests and
survive restarts; nothing depends on a process's memory. Each key counts its
failures in a window of ``Limit.window`` seconds that starts at its first
failure; the failure that passes ``Limit.failures`` blocks the key for
``Limit.block`` seconds (the window's length unless set)::

    guesses = Throttle(db, clock, "link-password", Limit(failures=5, window=300))
    if (retry_after := await guesses.check(link_id)) is not None:
        raise TooManyAttempts(retry_after)
    if not right:
        await guesses.record_failure(link_id)

Counting a failure is one atomic statement (gateway/db/throttle.py), so
concurrent failures each count. A caller that must not let a burst of
concurrent guesses through before the first failures are counted counts the
attempt *before* checking it, and resets the key when it was right
(gateway/core/accounts.py does so for passwords).

Keys are stored as given, under the throttle's name: never put a secret in a
key (hash it first). :func:`forget_expired` drops the counters that count
nothing any more; the gateway's housekeeping calls it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from gateway.core.clock import Clock, seconds_until, stamp_in, stamp_now
from gateway.db import Database, storable_text
from gateway.db import throttle as throttle_db


@dataclass(frozen=True)
class Limit:
    failures: int  # failures a key may have in one window; the next one blocks it
    window: float  # seconds: the window failures are counted in, from a key's first failure
    block: float | None = None  # seconds a key stays blocked; None: the window's length

    @property
    def block_seconds(self) -> float:
        return self.window if self.block is None else self.block


def retry_after(clock: Clock, blocked_until: str | None) -> int | None:
    """Whole seconds (at least 1) until ``blocked_until``; None when that is not in the future."""
    if blocked_until is None:
        return None
    left = seconds_until(clock, blocked_until)
    return max(1, math.ceil(left)) if left > 0 else None


class Throttle:
    """Failure counters under one name, with one limit."""

    def __init__(self, db: Database, clock: Clock, name: str, limit: Limit):
        self.db = db
        self.clock = clock
        self.name = name
        self.limit = limit

    def _key(self, key: str) -> str:
        if not storable_text(key):  # a key from a request may hold what the database cannot: escape it
            key = json.dumps(key)[1:-1]
        return f"{self.name}:{key}"

    async def check(self, key: str) -> int | None:
        """Seconds until ``key`` may try again while it is blocked; None when it is not."""
        until = await throttle_db.blocked_until(self.db, self._key(key), stamp_now(self.clock))
        return retry_after(self.clock, until)

    async def record_failure(self, key: str) -> int | None:
        """Count a failure against ``key``; seconds until it may try again if it is now blocked, else None."""
        row = await throttle_db.count_failure(
            self.db,
            self._key(key),
            now=stamp_now(self.clock),
            window_ends_at=stamp_in(self.clock, self.limit.window),
            limit=self.limit.failures,
            block_ends_at=stamp_in(self.clock, self.limit.block_seconds),
        )
        return retry_after(self.clock, row["blocked_until"])

    async def count_attempt(self, key: str) -> int | None:
        """Seconds until ``key`` may try again while it is blocked (not counted: waiting ends the block);
        else count this attempt as a failure before it is made, so concurrent attempts count in full
        (forgive or reset it once it proves right), and the seconds to wait if that blocks ``key``."""
        return await self.check(key) or await self.record_failure(key)

    async def forgive(self, key: str) -> None:
        """Take back one failure of ``key``'s current window, counted before an attempt that proved right.

        Unlike :meth:`reset`, the others stay counted: where many people use one
        key (a shared link's password), their successes must not wipe out a
        guesser's failures. A block stays.
        """
        await throttle_db.uncount_failure(self.db, self._key(key), now=stamp_now(self.clock))

    async def reset(self, key: str) -> None:
        """Forget ``key``'s failures (and any block): it succeeded."""
        await throttle_db.forget(self.db, self._key(key))


async def forget_expired(db: Database, clock: Clock) -> int:
    """Drop every throttle's counters whose window and block have ended; how many."""
    return await throttle_db.forget_expired(db, stamp_now(clock))
