"""The gateway's background loops (gateway/http/app.py's every()) stop when the app stops, whatever the
moment: a test's teardown once waited for ever on a thumbnail worker whose stop came as its wait ended."""
from __future__ import annotations

import asyncio

from gateway.http.app import every


async def test_a_stop_that_comes_as_the_wait_ends_still_stops_the_loop():
    """Python 3.11's asyncio.wait_for, cancelled when what it waits for is done too, returns its result
    instead of raising: a loop whose wait uses it must stop all the same, and run no round after its stop."""
    woken = asyncio.Event()
    rounds: list[int] = []

    async def wait() -> None:
        await asyncio.wait_for(woken.wait(), 60)
        woken.clear()

    async def round_once() -> None:
        rounds.append(1)

    async with asyncio.timeout(10):  # without the fix the stop waits until this cancels it again
        async with every(60, "test-loop", round_once, wait):
            await asyncio.sleep(0)  # the loop is in its wait
            woken.set()  # what the wait waits for is ready; the stop's cancel comes before the loop runs again
    assert rounds == []


async def test_a_loop_runs_its_round_each_time_its_wait_ends():
    woken = asyncio.Event()
    ran = asyncio.Event()

    async def wait() -> None:
        await woken.wait()
        woken.clear()

    async def round_once() -> None:
        ran.set()

    async with every(60, "test-loop", round_once, wait):
        woken.set()
        await asyncio.wait_for(ran.wait(), 30)
