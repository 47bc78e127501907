"""Ctrl-C as an event of dbx's event loop, not an exception raised wherever the main thread is.

Python runs a SIGINT handler between any two bytecodes of the main thread. asyncio's
own handler (``asyncio.run``'s) cancels the main task from there, which can land in
the middle of another callback: one that is handing a hashing thread's result to the
future the task waits on. That future is then cancelled between the callback's check
and its ``set_result``, and asyncio prints "Exception in callback ..._set_state" with
a traceback over dbx's clean "interrupted" line.

``loop.add_signal_handler`` instead only writes the signal to the loop's wake-up pipe;
the loop runs :func:`run_interruptibly`'s handler as a callback of its own, between
callbacks, never inside one. The first Ctrl-C cancels the command, whose cleanup runs
(threads stopped, partial files kept for the resume) and the command ends in
KeyboardInterrupt, as before; a second Ctrl-C during that cleanup is Python's default
again: stop now.
"""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_interruptibly(command: Coroutine[Any, Any, T]) -> T:
    """Await ``command``; Ctrl-C cancels it and raises KeyboardInterrupt once it has unwound."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here: asyncio.run's handler stays
        return await command
    try:
        return await command
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if not interrupted:
            loop.remove_signal_handler(signal.SIGINT)
