"""The idempotent receiver's memory: which message ids a consumer has processed, with the
SHA-256 (hex) of the body it processed, so that identical bytes delivered again are absorbed and
the same id with other bytes is caught as a replay.

``hub.store`` implements the port for production; ``MemoryProcessedIds`` serves unit tests and
benchmarks. The consumer calls ``lookup`` once per message and ``record`` once per ack batch,
in a thread (unless the implementation says ``blocking = False``): a store that hangs must not
stop its event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol


class ProcessedIds(Protocol):
    def lookup(self, consumer: str, message_id: str) -> str | None:
        """The digest recorded for ``message_id`` by ``consumer``, or None."""
        ...

    def record(self, consumer: str, items: list[tuple[str, str]]) -> None:
        """Remember ``(message_id, digest)`` pairs as processed by ``consumer``."""
        ...


class MemoryProcessedIds:
    """In-process store, bounded: beyond ``capacity`` entries the oldest are forgotten."""

    blocking = False  # no database round trip: the consumer calls it on its event loop

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], str] = OrderedDict()

    def lookup(self, consumer: str, message_id: str) -> str | None:
        return self._seen.get((consumer, message_id))

    def record(self, consumer: str, items: Iterable[tuple[str, str]]) -> None:
        seen = self._seen
        for message_id, digest in items:
            seen[(consumer, message_id)] = digest
        while len(seen) > self.capacity:
            seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
