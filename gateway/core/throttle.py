"""Throttling: at most so many attempts per key in a window, counted in the database.

Generic: a key names what is being guessed at (``link:<link_id>`` for a shared
link's password). The counters live in the metadata database
(gateway/db/throttle.py), never in process memory, so an attacker who spreads
guesses over several gateway processes meets one count.

An attempt is counted *before* it is checked (:meth:`Throttle.take`) and given
back when it turns out allowed (:meth:`Throttle.give_back`). Counting first
means concurrent guesses cannot all slip past a count that none has raised
yet (checking a password takes tens of milliseconds of scrypt); giving back
means a visitor who knows the password is never throttled by their own
successes. While a key is over its limit every attempt is refused, the right
password too: otherwise the answer would still tell a guesser when they hit it.

Windows are fixed: they start at the first attempt counted and last
``window`` seconds; refused attempts do not lengthen them, so a visitor locked
out by someone else's guessing gets in again when the window ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.clock import Clock, parse_timestamp, stamp_ago, stamp_now
from gateway.core.errors import TooManyAttempts
from gateway.db import Database
from gateway.db import throttle as throttle_db


@dataclass(frozen=True)
class Limit:
    attempts: int  # counted attempts allowed per window
    window: int  # seconds


class Throttle:
    def __init__(self, db: Database, clock: Clock):
        self.db = db
        self.clock = clock

    async def take(self, key: str, limit: Limit) -> None:
        """Count an attempt on ``key``; TooManyAttempts (with the seconds to wait) when over the limit."""
        now = self.clock()
        counter = await throttle_db.count_attempt(
            self.db, key, stamp_now(self.clock), stamp_ago(self.clock, limit.window)
        )
        if counter["attempts"] > limit.attempts:
            window_left = limit.window - (now - parse_timestamp(counter["window_start"])).total_seconds()
            raise TooManyAttempts(max(1, math.ceil(window_left)))

    async def give_back(self, key: str, limit: Limit) -> None:
        """Uncount an attempt :meth:`take` counted that turned out to be allowed."""
        await throttle_db.uncount_attempt(self.db, key, stamp_ago(self.clock, limit.window))

    async def forget_ended_windows(self, longest_window: int) -> int:
        """Delete counters whose window ended (every limit's window is at most ``longest_window``)."""
        return await throttle_db.forget_windows(self.db, stamp_ago(self.clock, longest_window))
