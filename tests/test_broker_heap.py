"""Freezing the startup heap: later full collections no longer walk what was alive then."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hub.broker.heap import collect_young_every, freeze_startup_heap


@pytest.fixture
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("_unfrozen")
def test_objects_alive_at_startup_leave_the_collectors_sight() -> None:
    survivor = [object() for _ in range(1000)]
    frozen = freeze_startup_heap()
    assert frozen >= len(survivor)
    assert gc.get_freeze_count() == frozen
    tracked = {id(o) for o in gc.get_objects()}
    assert id(survivor) not in tracked
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle made after the freeze is still collected
    del garbage
    assert gc.collect() >= 1


def test_young_collections_come_every_so_many_allocations() -> None:
    before = gc.get_threshold()
    try:
        collect_young_every(20_000)
        assert gc.get_threshold() == (20_000, before[1], before[2])
        collect_young_every(0)  # Python's left as they are
        assert gc.get_threshold() == (20_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)
