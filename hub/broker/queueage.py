"""The age of a queue's oldest message, for every queue type, consumer attached or not.

RabbitMQ 3.10 reports ``head_message_timestamp`` for classic queues only, and only while no
consumer holds messages; a quorum queue reports none. The age is known instead from a ledger
of what was published into the queue and when:

- whoever publishes straight into a queue counts the messages the broker confirmed
  (``LedgerWriter``, fed by ``hub.broker.publisher.Publisher``'s ``on_confirmed``) and adds
  them, every ``interval`` seconds, to the queue's running total in the ledger, with the time:
  a checkpoint ``(total, at)`` says "the first ``total`` messages were in the queue by
  ``at``". Several processes add to one total (the ledger serialises them).
- the queue's depth, ready *and* unacknowledged (``hub.broker.management``: a consumer's
  unacked messages are still in the queue), says how many of the last published are still
  there; consumers take a queue in order, so the oldest is the
  ``(total - depth + 1)``-th published, which was confirmed at the latest at the first
  checkpoint whose total reaches it (``oldest_age``). The age is a lower bound, short by at
  most one interval.

A queue that holds more than the ledger counted (messages published before the ledger began,
or by a publisher that does not count) is older than the ledger knows: its age is the ledger's
oldest checkpoint's, marked ``at_least``. A queue the ledger knows nothing of has no age.

The ledger port is implemented on the store (``hub.store.queueledger``). The fan-out feeds it
for the subscriptions' queues; the work queues, filled through exchanges, are dated from the
broker's per-queue ``publish`` count sampled at each look (``sampled_age``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from hub.broker.messages import Outgoing
from hub.errors import HubError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0  # seconds between a writer's checkpoints (the age's precision)
# RabbitMQ's sender-selected distribution headers: more routing keys (with the default
# exchange, queues) for one message; BCC is removed before delivery.
CC, BCC = "CC", "BCC"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    total: int  # messages published into the queue so far
    at: datetime  # by when they were all confirmed


@dataclass(frozen=True, slots=True)
class OldestAge:
    seconds: float
    at_least: bool = False  # the oldest message predates the ledger: older than this


class QueueLedger(Protocol):
    def add(self, counts: Mapping[str, int], at: datetime) -> None:
        """Add ``counts`` (queue -> messages confirmed) to each queue's running total, with a
        checkpoint at ``at``. Safe from several processes at once."""
        ...

    def checkpoints(self, queue: str, depth: int) -> tuple[int, list[Checkpoint]]:
        """The queue's running total, and the checkpoints that date the oldest of its last
        ``depth`` messages (at least the first at or past it, in order of total; the ledger
        may leave out the others)."""
        ...

    def forget(self, queue: str) -> None:
        """The queue was deleted: its count starts again from nothing."""
        ...


def oldest_age(total: int, depth: int, checkpoints: Sequence[Checkpoint],
               now: datetime) -> OldestAge | None:
    """The age of the oldest of the ``depth`` messages in a queue into which ``total`` were
    published, from the ledger's ``checkpoints`` (in order of total); None when the queue is
    empty or the ledger knows nothing of it."""
    if depth <= 0 or not checkpoints:
        return None
    index = total - depth + 1  # the oldest message's rank among those published
    if index < 1:
        return OldestAge(_seconds(now, checkpoints[0].at), at_least=True)
    for cp in checkpoints:
        if cp.total >= index:
            return OldestAge(_seconds(now, cp.at))
    # Only a ledger behind the depth it was given gets here (depth counted before the last
    # checkpoint was written): the newest checkpoint is the best date known.
    return OldestAge(_seconds(now, checkpoints[-1].at))


def _seconds(now: datetime, at: datetime) -> float:
    return max(0.0, (now - at).total_seconds())


class LedgerWriter:
    """Counts the messages confirmed into queues and adds them to the ledger every
    ``interval`` seconds, off the event loop. A ledger that refuses the write keeps the counts
    for the next try (dated then: their messages look younger by the delay, never older).

    ``confirmed`` is a ``Publisher`` ``on_confirmed`` callback: it counts the messages sent
    through the default exchange into the queues they name (``addressed_queues``), or into
    those ``queues_of`` says."""

    def __init__(self, ledger: QueueLedger, *, interval: float = DEFAULT_INTERVAL,
                 queues_of: Callable[[Outgoing], Sequence[str]] | None = None) -> None:
        self.ledger = ledger
        self.interval = interval
        self._queues_of = queues_of or addressed_queues
        self._counts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def confirmed(self, outgoing: Outgoing) -> None:
        counts = self._counts
        for queue in self._queues_of(outgoing):
            counts[queue] = counts.get(queue, 0) + 1

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="queue ledger writer")

    async def stop(self) -> None:
        """Write what is counted, then stop."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self._counts:
            return
        counts, self._counts = self._counts, {}
        try:
            await asyncio.to_thread(self.ledger.add, counts, datetime.now(UTC))
        except HubError as exc:
            log.warning("queue ledger not written (%s); its counts wait for the next try", exc)
            for queue, n in counts.items():
                self._counts[queue] = self._counts.get(queue, 0) + n

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            await self.flush()


def addressed_queues(outgoing: Outgoing) -> list[str]:
    """The queues a message sent through the default exchange goes to: its routing key (a
    queue's name), and those of its ``CC`` and ``BCC`` headers (RabbitMQ's sender-selected
    distribution). None for a message through another exchange (its bindings decide)."""
    if outgoing.exchange != "":
        return []
    queues = [outgoing.routing_key] if outgoing.routing_key else []
    for header in (CC, BCC):
        listed = (outgoing.headers or {}).get(header)
        if isinstance(listed, list | tuple):
            queues += [q for q in listed if isinstance(q, str) and q not in queues]
    return queues


class SampledLedger(QueueLedger, Protocol):
    def advance(self, queue: str, total: int, at: datetime) -> None:
        """Checkpoint ``total`` (a count kept elsewhere, absolute) at ``at`` if it moved."""
        ...


def sampled_age(ledger: SampledLedger, queue: str, published: int | None, depth: int,
                now: datetime) -> OldestAge | None:
    """The age of a queue filled through exchanges, which no publisher of the hub counts per
    queue: the broker's own count of what was published into it (the management API's
    ``publish``) is checkpointed at each look, and the age found as for any ledger: short by
    at most the time between two looks, and messages already there at the first look are
    dated by it (younger than they are) until they are consumed. Messages dead-lettered into
    the queue (back from a retry tier) are not in the broker's count: while some wait in it,
    the age found is an earlier message's, older than the oldest (an alert fires early)."""
    if published is not None:
        ledger.advance(queue, published, now)
    return age_of(ledger, queue, depth, now)


def age_of(ledger: QueueLedger, queue: str, depth: int, now: datetime) -> OldestAge | None:
    """The age of the oldest of the ``depth`` messages (ready and unacknowledged) in
    ``queue``, from ``ledger``."""
    total, checkpoints = ledger.checkpoints(queue, depth)
    return oldest_age(total, depth, checkpoints, now)
