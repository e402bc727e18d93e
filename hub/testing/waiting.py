"""Waiting for something to happen, with a deadline: how tests, the demo and the benchmarks
wait, instead of sleeping for a time they hope is long enough.

``wait_for`` polls from synchronous code; ``eventually`` polls on a running event loop, so the
consumers and servers on that loop keep working while it waits. Both return the condition's
first truthy value, so a caller can wait for a thing and use it in one step. Both give up with
``TimedOut``, which names what was awaited, for how long, and what the condition last
returned.
"""

from __future__ import annotations

import asyncio
import reprlib
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# A failure message quotes the condition's last answer; a queue's whole content would bury it.
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 120


class TimedOut(AssertionError):
    """A condition stayed false until its deadline. An ``AssertionError``, so that pytest
    reports it as the test's failure rather than as an error in the test's machinery."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        super().__init__(
            f"timed out after {timeout:g}s waiting for {what} "
            f"(the condition last returned {_short.repr(last)})"
        )
        self.what = what
        self.timeout = timeout


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    message: str = "the condition",
    *,
    interval: float = 0.02,
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy, and
    return that; raise ``TimedOut`` naming ``message`` once ``timeout`` seconds have passed.
    The condition is asked once more after the deadline has passed before giving up, so a wait
    never fails without a look at the latest state."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(message, timeout, value)
        time.sleep(interval)


async def eventually(
    condition: Callable[[], T],
    timeout: float = 10.0,
    message: str = "the condition",
    *,
    interval: float = 0.02,
    blocking: bool = False,
) -> T:
    """``wait_for`` on the running event loop. A condition that blocks (one that asks a broker
    or a database) is called with ``blocking=True``: it then runs in a thread, so the loop's
    consumers keep delivering what the condition waits for."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition) if blocking else condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(message, timeout, value)
        await asyncio.sleep(interval)


async def elsewhere() -> None:
    """A handler's call to a system, as tests simulate it: the handler gives the event loop to
    the other deliveries and comes back on the loop's next turn, without waiting on the clock
    (a timed pause makes how much overlaps depend on the machine's speed)."""
    loop = asyncio.get_running_loop()
    answered = loop.create_future()
    loop.call_soon(answered.set_result, None)
    await answered
