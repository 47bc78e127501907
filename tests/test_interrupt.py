"""dbx's Ctrl-C (client/interrupt.py): handled between the event loop's callbacks, never inside one."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from client.interrupt import run_interruptibly


async def wait_for_a_result_that_a_callback_sets_while_ctrl_c_arrives() -> str:
    """The race dbx hit: a callback hands a thread's result to the awaited future, and SIGINT comes meanwhile.

    ``os.kill`` to ourselves makes the signal arrive at a known point: Python runs
    its handler at the next bytecode of the callback, before ``set_result``.
    """
    loop = asyncio.get_running_loop()
    waited: asyncio.Future[str] = loop.create_future()

    def hand_over() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        waited.set_result("chunk fingerprint")

    loop.call_soon(hand_over)
    got = await waited
    await asyncio.sleep(3600)  # the interrupt ends this
    return got


def test_ctrl_c_inside_a_callback_waits_for_the_callback_and_then_cancels_the_command() -> None:
    errors: list[dict] = []
    cleaned_up = []

    async def command() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        try:
            return await wait_for_a_result_that_a_callback_sets_while_ctrl_c_arrives()
        finally:
            cleaned_up.append(True)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_interruptibly(command()))
    assert cleaned_up == [True]
    assert errors == [], "a callback was interrupted in its middle"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_asyncio_own_handler_has_the_race_this_module_avoids() -> None:
    """Without run_interruptibly the same run prints asyncio's callback error (this is why the module exists)."""
    errors: list[dict] = []

    async def command() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        return await wait_for_a_result_that_a_callback_sets_while_ctrl_c_arrives()

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(command())
    assert [type(error.get("exception")).__name__ for error in errors] == ["InvalidStateError"]


def test_a_command_that_ends_leaves_the_default_handler() -> None:
    async def command() -> int:
        return 7

    assert asyncio.run(run_interruptibly(command())) == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
