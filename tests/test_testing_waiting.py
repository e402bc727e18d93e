"""The one way tests, the demo and the benchmarks wait for something (``hub.testing.waiting``):
the first truthy answer comes back, and a wait that gives up says what it waited for, for how
long, and what it saw last. Pure logic over in-memory conditions."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from hub.testing.waiting import TimedOut, elsewhere, eventually, wait_for


def test_the_first_truthy_answer_is_returned() -> None:
    answers = iter([None, [], 0, ["ready"], ["later"]])
    assert wait_for(lambda: next(answers), 5, "a list", interval=0) == ["ready"]
    assert next(answers) == ["later"], "the condition was asked again after it held"


def test_a_wait_that_gives_up_names_what_for_how_long_and_what_it_saw() -> None:
    counter = itertools.count()
    with pytest.raises(TimedOut) as caught:
        wait_for(lambda: next(counter) < 0 and "never", 0.05, "the queue to fill", interval=0)
    text = str(caught.value)
    assert "waiting for the queue to fill" in text
    assert "after 0.05s" in text
    assert "last returned False" in text
    assert isinstance(caught.value, AssertionError), "pytest reports it as the test's failure"


class _Empty:
    """Falsy, with a repr as long as a drained queue's listing."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "row " * 10_000


def test_a_long_last_answer_is_shortened_in_the_message() -> None:
    with pytest.raises(TimedOut) as caught:
        wait_for(_Empty, 0.01, "the rows", interval=0)
    assert "last returned row row" in str(caught.value)
    assert len(str(caught.value)) < 300


def test_eventually_lets_the_loop_run_while_it_waits() -> None:
    async def scenario() -> str:
        flag: list[str] = []
        asyncio.get_running_loop().call_later(0.01, flag.append, "set by the loop")
        return (await eventually(lambda: flag[:1], 5, "the loop's callback"))[0]

    assert asyncio.run(scenario()) == "set by the loop"


def test_a_blocking_condition_runs_off_the_loop() -> None:
    released = threading.Event()

    async def scenario() -> bool:
        # The condition blocks until the loop releases it: run on the loop, it would hang.
        asyncio.get_running_loop().call_later(0.01, released.set)
        return await eventually(lambda: released.wait(5), 5, "the release", blocking=True)

    assert asyncio.run(scenario()) is True


def test_eventually_gives_up_like_wait_for() -> None:
    async def scenario() -> None:
        await eventually(lambda: 0, 0.02, "a number", interval=0.001)

    with pytest.raises(TimedOut, match=r"after 0.02s waiting for a number \(.*returned 0\)"):
        asyncio.run(scenario())


def test_a_simulated_call_lets_the_other_deliveries_run_meanwhile() -> None:
    order: list[str] = []

    async def delivery(name: str) -> None:
        order.append(f"{name} calls")
        await elsewhere()
        order.append(f"{name} answered")

    async def both() -> None:
        await asyncio.gather(delivery("a"), delivery("b"))

    asyncio.run(both())
    assert order == ["a calls", "b calls", "a answered", "b answered"]
