"""Keeping the garbage collector's full collections short in a long-running worker.

A full (generation 2) collection walks every tracked object in the process: after the imports,
the keys, the settings and the consumer's tasks are in place that is most of the process's
objects, and the collection stops the event loop while it walks them, long enough to set the
tail latency of every message in flight. None of those objects will ever be garbage, so moving
them out of the collector's sight once the worker is set up makes later full collections walk
only what the worker allocated since. What it spares: docs/performance.md#frozen-start-up-heap.
"""

from __future__ import annotations

import gc


def collect_young_every(allocations: int) -> None:
    """Run a young-generation collection every ``allocations`` allocations instead of
    Python's 700 (0: leave Python's thresholds as they are). The older generations keep their
    ratios, so full collections come as rarely relative to young ones as before."""
    if allocations > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(allocations, middle, old)


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now to the permanent generation (never
    scanned again). Call it once a worker is set up, before it takes traffic; returns how many
    objects were frozen. The objects stay alive, as they would anyway."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
