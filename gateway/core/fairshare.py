"""A concurrency limit shared fairly between users: no one user's burst makes another wait behind it.

A plain semaphore serves callers in arrival order, so one user who sends
sixteen heavy calls at once fills every slot and the queue behind them, and a
second user's small call waits for all sixteen (the second review measured
30.9 s instead of 8 ms for presigning). Here each user holds at most
``per_user`` of the ``limit`` slots, and a freed slot goes to the users
waiting in turn (round robin), one call each, never to whoever queued first.
So a user with a call to make gets a slot at once while fewer than
``limit // per_user`` others are busy, and otherwise after at most one call of
each user ahead of it in the round, however many calls they queued.

Single event loop only (asyncio primitives, no locks): one per gateway process.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class FairShare:
    def __init__(self, limit: int, per_user: int):
        if not 0 < per_user <= limit:
            raise ValueError(f"per_user must be between 1 and limit ({limit}), not {per_user}")
        self.limit = limit
        self.per_user = per_user
        self._active = 0
        self._held: dict[Hashable, int] = {}
        # Users with calls waiting, in the order their turn comes; each user's calls in arrival order.
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    def held(self, user: Hashable) -> int:
        """Slots ``user`` holds now."""
        return self._held.get(user, 0)

    def waiting(self, user: Hashable) -> int:
        """Calls of ``user`` waiting for a slot now."""
        return len(self._waiting.get(user, ()))

    @asynccontextmanager
    async def slot(self, user: Hashable) -> AsyncIterator[None]:
        """Hold one of the slots for ``user`` while the block runs."""
        await self._acquire(user)
        try:
            yield
        finally:
            self._release(user)

    async def _acquire(self, user: Hashable) -> None:
        # A free slot with waiters left is one none of them may take (each is at its own share),
        # so taking it here jumps no one's turn.
        if self._active < self.limit and self.held(user) < self.per_user and user not in self._waiting:
            self._take(user)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(user)  # granted, then cancelled before it could run: hand the slot on
            else:
                self._forget(user, future)
            raise

    def _take(self, user: Hashable) -> None:
        self._active += 1
        self._held[user] = self.held(user) + 1

    def _release(self, user: Hashable) -> None:
        self._active -= 1
        left = self._held[user] - 1
        if left:
            self._held[user] = left
        else:
            del self._held[user]
        self._hand_out()

    def _hand_out(self) -> None:
        """Give free slots to waiting users in turn: the first in the round whose share allows it."""
        while self._active < self.limit:
            user = next((u for u in self._waiting if self.held(u) < self.per_user), None)
            if user is None:
                return
            queue = self._waiting.pop(user)
            future = queue.popleft()
            if queue:
                self._waiting[user] = queue  # back of the round
            if future.done():
                continue  # cancelled while it waited; its task has not run its clean-up yet
            self._take(user)
            future.set_result(None)

    def _forget(self, user: Hashable, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(user)
        if queue is None or future not in queue:
            return  # already dropped by _hand_out
        queue.remove(future)
        if not queue:
            del self._waiting[user]
