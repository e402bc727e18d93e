"""The last sequence applied to a destination per dossier, so an older event (one that waited
in the retry tiers while a newer one went through) is treated as already applied instead of
moving the destination's record backwards (a destination whose spec is ``ordered``).

The numbers compared are the hub's: every event of a dossier, whatever door it came through,
takes the next number of the dossier's one sequence (hub.intake.sequencing), so "not newer" means
"accepted by the hub before the last one applied". A system's own counter (``systemsequence``)
is never compared here.

The store (``hub.store.Store.last_sequence`` / ``set_sequence``) keeps it across restarts and
workers; without a store (unit tests, a store-less demo) it is kept in memory.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from hub.adapters import AdapterStore


class SequenceLog(Protocol):
    def last_sequence(self, consumer: str, dossier_code: str) -> int | None: ...

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool: ...


class MemorySequenceLog:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def last_sequence(self, consumer: str, dossier_code: str) -> int | None:
        return self._seen.get((consumer, dossier_code))

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool:
        key = (consumer, dossier_code)
        if sequence <= self._seen.get(key, -1):
            return False
        self._seen[key] = sequence
        return True


def sequence_log(store: AdapterStore | None) -> SequenceLog:
    return MemorySequenceLog() if store is None else store


class Sequencer:
    """Async face of a SequenceLog: the store's calls are blocking database round trips, run in
    a thread so they do not stall the worker's event loop."""

    def __init__(self, log: SequenceLog, consumer: str) -> None:
        self.log = log
        self.consumer = consumer
        self._in_memory = isinstance(log, MemorySequenceLog)

    async def superseded_by(self, dossier_code: str, sequence: int | None) -> int | None:
        """The last sequence applied to this dossier when it is ``sequence`` or a later one
        (the event is not to be applied); None when the event is newer, or has no sequence."""
        if sequence is None:
            return None
        last = (self.log.last_sequence(self.consumer, dossier_code) if self._in_memory
                else await asyncio.to_thread(self.log.last_sequence, self.consumer, dossier_code))
        return last if last is not None and sequence <= last else None

    async def applied(self, dossier_code: str, sequence: int | None) -> None:
        if sequence is None:
            return
        if self._in_memory:
            self.log.set_sequence(self.consumer, dossier_code, sequence)
        else:
            await asyncio.to_thread(self.log.set_sequence, self.consumer, dossier_code, sequence)
