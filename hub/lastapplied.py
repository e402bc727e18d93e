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

from hub.adapters import AdapterStore, Event
from hub.envelope import Envelope
from hub.recorder import report_skip


class SequenceLog(Protocol):
    def last_sequence(self, consumer: str, dossier_code: str) -> int | None: ...

    def last_sequences(self, consumer: str, dossier_codes: list[str]) -> dict[str, int]: ...

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool: ...


class MemorySequenceLog:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def last_sequence(self, consumer: str, dossier_code: str) -> int | None:
        return self._seen.get((consumer, dossier_code))

    def last_sequences(self, consumer: str, dossier_codes: list[str]) -> dict[str, int]:
        seen = self._seen
        return {code: seen[(consumer, code)] for code in dossier_codes
                if (consumer, code) in seen}

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
    a thread so they do not stall the worker's event loop. The reads of the deliveries that
    ask meanwhile go in one query and one thread hop (docs/performance.md, "Sequences read
    together"); a read asked while a query runs waits for the next one, so it sees every
    sequence committed before it asked (a dossier's previous event included)."""

    def __init__(self, log: SequenceLog, consumer: str) -> None:
        self.log = log
        self.consumer = consumer
        self._in_memory = isinstance(log, MemorySequenceLog)
        self._reads: dict[str, list[asyncio.Future[int | None]]] = {}
        self._reading: asyncio.Future[None] | None = None

    async def superseded_by(self, dossier_code: str, sequence: int | None) -> int | None:
        """The last sequence applied to this dossier when it is ``sequence`` or a later one
        (the event is not to be applied); None when the event is newer, or has no sequence."""
        if sequence is None:
            return None
        last = (self.log.last_sequence(self.consumer, dossier_code) if self._in_memory
                else await self._read(dossier_code))
        return last if last is not None and sequence <= last else None

    async def _read(self, dossier_code: str) -> int | None:
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reads.setdefault(dossier_code, []).append(waiter)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_all())
        return await waiter

    async def _read_all(self) -> None:
        while self._reads:
            batch, self._reads = self._reads, {}
            try:
                found = await asyncio.to_thread(self.log.last_sequences, self.consumer,
                                                list(batch))
            except Exception as exc:  # each reader gets the failure (a store down: re-run)
                for waiters in batch.values():
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                continue
            for code, waiters in batch.items():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(found.get(code))

    async def applied(self, dossier_code: str, sequence: int | None) -> None:
        if sequence is None:
            return
        if self._in_memory:
            self.log.set_sequence(self.consumer, dossier_code, sequence)
        else:
            await asyncio.to_thread(self.log.set_sequence, self.consumer, dossier_code, sequence)


class AppliedSequences:
    """An ordered destination's side of the hub's per-dossier sequence (one space for every
    door: REST, SOAP, callbacks, adapters' events). An event not newer than the last one
    applied is not sent, and never in silence: ``hub.recorder.report_skip`` logs a WARNING,
    counts it (``lienthong_skipped_total``) and enters it in the dossier's timeline. Once the
    destination has an event, its sequence is recorded through the consumer (``Event.record``),
    so a store that refuses the write makes the consumer retry the write, never the call."""

    def __init__(self, store: AdapterStore | None, destination: str, title: str) -> None:
        self.store, self.destination, self.title = store, destination, title
        self.sequencer = Sequencer(sequence_log(store), destination)

    async def superseded(self, env: Envelope, code: str, **detail: object) -> bool:
        """True when the destination already has this event or a later one of the dossier:
        the event is then not sent, and the skip is reported."""
        last = await self.sequencer.superseded_by(code, env.sequence)
        if last is None or env.sequence is None:
            return False
        if env.sequence == last:
            reason = "already_applied"
            note = (f"sequence {env.sequence} was already applied to {self.title} (a "
                    "redelivery of an event sent before)")
        else:
            reason = "stale_sequence"
            note = (f"sequence {env.sequence} is older than sequence {last}, already applied "
                    f"to {self.title}: sending it would move {self.title}'s record backwards")
        await asyncio.to_thread(report_skip, self.store, self.destination, env, reason, note,
                                sequence=env.sequence, last_applied=last, **detail)
        return True

    async def applied(self, event: Event, code: str) -> None:
        sequence = event.envelope.sequence
        if sequence is None:
            return
        if self.store is not None:
            event.record(lambda tx: tx.sequence_keep(self.destination, code, sequence))
        else:
            await self.sequencer.applied(code, sequence)
