"""What uploads and downloads share: options, retries with backoff, progress and notes.

An upload sends chunks to the store and a download fetches them from the CDN
tier, but both move a file chunk by chunk, ``parallel`` at a time, retry a
chunk that fails in a way a later attempt may not, and report progress on
stderr. That machinery lives here once.
"""
from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
from tqdm import tqdm

from client.api import GatewayClient, connection_reason
from client.errors import ClientError
from client.output import printable

T = TypeVar("T")


@dataclass
class TransferOptions:
    parallel: int = 4  # chunks in flight
    retries: int = 6  # attempts after the first, per chunk
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    quiet: bool = False


class Retry(Exception):
    """An attempt failed in a way a later attempt may not; ``problem`` is said if none succeeds.

    ``unreachable`` marks a failure to reach the other side at all (exit code 3).
    """

    def __init__(self, problem: str, unreachable: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.unreachable = unreachable


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0, jitter: float = 0.25) -> float:
    """Exponential: base, 2 base, 4 base ... capped, with +-jitter so workers spread out."""
    delay = min(cap, base * (2 ** attempt))
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


async def with_retries(attempt: Callable[[], Awaitable[T]], options: TransferOptions,
                       give_up: Callable[[Retry], ClientError],
                       on_retry: Callable[[], None] | None = None) -> T:
    """``attempt()`` until it returns, at most ``1 + options.retries`` times, with backoff between.

    ``attempt`` raises :class:`Retry` for what may pass; anything else goes
    straight through. After the last try, ``give_up(last Retry)`` is raised.
    """
    last = Retry("no answer")
    for number in range(options.retries + 1):
        if number:
            if on_retry:
                on_retry()
            await asyncio.sleep(backoff_delay(number - 1, options.backoff_base, options.backoff_max))
        try:
            return await attempt()
        except Retry as exc:
            last = exc
    raise give_up(last)


def transport_problem(exc: BaseException, other_side: str) -> tuple[str, bool]:
    """(what went wrong, whether ``other_side`` could not be reached at all) for a transport error."""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return f"cannot reach {other_side} ({connection_reason(exc)})", True
    return f"the connection to {other_side} broke ({connection_reason(exc)})", False


async def run_workers(parallel: int, items: Iterable[Any], work: Callable[[Any], Awaitable[None]]) -> None:
    """``parallel`` workers take the next item until none is left; the first failure stops them all.

    A rerun resumes from what is done, so nothing is gained by going on after a failure.
    """
    todo = list(items)
    shared = iter(todo)  # each item goes to exactly one worker

    async def worker() -> None:
        for item in shared:
            await work(item)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(parallel, len(todo))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


class ChunkTransfer:
    """Moves the chunks of one file between here and the store or CDN tier, showing progress on ``bar``."""

    def __init__(self, client: GatewayClient, file_id: Any, options: TransferOptions, bar: tqdm):
        self.client = client
        self.file_id = file_id
        self.options = options
        self.bar = bar

    async def each(self, indexes: Iterable[int], work: Callable[[int], Awaitable[None]]) -> None:
        """``work(index)`` for every index, ``options.parallel`` at a time (see run_workers)."""
        await run_workers(self.options.parallel, indexes, work)


# -- what the user sees -------------------------------------------------------------------


def short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def make_bar(total: int, desc: str, options: TransferOptions, initial: int = 0, leave: bool = True) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=printable(desc), unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=options.quiet, dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 1.0,
        leave=leave,
    )


def note(options: TransferOptions, message: str) -> None:
    if not options.quiet:
        tqdm.write(f"dbx: {printable(message)}", file=sys.stderr)
