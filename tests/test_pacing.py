"""gateway/core/pacing.py: a key's failed checks are at most its slots per delay, however many callers; every
caller is answered, a right one without the delay. Delays end when the test says (no time is waited)."""
from __future__ import annotations

import asyncio
import functools
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.pacing import Pacer
from tests.lanes import examples
from tests.core_fixtures import Delays


async def paced(slots: int, outcomes: list[bool]) -> tuple[list[bool], Pacer]:
    """Every outcome checked at once under one key, one delay ended at a time; the answers, the pacer."""
    delays = Delays()
    holding = wrong_checked = 0

    async def sleep(seconds: float) -> None:
        nonlocal holding
        await delays.sleep(seconds)
        holding -= 1  # its slot is given up next

    async def check(right: bool) -> bool:
        nonlocal holding, wrong_checked
        holding += 1
        assert holding <= slots, "no more checks in flight than slots (those in their delay included)"
        wrong_checked += not right
        await asyncio.sleep(0)  # the others run while this check is in flight
        if right:
            holding -= 1
        return right

    pacer = Pacer(slots, delay=2.0, sleep=sleep)
    calls = [asyncio.create_task(pacer.check("198.51.100.7", functools.partial(check, right))) for right in outcomes]
    wrong = outcomes.count(False)
    for delay in itertools.count(1):
        await delays.until_begun(min(slots * delay, wrong))
        for _ in range(5):
            await asyncio.sleep(0)  # room for a check that should not be made
        assert wrong_checked == min(slots * delay, wrong), "the slots' worth of failed checks per delay, no more"
        delays.end()
        if wrong_checked == wrong:
            break
    return await asyncio.gather(*calls), pacer


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 4), st.lists(st.booleans(), min_size=1, max_size=40))
def test_failed_checks_are_at_most_the_slots_per_delay_and_everyone_is_answered(slots, outcomes):
    answers, pacer = asyncio.run(paced(slots, outcomes))
    assert answers == outcomes, "each caller gets its own check's result"
    assert pacer.waiting("198.51.100.7") == 0 and not pacer._keys, "nothing left behind"  # noqa: SLF001


async def test_sixty_callers_make_two_checks_per_delay_and_a_right_one_waits_only_its_turn():
    delays = Delays()
    pacer = Pacer(2, delay=2.0, sleep=delays.sleep)
    checked = []

    async def guess(n: int) -> bool:
        checked.append(n)
        return n == 99

    guesses = [asyncio.create_task(pacer.check("a", functools.partial(guess, n))) for n in range(60)]
    right = asyncio.create_task(pacer.check("a", lambda: guess(99)))
    await delays.until_begun(2)  # both slots held, in their delay
    assert await pacer.check("b", lambda: guess(99)), "another key's check is not held behind them"
    checked.remove(99)
    for delay in range(1, 31):
        await delays.until_begun(2 * delay)
        assert len(checked) == 2 * delay, "two checks in each delay, whatever the number of callers"
        assert not right.done()
        delays.end()
    assert await right is True and delays.begun == 60, "the right one, last in line, got in without a delay"
    assert not any(await asyncio.gather(*guesses))
