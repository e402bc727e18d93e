"""Consuming work queues: the idempotent receiver around a handler.

Per delivery: decode the envelope -> processed-id check (identical bytes again: acknowledged
without running the handler; the same id with other bytes: ``client.replayed_id``) -> verify the
signature -> ``handler(delivery)`` -> record what the handler asked to record
(``Delivery.record``) -> publish what it returned (canonical events signed here with the
worker's key: handlers hold none) and wait for the confirms -> record the id as processed ->
acknowledge. A failure publishes a copy to the next retry tier, the dead letters or
the invalid messages (``hub.broker.retry`` decides which) and acknowledges the original only
once the broker has confirmed that copy. Results the broker refuses (a failover, a full queue)
are not a failure of the handler, whose call is made: they are published again until confirmed.

Acknowledgements are batched (``multiple=True``, every ``ack_batch`` messages or
``ack_interval`` seconds), and processed ids are recorded in the same batches, just before the
acks they cover. A message whose id is in progress on this consumer waits for that one to
finish, so a broker redelivery after a lost connection (or the same message published twice)
never runs the handler twice at once.

Handlers run concurrently up to ``concurrency``. An *ordered* consumer keeps the order per
dossier, not per queue (``hub.broker.lanes``): deliveries are put in a lane keyed by their
dossier (the envelope's subject); one lane's deliveries run one at a time in delivery order,
different lanes concurrently. A dossier whose message goes to a retry tier is held: its later
messages are sent behind it to the same tier (header ``lt-held-behind``, not counted as an
attempt) and come back in order; the held groups are kept in the store, so a restarted worker
goes on holding.

One consumer may take several queues (the partitions of a destination, ``hub.broker
.topology``), on one channel, sharing its lanes and its concurrency. Each partition queue has a
single active consumer; ``home`` queues are registered at once, the others once their home
process holds them (as standby) or after ``Settings.standby_delay`` without any consumer, so
that the partitions spread over worker processes and a standby takes over a partition whose
process died. Former work queues of the destination
(``drain_first``: left by another partition count) are consumed first, and the partitions only
once those have no ready message left.

The store (``store``): a result that could not be recorded is never obtained again by calling
anyone. What a handler records after its call goes through ``Delivery.record``: the consumer
runs those writes (many deliveries' in one transaction) and, when the store refuses them
(unreachable, read-only, full), keeps the results in memory and retries the *writes* until the
store takes them. Meanwhile it dispatches no new delivery, so nothing else is called, and it
probes the store until it can write again. A store failure raised by the handler itself (a
read or a write before its call) runs the handler again once the store is back, without
counting an attempt: a handler must record what follows its call through ``Delivery.record``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import pika
from pika.exceptions import AMQPError
from pika.spec import Basic

from hub import headers as h
from hub.broker.acks import AckTracker
from hub.broker.connection import Backoff, BrokerNodes, Link, broker_urls, sleep_unless
from hub.broker.lanes import HeldGroup, Lanes
from hub.broker.messages import Delivery, EnvelopeSigner, Outgoing
from hub.broker.metrics import DEAD_LETTERS, RETRIES, ConsumerMetrics
from hub.broker.names import Names
from hub.broker.processed import ProcessedIds
from hub.broker.publisher import Publisher, PublishFailed, Unroutable
from hub.broker.retry import (
    Park,
    Retry,
    attempt_of,
    decide,
    describe,
    held_headers,
    parked_headers,
    retry_headers,
)
from hub.broker.topology import Topology
from hub.envelope import CONTENT_TYPE, Envelope
from hub.errors import BrokerUnavailable, ConfigError, InvalidMessage

log = logging.getLogger(__name__)

# What a handler returns: the messages the delivery causes (published before it is acked),
# as broker messages, or as canonical events that the consumer signs for the events exchange.
Results = Sequence[Outgoing | Envelope] | Outgoing | None
# Async or plain.
Handler = Callable[[Delivery], Awaitable[Results] | Results]
# One write a handler asked for (``Delivery.record``): the store, and what to do in its unit of
# work.
Write = tuple[Any, Callable[[Any], object]]
# Writes of many deliveries go in one transaction, up to this many deliveries.
MAX_WRITE_BATCH = 500
# How often a consumer draining former queues looks whether they are empty, and one waiting to
# stand by for other processes' partitions whether they have their active consumer.
DRAIN_POLL = 0.5
STANDBY_POLL = 0.25
_PARTITION = re.compile(r"\.p\d+$")


class Verifier(Protocol):
    """What the consumer needs of ``hub.signing.Verifier``."""

    def verify(self, body: bytes, token: str, env: Envelope, *, attempt: int = 0) -> Any: ...


class ConsumerStore(Protocol):
    """What the consumer needs of ``hub.store.Store``: a probe, which failures mean "cannot
    write now", and the held dossiers of its queues."""

    def probe(self) -> str: ...

    def is_failure(self, error: BaseException) -> bool: ...

    def held_load(self, queue: str) -> dict[str, dict[str, Any]]: ...

    def held_save(self, queue: str, dossier_code: str, state: dict[str, Any]) -> None: ...

    def held_release(self, queue: str, dossier_code: str) -> None: ...


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0
    handled: int = 0  # handler returned and its results were confirmed
    duplicates: int = 0  # absorbed by the processed-id check
    retried: int = 0
    dead: int = 0
    invalid: int = 0
    abandoned: int = 0  # delivered on a connection lost before they were finished
    reconnects: int = 0
    held: int = 0  # sent to a retry tier behind an earlier message of their dossier
    store_pauses: int = 0  # times deliveries stopped because the store could not be written
    rewrites: int = 0  # recordings retried after the store refused them (never a new call)
    reruns: int = 0  # deliveries run again after a store failure before any call
    republished: int = 0  # results published again after the broker refused them


class _StoreDown(Exception):
    """The delivery met a store that cannot be written before anyone was called: it runs
    again once the store is back."""


class _Inbound:
    """One delivery as received, before and after decoding."""

    __slots__ = (
        "attempt",
        "body",
        "decode_error",
        "digest",
        "envelope",
        "exchange",
        "generation",
        "headers",
        "key",
        "message_id",
        "properties",
        "queue",
        "redelivered",
        "routing_key",
        "settled",
        "tag",
        "tracked",
    )

    def __init__(
        self, generation: int, queue: str, method: Basic.Deliver,
        properties: pika.BasicProperties, body: bytes,
    ) -> None:
        self.generation = generation
        self.queue = queue
        self.tag: int = method.delivery_tag
        self.exchange: str = method.exchange
        self.routing_key: str = method.routing_key
        self.redelivered: bool = bool(method.redelivered)
        self.properties = properties
        self.body = body
        self.headers: dict[str, Any] = properties.headers or {}
        self.attempt = attempt_of(self.headers)
        self.message_id: str = properties.message_id or ""
        self.envelope: Envelope | None = None
        self.decode_error: Exception | None = None
        self.key: str | None = None  # the lane: the dossier, for an ordered consumer
        self.digest: str | None = None
        self.tracked = False  # registered in the consumer's in-progress ids
        self.settled = False  # acked, left for redelivery or abandoned


class SharedEnvelopes:
    """The envelopes of bodies that several consumers of one process receive, decoded once:
    the timeline recorder and the subscriptions' fan-out each take every event, the same bytes,
    and decoding an envelope (JSON with its duplicate-member check, then its fields' checks) was
    a consumer's largest cost after the signature (docs/performance.md#envelopes-decoded-once-
    for-the-recorder-and-the-fan-out). The first of ``readers`` consumers to receive a body
    decodes it; the others get the same ``Envelope`` object, and the entry is dropped once all
    ``readers`` had it (or, oldest first, beyond ``limit`` bodies: a reader far behind, or
    bodies only one of them receives, decode their own).

    An Envelope is frozen, but its ``data`` and ``extensions`` are plain dicts: sharing is only
    for consumers whose handlers never change them. The recorder and the fan-out only read
    (the fan-out's projections are deep copies, ``hub.subscriptions.access.without``); an
    adapter's worker decodes its own, since a handler of an adapter changing ``data`` would
    otherwise change what the recorder keeps and what the fan-out signs and publishes. A body
    that does not decode is not kept: each consumer raises its own error."""

    def __init__(self, readers: int, limit: int = 1024) -> None:
        self.readers = readers
        self.limit = limit
        # body -> [its envelope, readers still to come]; in the order they were decoded.
        self._bodies: dict[bytes, list[Any]] = {}

    def decode(self, body: bytes) -> Envelope:
        entry = self._bodies.get(body)
        if entry is not None:
            if entry[1] <= 1:
                del self._bodies[body]
            else:
                entry[1] -= 1
            env: Envelope = entry[0]
            return env
        env = Envelope.from_bytes(body)
        if self.readers > 1:
            if len(self._bodies) >= self.limit:
                del self._bodies[next(iter(self._bodies))]
            self._bodies[body] = [env, self.readers - 1]
        return env

    def __len__(self) -> int:
        return len(self._bodies)


class _Pending:
    """Writes of one delivery waiting for the store."""

    __slots__ = ("done", "writes")

    def __init__(self, writes: list[Write], done: asyncio.Future[None]) -> None:
        self.writes = writes
        self.done = done


class Consumer:
    def __init__(
        self,
        settings: Any,
        queue: str | Sequence[str],
        handler: Handler,
        *,
        verifier: Verifier | None = None,
        processed: ProcessedIds | None = None,
        name: str | None = None,
        publisher: Publisher | None = None,
        amqp_url: str | Sequence[str] | None = None,
        ordered: bool = False,
        concurrency: int | None = None,
        drain_timeout: float = 30.0,
        store: ConsumerStore | None = None,
        destination: str | None = None,
        home: Sequence[str] | None = None,
        drain_first: Callable[[], Sequence[str]] | None = None,
        on_confirmed: Callable[[Outgoing], None] | None = None,
        signer: EnvelopeSigner | None = None,
        envelopes: SharedEnvelopes | None = None,
    ) -> None:
        self.settings = settings
        # Bodies decoded once for this consumer and others of the process (SharedEnvelopes
        # says for which consumers that is safe).
        self.envelopes = envelopes
        self._decode = envelopes.decode if envelopes is not None else Envelope.from_bytes
        # Signs the canonical events a handler returns (an adapter holds no key).
        self.signer = signer
        self.queues = [queue] if isinstance(queue, str) else list(queue)
        if not self.queues:
            raise ValueError("a consumer needs at least one queue")
        self.queue = self.queues[0]
        self.handler = handler
        self.verifier = verifier
        self.processed = processed
        self.store = store
        self.name = name or self.queue
        # The broker's nodes: a lost connection is made again to the next one.
        self.nodes = BrokerNodes(amqp_url or broker_urls(settings))
        self.names = Names(settings.name_prefix)
        # What the metrics and the retry log call the queue: its destination for a work queue.
        work = self.names.work("")
        self.destination = destination or (
            _PARTITION.sub("", self.queue.removeprefix(work)) if self.queue.startswith(work)
            else self.name)
        self.ordered = ordered
        default = int(getattr(settings, "worker_concurrency", 0) or 0) if ordered else 0
        self.concurrency = max(1, concurrency or default or int(settings.prefetch))
        # Each handler slot needs a delivery to work on: the window is at least that wide.
        self.prefetch = max(int(settings.prefetch), self.concurrency)
        self.home = list(self.queues if home is None else home)
        self.standby_delay = float(getattr(settings, "standby_delay", 0.0))
        self._drain_first = drain_first
        self.drain_timeout = drain_timeout
        self.stats = ConsumerStats()
        self.metrics = ConsumerMetrics(self.name)
        # Set while the consumer is registered with the broker (tests wait on it).
        self.consuming = asyncio.Event()
        self._retry_tiers = list(settings.retry_tiers)
        self._ack_batch = max(1, int(settings.ack_batch))
        self._ack_interval = float(settings.ack_interval)
        self._publisher = publisher
        self._own_publisher = publisher is None
        self._on_confirmed = on_confirmed  # given to its own publisher (hub.broker.queueage)
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_max)
        self._link: Link | None = None
        self._generation = 0
        self._tracker = AckTracker(self.prefetch // 2)
        self._ready: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._lanes: Lanes[_Inbound] = Lanes()
        self._outstanding = 0  # received and not finished (acked, abandoned or left)
        self._idle = asyncio.Event()
        self._idle.set()
        self._unflushed = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._to_record: list[tuple[str, str]] = []
        self._recorded_waiters: list[str] = []
        # Flushed, waiting for the thread that records processed ids: the batches, and the acks
        # (channel generation, multiple-ack tag, single tags) they cover, in order.
        self._records: list[tuple[list[tuple[str, str]], list[str]]] = []
        self._acks: list[tuple[int, int, list[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Processed-id lookups waiting for the next batch query, by message id.
        self._lookups: dict[str, list[asyncio.Future[str | None]]] = {}
        self._looking: asyncio.Task[None] | None = None
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer_tags: dict[str, str] = {}
        self._registering: set[asyncio.Task[None]] = set()
        self._draining: set[str] = set()  # former queues consumed before the partitions
        self._in_flight: dict[str, int] = {}  # per queue, received and not finished
        # Held dossiers per queue, loaded from the store once per connection (generation).
        self._held: dict[str, dict[str, HeldGroup]] = {}
        self._held_loaded: dict[str, asyncio.Task[None]] = {}
        # The store gate: set while the store takes writes.
        self._writable = asyncio.Event()
        self._writable.set()
        self._writes: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._writer_failing = False
        self._recovery: asyncio.Task[None] | None = None

    @classmethod
    def for_destination(
        cls, settings: Any, topology: Topology, destination: str, handler: Handler, *,
        process: tuple[int, int] = (0, 1), **kw: Any,
    ) -> Consumer:
        """The consumer of a destination's work queues, as the topology resolves it: ordered
        or not, its concurrency, its partitions. ``process``: (i, n), this process's place
        among the destination's n worker processes; it registers at once on the partitions p
        with p % n == i, on the others as standby."""
        dest = topology.destination(destination)
        queues = topology.work_queues(dest.name)
        index, count = process
        home = [q for p, q in enumerate(queues) if count <= 1 or p % count == index % count]
        kw.setdefault("name", dest.name)
        kw.setdefault("concurrency", dest.concurrency)
        return cls(settings, queues, handler, ordered=dest.ordered, destination=dest.name,
                   home=home, **kw)

    # -- running -------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in the background of the current loop; ``await stop()`` ends it."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.run(self._stop), name=f"consumer {self.name}")
        return self._task

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            await self._task

    async def wait_consuming(self, timeout: float = 10.0) -> None:
        """Wait until registered with the broker; a run that failed raises here."""
        waiter = asyncio.create_task(self.consuming.wait())
        watched: set[asyncio.Future[Any]] = {waiter}
        if self._task is not None:
            watched.add(self._task)
        done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task is not None and self._task in done:
            self._task.result()
            raise BrokerUnavailable(f"consumer {self.name} stopped before consuming")
        if not self.consuming.is_set():
            raise BrokerUnavailable(
                f"consumer {self.name} is not consuming {self.queue!r} after {timeout}s; does the "
                "queue exist (lienthong topology apply)?"
            )

    @property
    def registered(self) -> list[str]:
        """The queues this consumer is registered on now, active or standby (the broker's
        consumer count of a single-active-consumer queue counts the active one only)."""
        return list(self._consumer_tags)

    @property
    def writable(self) -> bool:
        """False while the store refuses writes (deliveries are paused)."""
        return self._writable.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what was received, flush the acks and
        disconnect."""
        publisher = self._publisher
        if publisher is None:
            publisher = self._publisher = Publisher(
                self.nodes.urls, self.settings, name=f"{self.name} publisher",
                on_confirmed=self._on_confirmed,
            )
            await publisher.start()
        workers = [
            asyncio.create_task(self._work(), name=f"{self.name} worker {i}")
            for i in range(self.concurrency)
        ]
        try:
            await self._supervise(stop)
        finally:
            await self._shutdown(workers)

    async def _supervise(self, stop: asyncio.Event) -> None:
        stopped = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                link = await self._connect(stop)
                if link is None:
                    continue
                watched: set[asyncio.Future[Any]] = {stopped, link.lost}
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if link.lost.done():
                    self._on_lost(link)
                    if not stop.is_set():
                        await sleep_unless(stop, self._backoff.next())
        finally:
            stopped.cancel()

    async def _connect(self, stop: asyncio.Event) -> Link | None:
        link: Link | None = None
        try:
            first: list[str] = []
            if self._drain_first is not None:
                first = [q for q in await asyncio.to_thread(self._drain_first)
                         if q not in self.queues]
            link = await Link.open(self.nodes, self.name)
            await link.call(link.channel.basic_qos, prefetch_count=self.prefetch)
            self._generation += 1
            generation = self._generation
            self._tracker = AckTracker(self.prefetch // 2)
            self._link = link
            self._consumer_tags = {}
            self._held_loaded = {}
            # The broker cancels a consumer whose queue is deleted: start again from scratch.
            link.channel.add_on_cancel_callback(lambda frame: link.close() if link else None)
            self._draining = set(first)
            if first:
                log.warning("%s: draining the former work queue(s) %s before %s", self.name,
                            ", ".join(first), ", ".join(self.queues))
                for queue in first:
                    await self._register(link, generation, queue)
                self._later(self._after_drain(link, generation))
            else:
                await self._register_partitions(link, generation)
        except (BrokerUnavailable, AMQPError) as exc:
            if link is not None:
                self._on_lost(link)
            log.warning("%s: cannot consume %r: %s", self.name, self.queue, exc)
            await sleep_unless(stop, self._backoff.next())
            return None
        self._backoff.reset()
        self.consuming.set()
        return link

    async def _register(self, link: Link, generation: int, queue: str) -> None:
        frame = await link.call(
            link.channel.basic_consume,
            queue,
            lambda ch, m, p, b: self._on_message(generation, queue, m, p, b),
            auto_ack=False,
        )
        self._consumer_tags[queue] = frame.method.consumer_tag

    async def _register_partitions(self, link: Link, generation: int) -> None:
        home = [q for q in self.queues if q in self.home]
        standby = [q for q in self.queues if q not in self.home]
        for queue in home:
            await self._register(link, generation, queue)
        if standby:
            self._later(self._register_standby(link, generation, standby))

    async def _register_standby(self, link: Link, generation: int, queues: list[str]) -> None:
        """Register on partitions that are another process's home, behind it: once one has
        an active consumer (its home process), as standby; if it has none for
        ``standby_delay`` seconds (that process is not running), at once, so its dossiers are
        not left waiting. The broker counts only the active consumer of such a queue, which is
        what tells a partition taken from one left alone."""
        pending = list(queues)
        waited = 0.0
        with contextlib.suppress(BrokerUnavailable, AMQPError):
            while pending and generation == self._generation and link.is_open:
                for queue in list(pending):
                    frame = await link.call(link.channel.queue_declare, queue, passive=True)
                    if frame.method.consumer_count > 0 or waited >= self.standby_delay:
                        await self._register(link, generation, queue)
                        pending.remove(queue)
                if pending:
                    await asyncio.sleep(STANDBY_POLL)
                    waited += STANDBY_POLL

    async def _after_drain(self, link: Link, generation: int) -> None:
        """Register on the partitions once the former queues have no ready message and
        nothing of theirs is in progress here: their messages are older than any of the
        partitions'."""
        with contextlib.suppress(BrokerUnavailable, AMQPError):
            while generation == self._generation and link.is_open:
                ready = 0
                for queue in sorted(self._draining):
                    frame = await link.call(link.channel.queue_declare, queue, passive=True)
                    ready += int(frame.method.message_count) + self._in_flight.get(queue, 0)
                if ready == 0:
                    log.warning("%s: former work queue(s) %s drained; consuming %s", self.name,
                                ", ".join(sorted(self._draining)), ", ".join(self.queues))
                    await self._register_partitions(link, generation)
                    return
                await asyncio.sleep(DRAIN_POLL)

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._registering.add(task)
        task.add_done_callback(self._registering.discard)

    def _on_lost(self, link: Link) -> None:
        self.consuming.clear()
        if self._link is link:
            self._link = None
            self._generation += 1  # what was delivered on it can no longer be acked
            self.stats.reconnects += 1
            log.warning("%s: connection lost (%r); reconnecting", self.name, link.lost.result()
                        if link.lost.done() else None)
        link.close()

    def _on_message(
        self, generation: int, queue: str, method: Basic.Deliver,
        properties: pika.BasicProperties, body: bytes,
    ) -> None:
        self.stats.received += 1
        self._outstanding += 1
        self._in_flight[queue] = self._in_flight.get(queue, 0) + 1
        self._idle.clear()
        inbound = _Inbound(generation, queue, method, properties, body)
        if self.ordered:
            # The lane is the dossier: the envelope is read now (and kept for the handler).
            try:
                inbound.envelope = self._decode(body)
                inbound.key = inbound.envelope.subject or None
            except Exception as exc:  # undecodable: no lane; the handler never sees it
                inbound.decode_error = exc
        if self._lanes.admit(inbound.key, inbound):
            self._ready.put_nowait(inbound)

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        link = self._link
        for task in list(self._registering):
            task.cancel()
        if link is not None and link.is_open:
            # No new deliveries; what was already sent our way is still handled below.
            with contextlib.suppress(BrokerUnavailable, AMQPError):
                for tag in list(self._consumer_tags.values()):
                    await link.call(link.channel.basic_cancel, tag)
        try:
            await asyncio.wait_for(self._idle.wait(), self.drain_timeout)
        except TimeoutError:
            log.warning(
                "%s: %d messages still in progress after %ss; the broker will redeliver them",
                self.name, self._outstanding, self.drain_timeout,
            )
        self._flush()
        if self._flusher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), self.drain_timeout)
            except TimeoutError:
                log.warning("%s: processed ids not recorded after %ss; their messages will be "
                            "redelivered and absorbed as duplicates", self.name, self.drain_timeout)
        extra = [t for t in (self._writer, self._recovery, self._flusher, self._looking)
                 if t is not None]
        for task in (*workers, *extra, *self._held_loaded.values()):
            task.cancel()
        await asyncio.gather(*workers, *extra, *self._held_loaded.values(),
                             return_exceptions=True)
        self.consuming.clear()
        if self._link is not None:
            await self._link.aclose()
            self._link = None
        if self._own_publisher and self._publisher is not None:
            await self._publisher.close()
            self._publisher = None

    # -- one message ---------------------------------------------------------------------------

    async def _work(self) -> None:
        ready = self._ready
        while True:
            inbound = await ready.get()
            try:
                await self._run(inbound)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill the worker
                log.exception("%s: unexpected failure handling a delivery", self.name)
                self._leave(inbound)
            finally:
                following = self._lanes.done(inbound.key)
                if following is not None:
                    ready.put_nowait(following)

    async def _run(self, inbound: _Inbound) -> None:
        while True:
            if inbound.generation != self._generation:
                # Its connection is gone, so it cannot be acked: the broker redelivers it.
                self.stats.abandoned += 1
                self._release(inbound)
                return
            if not self._writable.is_set():
                # Nothing is called while the store cannot record what it answers.
                await self._writable.wait()
                continue
            try:
                await self._process(inbound)
                return
            except _StoreDown:
                self.stats.reruns += 1
                continue

    async def _process(self, inbound: _Inbound) -> None:
        group: HeldGroup | None = None
        try:
            if self.ordered and inbound.key is not None and inbound.envelope is not None:
                group = (await self._groups(inbound.queue)).get(inbound.key)
                if group is not None:
                    handle, changed = group.arrive(inbound.envelope.id,
                                                   inbound.envelope.sequence)
                    if not handle:
                        if changed:
                            await self._save(group)
                        await self._send_behind(inbound, group)
                        return
            stage = self.metrics.stage
            started = time.perf_counter()
            delivery = await self._admit(inbound)
            verified = time.perf_counter()
            stage["verify"].observe(verified - started)
            if delivery is None:
                # Already handled: acked as a duplicate, once its dossier's group (if it was
                # the message the group waited on) is told.
                if group is not None and group.settle(inbound.message_id, None):
                    await self._save(group)
                self.stats.duplicates += 1
                self.metrics.count(_type(inbound), "duplicate")
                self._complete(inbound, success=False)
                return
            recording: list[Write] | None = [] if self.store is not None else None
            delivery.recording = recording
            try:
                result = self.handler(delivery)
                if inspect.isawaitable(result):
                    result = await result
            finally:  # a failed call took its time too
                handled = time.perf_counter()
                stage["handle"].observe(handled - verified)
            if recording:
                # The call is made: from here on only the writes are retried, never the call.
                await self._record(recording)
                stage["record"].observe(time.perf_counter() - handled)
            outputs = self._outgoing(result)
            publisher = self._publisher
            assert publisher is not None
            futures = [publisher.publish_nowait(o) for o in outputs]
        except _StoreDown:
            self._untrack(inbound)
            raise
        except Exception as exc:  # every failure is routed by its class
            if self._store_failure(exc):
                self._untrack(inbound)
                raise _StoreDown from exc
            await self._fail(inbound, exc, group)
            return
        await self._finish(inbound, outputs, futures, group)

    def _outgoing(self, result: Results) -> Sequence[Outgoing]:
        """What a handler returned, as messages: its canonical events signed (after its
        recordings ran, which may have numbered them) for the events exchange."""
        if isinstance(result, Outgoing):
            return (result,)
        if not result:
            return ()
        return [out if isinstance(out, Outgoing) else self._signed(out) for out in result]

    def _signed(self, env: Envelope) -> Outgoing:
        if self.signer is None:
            raise ConfigError(
                f"{self.name}: its handler returned event {env.id} to publish, but the consumer "
                "was built without a signer; give it signer= (the hub's, hub.runtime"
                ".hub_signer)", field="signer")
        return Outgoing.signed(env, self.signer, self.names.events)

    async def _admit(self, inbound: _Inbound) -> Delivery | None:
        """Decode, deduplicate and verify; None when the message is a duplicate (to ack)."""
        if inbound.decode_error is not None:
            raise inbound.decode_error
        env = inbound.envelope or self._decode(inbound.body)
        inbound.envelope = env
        inbound.message_id = env.id
        processed = self.processed
        if processed is not None:
            digest = hashlib.sha256(inbound.body).hexdigest()
            inbound.digest = digest
            # Another copy of this id in progress here: let it finish (recorded or failed).
            while (earlier := self._in_progress.get(env.id)) is not None:
                await asyncio.shield(earlier)
            # Claimed before the lookup is awaited, so a copy arriving meanwhile waits above.
            self._in_progress[env.id] = asyncio.get_running_loop().create_future()
            inbound.tracked = True
            known = await self._lookup(env.id)
            if known is not None:
                if known == digest:
                    return None
                raise InvalidMessage(
                    f"message id {env.id} was already processed with a different body; a "
                    "message id names one message only: send a new id",
                    code="client.replayed_id",
                    field="id",
                )
        signer = None
        if self.verifier is not None:
            token = inbound.headers.get(h.SIGNATURE)
            if isinstance(token, bytes):
                token = token.decode(errors="replace")
            if not token:
                raise InvalidMessage(
                    f"no {h.SIGNATURE} header; every message must carry its sender's detached JWS",
                    code="client.missing_signature",
                    field=h.SIGNATURE,
                )
            signer = self.verifier.verify(inbound.body, token, env, attempt=inbound.attempt)
        return Delivery(
            body=inbound.body,
            envelope=env,
            headers=inbound.headers,
            queue=inbound.queue,
            exchange=inbound.exchange,
            routing_key=inbound.routing_key,
            redelivered=inbound.redelivered,
            attempt=inbound.attempt,
            delivery_tag=inbound.tag,
            message_id=env.id,
            signer=signer,
        )

    async def _finish(
        self, inbound: _Inbound, outputs: Sequence[Outgoing],
        futures: list[asyncio.Future[None]], group: HeldGroup | None,
    ) -> None:
        """The handler's call is made: results the broker refuses (a queue's leader lost in a
        failover, a full queue) are published again until confirmed, and the input is acked
        only then. Sending the input to a retry tier instead would call the system again."""
        refused: list[Outgoing] = []
        started = time.perf_counter()
        if len(futures) == 1:
            try:
                await futures[0]
            except PublishFailed:
                refused = list(outputs)
        elif futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            for output, result in zip(outputs, results, strict=True):
                if isinstance(result, PublishFailed):
                    refused.append(output)
                elif isinstance(result, BaseException):
                    raise result
        if futures:
            self.metrics.stage["confirm"].observe(time.perf_counter() - started)
        if refused:
            self.stats.republished += len(refused)
            await asyncio.gather(*(self._publish_result(inbound, o) for o in refused))
        if group is not None and group.settle(inbound.message_id, None):
            await self._save(group)
        self._complete(inbound, success=True)

    async def _publish_result(self, inbound: _Inbound, result: Outgoing) -> None:
        """Publish a handler's result until the broker confirms it, even when the input's own
        channel is lost meanwhile: its id is recorded as processed once this returns, so the
        broker's redelivery of the input is acked as a duplicate instead of handled again."""
        backoff = Backoff(self.settings.reconnect_initial, self.settings.reconnect_max)
        publisher = self._publisher
        assert publisher is not None
        while True:
            try:
                await publisher.publish(result)
                return
            except Unroutable as exc:
                # Routes nowhere until the topology changes: parked in the dead letters with
                # why, where an operator sees it and can replay it.
                result = self._parked_result(inbound, result, exc)
                log.error("%s: result %s of message %s routes nowhere (%s); parked in %s",
                          self.name, result.message_id, inbound.message_id, exc,
                          result.routing_key)
            except PublishFailed as exc:
                log.warning("%s: the broker refused result %s of message %s to %s (%s); "
                            "publishing it again, the handler is not run again", self.name,
                            result.message_id, inbound.message_id, result.routing_key, exc)
                await asyncio.sleep(backoff.next())

    def _parked_result(self, inbound: _Inbound, result: Outgoing, error: PublishFailed,
                       ) -> Outgoing:
        code, message = describe(error)
        decision = Park(self.names.dead, code,
                        f"a result of message {inbound.message_id} routes nowhere: {message}",
                        message)
        self.stats.dead += 1
        DEAD_LETTERS.labels(self.destination, "dead", code).inc()
        return replace(result, exchange="", routing_key=decision.queue, headers=parked_headers(
            result.headers, decision, failed_attempt=0, parked_by=self.name,
            exchange=result.exchange, routing_key=result.routing_key, now=datetime.now(UTC)))

    async def _fail(self, inbound: _Inbound, error: Exception, group: HeldGroup | None) -> None:
        decision = decide(error, inbound.attempt, self.names, self._retry_tiers)
        now = datetime.now(UTC)
        exchange = inbound.exchange
        routing_key = inbound.routing_key
        code, message = describe(error)
        if isinstance(decision, Retry):
            headers = retry_headers(
                inbound.headers,
                decision,
                failed_attempt=inbound.attempt,
                code=code,
                message=message,
                return_to=inbound.queue,
                exchange=exchange,
                routing_key=routing_key,
                now=now,
            )
        else:
            headers = parked_headers(
                inbound.headers,
                decision,
                failed_attempt=inbound.attempt,
                parked_by=self.name,
                exchange=exchange,
                routing_key=routing_key,
                now=now,
            )
            log.warning("%s: message %s parked in %s: %s (%s)", self.name, inbound.message_id,
                        decision.queue, decision.reason, decision.code)
        await self._hold_on_failure(inbound, decision, group)
        props = inbound.properties
        copy = Outgoing(
            body=inbound.body,
            exchange="",
            routing_key=decision.queue,
            message_id=inbound.message_id,
            type=props.type or "",
            headers=headers,
            app_id=props.app_id,
            content_type=props.content_type or CONTENT_TYPE,
            timestamp=props.timestamp,
        )
        if not await self._publish_copy(inbound, copy):
            self._leave(inbound)
            return
        if isinstance(decision, Retry):
            self.stats.retried += 1
            self.metrics.count(_type(inbound), "retried")
            # Once the broker has the copy: the log and the counter say what will happen.
            tier = inbound.attempt
            RETRIES.labels(self.destination, str(tier), code).inc()
            log.info(
                "retry: destination %s, message %s, attempt %d failed with %s (%s); to retry "
                "tier %d (%s), back in %ss", self.destination, inbound.message_id,
                inbound.attempt, code, message, tier, decision.queue, decision.delay,
                extra={"destination": self.destination, "tier": tier, "reason_code": code,
                       "message_id": inbound.message_id},
            )
        else:
            invalid = decision.queue == self.names.invalid
            if invalid:
                self.stats.invalid += 1
            else:
                self.stats.dead += 1
            self.metrics.count(_type(inbound), "invalid" if invalid else "dead")
            DEAD_LETTERS.labels(self.destination, "invalid" if invalid else "dead",
                                decision.code).inc()
        self._complete(inbound, success=False)

    async def _hold_on_failure(
        self, inbound: _Inbound, decision: Retry | Park, group: HeldGroup | None,
    ) -> None:
        """An ordered dossier's message failed: its dossier is held behind it while it is in a
        retry tier (saved before the copy is published, so a restart goes on holding); parked,
        it no longer holds anyone back."""
        key = inbound.key
        if not self.ordered or key is None or inbound.envelope is None:
            return
        if isinstance(decision, Retry):
            if group is None:
                group = HeldGroup(inbound.queue, key, None, decision.queue)
                self._held.setdefault(inbound.queue, {})[key] = group
            group.settle(inbound.message_id, decision.queue, inbound.envelope.sequence)
            await self._save(group)
        elif group is not None and group.settle(inbound.message_id, None):
            log.warning(
                "%s: dossier %s was held behind message %s, now parked in %s; the %d "
                "message(s) held behind it go on in order", self.name, key,
                inbound.message_id, decision.queue, len(group.members))
            await self._save(group)

    async def _send_behind(self, inbound: _Inbound, group: HeldGroup) -> None:
        behind = group.head or (group.members[0] if group.members else "")
        props = inbound.properties
        copy = Outgoing(
            body=inbound.body,
            exchange="",
            routing_key=group.tier,
            message_id=inbound.message_id,
            type=props.type or "",
            headers=held_headers(inbound.headers, behind=behind, return_to=inbound.queue,
                                 exchange=inbound.exchange, routing_key=inbound.routing_key),
            app_id=props.app_id,
            content_type=props.content_type or CONTENT_TYPE,
            timestamp=props.timestamp,
        )
        if not await self._publish_copy(inbound, copy):
            self._leave(inbound)
            return
        self.stats.held += 1
        self.metrics.count(_type(inbound), "held")
        log.info("%s: message %s of dossier %s sent to %s behind %s (its dossier is held)",
                 self.name, inbound.message_id, group.key, group.tier, behind)
        self._complete(inbound, success=False)

    async def _publish_copy(self, inbound: _Inbound, copy: Outgoing) -> bool:
        """Publish until confirmed; False if the original can no longer be acked anyway."""
        backoff = Backoff(self.settings.reconnect_initial, self.settings.reconnect_max)
        publisher = self._publisher
        assert publisher is not None
        while True:
            try:
                await publisher.publish(copy)
                return True
            except PublishFailed as exc:
                if inbound.generation != self._generation:
                    return False  # the original comes back by redelivery
                log.error("%s: cannot publish %s to %s: %s", self.name, copy.message_id,
                          copy.routing_key, exc)
                await asyncio.sleep(backoff.next())

    # -- held dossiers ---------------------------------------------------------------------------

    async def _groups(self, queue: str) -> dict[str, HeldGroup]:
        """The held dossiers of ``queue``, read from the store on the first delivery of each
        connection: deliveries of a partition reach this process only while it is the
        partition's active consumer, so this is when it takes the partition over (from a
        process that stopped or died, holding dossiers there)."""
        task = self._held_loaded.get(queue)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._held_loaded[queue] = asyncio.ensure_future(self._load_groups(queue))
        await asyncio.shield(task)
        return self._held.setdefault(queue, {})

    async def _load_groups(self, queue: str) -> None:
        store = self.store
        if store is None:
            return
        try:
            rows = await asyncio.to_thread(store.held_load, queue)
        except Exception as exc:
            if self._store_failure(exc):
                raise _StoreDown from exc
            raise
        self._held[queue] = {key: HeldGroup.from_dict(queue, key, state)
                             for key, state in rows.items()}
        if rows:
            log.warning("%s: %d dossier(s) of %s held behind a message in a retry tier: %s",
                        self.name, len(rows), queue, ", ".join(sorted(rows)[:20]))

    async def _save(self, group: HeldGroup) -> None:
        """Keep the group in the store (delete it once released), retried as a write while
        the store refuses it."""
        if group.released:
            self._held.get(group.queue, {}).pop(group.key, None)
        store = self.store
        if store is None:
            return
        if group.released:
            await self._durably(store.held_release, group.queue, group.key)
        else:
            await self._durably(store.held_save, group.queue, group.key, group.to_dict())

    async def _durably(self, write: Callable[..., object], *args: Any) -> None:
        backoff = Backoff(self.settings.reconnect_initial, max(self.settings.reconnect_max, 1.0))
        while True:
            try:
                await asyncio.to_thread(write, *args)
                return
            except Exception as exc:
                if not self._store_failure(exc):
                    raise
                self.stats.rewrites += 1
                await asyncio.sleep(backoff.next())

    # -- the store gate and the recordings -----------------------------------------------------

    def _store_failure(self, error: BaseException) -> bool:
        store = self.store
        if store is None or not store.is_failure(error):
            return False
        self._store_failed(error)
        return True

    def _store_failed(self, error: BaseException) -> None:
        if self._writable.is_set():
            self._writable.clear()
            self.stats.store_pauses += 1
            log.warning(
                "%s: the store cannot be written (%s); no new delivery is started until it "
                "can, and results already obtained are kept and their recording retried",
                self.name, error)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.ensure_future(self._recover())

    def _store_back(self) -> None:
        if not self._writable.is_set():
            self._writable.set()
            log.warning("%s: the store takes writes again; deliveries resume", self.name)

    async def _recover(self) -> None:
        store = self.store
        assert store is not None
        backoff = Backoff(self.settings.reconnect_initial, max(self.settings.reconnect_max, 1.0))
        while not self._writable.is_set():
            await asyncio.sleep(backoff.next())
            if self._writer_failing:
                continue  # the writer retries its own writes: their success reopens the gate
            verdict = await asyncio.to_thread(store.probe)
            if verdict == "ok" and not self._writer_failing:
                self._store_back()
            else:
                log.info("%s: store still unusable: %s", self.name, verdict)

    async def _record(self, writes: list[Write]) -> None:
        """Run a delivery's writes (with other deliveries' in one transaction); returns once
        they are committed, however long the store refuses them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.append(_Pending(writes, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_all())
        await done

    async def _write_all(self) -> None:
        backoff = Backoff(self.settings.reconnect_initial, max(self.settings.reconnect_max, 1.0))
        while self._writes:
            batch, self._writes = self._writes[:MAX_WRITE_BATCH], self._writes[MAX_WRITE_BATCH:]
            try:
                await asyncio.to_thread(_write_batch, batch)
            except Exception as exc:
                if self._store_failure(exc):
                    # Kept in memory and written again: the results are not asked for again.
                    self._writer_failing = True
                    self.stats.rewrites += len(batch)
                    self._writes = batch + self._writes
                    await asyncio.sleep(backoff.next())
                    continue
                # Not the store: one of the writes is at fault. Each alone, to find which.
                for pending in batch:
                    try:
                        await asyncio.to_thread(_write_batch, [pending])
                    except Exception as alone:
                        if not pending.done.done():
                            pending.done.set_exception(alone)
                        continue
                    if not pending.done.done():
                        pending.done.set_result(None)
                continue
            if self._writer_failing:
                self._writer_failing = False
                self._store_back()
            backoff.reset()
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_result(None)

    # -- finishing: records and acks -----------------------------------------------------------

    def _complete(self, inbound: _Inbound, *, success: bool) -> None:
        """The message is done with: its id is recorded (on success) and it is acked, both in
        the next batch."""
        if success:
            self.stats.handled += 1
            self.metrics.count(_type(inbound), "handled")
            if inbound.tracked and inbound.digest is not None:
                self._to_record.append((inbound.message_id, inbound.digest))
                self._recorded_waiters.append(inbound.message_id)
                inbound.tracked = False
        self._untrack(inbound)
        if inbound.generation == self._generation:
            self._tracker.done(inbound.tag)
        self._unflushed += 1
        self._release(inbound)
        if self._unflushed >= self._ack_batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self._ack_interval, self._flush
            )

    def _leave(self, inbound: _Inbound) -> None:
        """Give up on a delivery without acking it: the broker redelivers it."""
        self._untrack(inbound)
        self._release(inbound)

    def _untrack(self, inbound: _Inbound) -> None:
        if inbound.tracked:
            inbound.tracked = False
            waiter = self._in_progress.pop(inbound.message_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _release(self, inbound: _Inbound) -> None:
        if inbound.settled:
            return
        inbound.settled = True
        self._outstanding -= 1
        self._in_flight[inbound.queue] -= 1
        if self._outstanding == 0:
            self._idle.set()

    def _flush(self) -> None:
        """Send the acks of what finished so far, once the processed ids they cover are
        recorded. The recording runs in a thread: a store that hangs (a lock held, a disk
        gone) must not stop the event loop, where the calls in flight wait for their answers."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._unflushed = 0
        link = self._link
        if link is not None and link.is_open:
            # Collected now: these tags are of messages finished so far, whose ids are all in
            # the batch taken below.
            upto, singles = self._tracker.collect()
            if upto or singles:
                self._acks.append((self._generation, upto, singles))
        if self._to_record:
            self._records.append((self._to_record, self._recorded_waiters))
            self._to_record, self._recorded_waiters = [], []
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_in_order())

    async def _flush_in_order(self) -> None:
        while self._records or self._acks:
            started = time.perf_counter()
            records, self._records = self._records, []
            acks, self._acks = self._acks, []
            items = [item for batch, _ in records for item in batch]
            if items:
                assert self.processed is not None
                try:
                    await self._processed_call(self.processed.record, self.name, items)
                except Exception as exc:  # keep the batches and hold the acks they cover
                    if self.store is not None and self.store.is_failure(exc):
                        self._store_failed(exc)
                        log.warning("%s: cannot record %d processed ids (%s); acks held",
                                    self.name, len(items), exc)
                    else:
                        log.exception("%s: cannot record %d processed ids; acks held",
                                      self.name, len(items))
                    self._records = records + self._records
                    self._acks = acks + self._acks
                    await asyncio.sleep(max(self._ack_interval, self.settings.reconnect_initial))
                    continue
                for _, waiting in records:
                    for message_id in waiting:
                        waiter = self._in_progress.pop(message_id, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)
            self._send_acks(acks)
            self.metrics.stage["ack"].observe(time.perf_counter() - started)

    def _send_acks(self, acks: list[tuple[int, int, list[int]]]) -> None:
        link = self._link
        if link is None or not link.is_open:
            return
        try:
            for generation, upto, singles in acks:
                if generation != self._generation:
                    continue  # tags of a lost channel: those messages come back anyway
                if upto:
                    link.channel.basic_ack(upto, multiple=True)
                for tag in singles:
                    link.channel.basic_ack(tag)
        except AMQPError as exc:
            log.warning("%s: acks not sent (%s); the broker will redeliver", self.name, exc)

    async def _lookup(self, message_id: str) -> str | None:
        """The processed-id check. Against the store, the lookups of the deliveries admitted
        meanwhile go in one query, in a thread: one round trip (and one thread hop) per batch
        rather than per delivery was a sixth of a busy worker's time."""
        processed = self.processed
        assert processed is not None
        many = getattr(processed, "lookup_many", None)
        if many is None or not getattr(processed, "blocking", True):
            known: str | None = await self._processed_call(processed.lookup, self.name,
                                                           message_id)
            return known
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault(message_id, []).append(waiter)
        if self._looking is None or self._looking.done():
            self._looking = asyncio.ensure_future(self._lookup_all(many))
        return await waiter

    async def _lookup_all(self, many: Callable[[str, list[str]], dict[str, str]]) -> None:
        while self._lookups:
            batch, self._lookups = self._lookups, {}
            try:
                found = await asyncio.to_thread(many, self.name, list(batch))
            except Exception as exc:  # each delivery gets the failure (a store down: re-run)
                for waiters in batch.values():
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                continue
            for message_id, waiters in batch.items():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(found.get(message_id))

    async def _processed_call(self, method: Callable[..., Any], *args: Any) -> Any:
        # The store's processed ids are database round trips: off the event loop. An
        # in-memory implementation (tests, benchmarks) says it needs no thread.
        if getattr(self.processed, "blocking", True):
            return await asyncio.to_thread(method, *args)
        return method(*args)


def _type(inbound: _Inbound) -> str | None:
    envelope = inbound.envelope
    return envelope.type if envelope is not None else None


def _write_batch(batch: list[_Pending]) -> None:
    """The writes of ``batch`` in one transaction per store (a thread of its own)."""
    stores: dict[int, tuple[Any, list[Callable[[Any], object]]]] = {}
    for pending in batch:
        for store, write in pending.writes:
            stores.setdefault(id(store), (store, []))[1].append(write)
    for store, writes in stores.values():
        with store.begin() as tx:
            for write in writes:
                write(tx)
