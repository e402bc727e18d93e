"""Consuming a work queue: the idempotent receiver around a handler.

Per delivery: decode the envelope -> processed-id check (identical bytes again: acknowledged
without running the handler; the same id with other bytes: ``client.replayed_id``) -> verify the
signature -> ``handler(delivery)`` -> publish what it returned and wait for the confirms ->
record the id as processed -> acknowledge. A failure publishes a copy to the next retry tier,
the dead letters or the invalid messages (``hub.broker.retry`` decides which) and acknowledges
the original only once the broker has confirmed that copy.

Acknowledgements are batched (``multiple=True``, every ``ack_batch`` messages or
``ack_interval`` seconds), and processed ids are recorded in the same batches, just before the
acks they cover. A message whose id is in progress on this consumer waits for that one to
finish, so a broker redelivery after a lost connection (or the same message published twice)
never runs the handler twice at once.

Handlers run concurrently up to ``concurrency`` (default: the prefetch window). An ordered
consumer runs them one at a time, in delivery order; it still lets the broker confirm one
message's results while the next message is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pika
from pika.exceptions import AMQPError
from pika.spec import Basic

from hub import headers as h
from hub.broker.acks import AckTracker
from hub.broker.connection import Backoff, BrokerNodes, Link, broker_urls, sleep_unless
from hub.broker.messages import Delivery, Outgoing
from hub.broker.metrics import DEAD_LETTERS, RETRIES
from hub.broker.names import Names
from hub.broker.processed import ProcessedIds
from hub.broker.publisher import Publisher, PublishFailed
from hub.broker.retry import (
    Retry,
    attempt_of,
    decide,
    describe,
    parked_headers,
    retry_headers,
)
from hub.broker.topology import Topology
from hub.envelope import CONTENT_TYPE, Envelope
from hub.errors import BrokerUnavailable, InvalidMessage

log = logging.getLogger(__name__)

# Async or plain; returns the messages the delivery causes (published before it is acked).
Handler = Callable[[Delivery], Awaitable[Sequence[Outgoing] | None] | Sequence[Outgoing] | None]


class Verifier(Protocol):
    """What the consumer needs of ``hub.signing.Verifier``."""

    def verify(self, body: bytes, token: str, env: Envelope, *, attempt: int = 0) -> Any: ...


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


class _Inbound:
    """One delivery as received, before and after decoding."""

    __slots__ = (
        "attempt",
        "body",
        "digest",
        "envelope",
        "exchange",
        "generation",
        "headers",
        "message_id",
        "properties",
        "redelivered",
        "routing_key",
        "settled",
        "tag",
        "tracked",
    )

    def __init__(
        self, generation: int, method: Basic.Deliver, properties: pika.BasicProperties, body: bytes
    ) -> None:
        self.generation = generation
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
        self.digest: str | None = None
        self.tracked = False  # registered in the consumer's in-progress ids
        self.settled = False  # acked, left for redelivery or abandoned


class Consumer:
    def __init__(
        self,
        settings: Any,
        queue: str,
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
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.handler = handler
        self.verifier = verifier
        self.processed = processed
        self.name = name or queue
        # The broker's nodes: a lost connection is made again to the next one.
        self.nodes = BrokerNodes(amqp_url or broker_urls(settings))
        self.names = Names(settings.name_prefix)
        # What the metrics and the retry log call the queue: its destination for a work queue.
        work = self.names.work("")
        self.destination = queue.removeprefix(work) if queue.startswith(work) else self.name
        self.prefetch = int(settings.prefetch)
        self.ordered = ordered
        self.concurrency = 1 if ordered else max(1, concurrency or self.prefetch)
        self.drain_timeout = drain_timeout
        self.stats = ConsumerStats()
        # Set while the consumer is registered with the broker (tests wait on it).
        self.consuming = asyncio.Event()
        self._retry_tiers = list(settings.retry_tiers)
        self._ack_batch = max(1, int(settings.ack_batch))
        self._ack_interval = float(settings.ack_interval)
        self._publisher = publisher
        self._own_publisher = publisher is None
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_max)
        self._link: Link | None = None
        self._generation = 0
        self._tracker = AckTracker(self.prefetch // 2)
        self._inbox: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._outstanding = 0  # received and not finished (acked, abandoned or left)
        self._idle = asyncio.Event()
        self._idle.set()
        self._unflushed = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._to_record: list[tuple[str, str]] = []
        self._recorded_waiters: list[str] = []
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer_tag = ""

    @classmethod
    def for_destination(
        cls, settings: Any, topology: Topology, destination: str, handler: Handler, **kw: Any
    ) -> Consumer:
        """The consumer of a destination's work queue, ordered if the destination is."""
        dest = topology.destination(destination)
        kw.setdefault("name", dest.name)
        return cls(
            settings, topology.names.work(dest.name), handler, ordered=dest.ordered, **kw
        )

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

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what was received, flush the acks and
        disconnect."""
        publisher = self._publisher
        if publisher is None:
            publisher = self._publisher = Publisher(
                self.nodes.urls, self.settings, name=f"{self.name} publisher"
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
            link = await Link.open(self.nodes, self.name)
            await link.call(link.channel.basic_qos, prefetch_count=self.prefetch)
            self._generation += 1
            generation = self._generation
            self._tracker = AckTracker(self.prefetch // 2)
            self._link = link
            # The broker cancels a consumer whose queue is deleted: start again from scratch.
            link.channel.add_on_cancel_callback(lambda frame: link.close() if link else None)
            frame = await link.call(
                link.channel.basic_consume,
                self.queue,
                lambda ch, m, p, b: self._on_message(generation, m, p, b),
                auto_ack=False,
            )
            self._consumer_tag = frame.method.consumer_tag
        except (BrokerUnavailable, AMQPError) as exc:
            if link is not None:
                self._on_lost(link)
            log.warning("%s: cannot consume %r: %s", self.name, self.queue, exc)
            await sleep_unless(stop, self._backoff.next())
            return None
        self._backoff.reset()
        self.consuming.set()
        return link

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
        self, generation: int, method: Basic.Deliver, properties: pika.BasicProperties, body: bytes
    ) -> None:
        self.stats.received += 1
        self._outstanding += 1
        self._idle.clear()
        self._inbox.put_nowait(_Inbound(generation, method, properties, body))

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        link = self._link
        if link is not None and link.is_open:
            # No new deliveries; what was already sent our way is still handled below.
            with contextlib.suppress(BrokerUnavailable, AMQPError):
                await link.call(link.channel.basic_cancel, self._consumer_tag)
        try:
            await asyncio.wait_for(self._idle.wait(), self.drain_timeout)
        except TimeoutError:
            log.warning(
                "%s: %d messages still in progress after %ss; the broker will redeliver them",
                self.name, self._outstanding, self.drain_timeout,
            )
        self._flush()
        for task in workers:
            task.cancel()
        for task in list(self._finishing):
            task.cancel()
        await asyncio.gather(*workers, *self._finishing, return_exceptions=True)
        self.consuming.clear()
        if self._link is not None:
            await self._link.aclose()
            self._link = None
        if self._own_publisher and self._publisher is not None:
            await self._publisher.close()
            self._publisher = None

    # -- one message ---------------------------------------------------------------------------

    async def _work(self) -> None:
        inbox = self._inbox
        while True:
            inbound = await inbox.get()
            if inbound.generation != self._generation:
                # Its connection is gone, so it cannot be acked: the broker redelivers it.
                self.stats.abandoned += 1
                self._release(inbound)
                continue
            try:
                await self._process(inbound)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill the worker
                log.exception("%s: unexpected failure handling a delivery", self.name)
                self._leave(inbound)

    async def _process(self, inbound: _Inbound) -> None:
        try:
            delivery = await self._admit(inbound)
            if delivery is None:
                return
            result = self.handler(delivery)
            if inspect.isawaitable(result):
                result = await result
            outputs: Sequence[Outgoing] = (
                (result,) if isinstance(result, Outgoing) else (result or ())
            )
            if not outputs:
                self._complete(inbound, success=True)
                return
            publisher = self._publisher
            assert publisher is not None
            futures = [publisher.publish_nowait(o) for o in outputs]
        except Exception as exc:  # every failure is routed by its class
            await self._fail(inbound, exc)
            return
        if self.ordered:
            # Handle the next message while the broker confirms this one's results.
            task = asyncio.create_task(self._finish(inbound, futures))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
        else:
            await self._finish(inbound, futures)

    async def _admit(self, inbound: _Inbound) -> Delivery | None:
        """Decode, deduplicate and verify; None when the message is a duplicate (acked)."""
        env = Envelope.from_bytes(inbound.body)
        inbound.envelope = env
        inbound.message_id = env.id
        processed = self.processed
        if processed is not None:
            digest = hashlib.sha256(inbound.body).hexdigest()
            inbound.digest = digest
            # Another copy of this id in progress here: let it finish (recorded or failed).
            while (earlier := self._in_progress.get(env.id)) is not None:
                await asyncio.shield(earlier)
            known = processed.lookup(self.name, env.id)
            if known is not None:
                if known == digest:
                    self.stats.duplicates += 1
                    self._complete(inbound, success=False)
                    return None
                raise InvalidMessage(
                    f"message id {env.id} was already processed with a different body; a "
                    "message id names one message only: send a new id",
                    code="client.replayed_id",
                    field="id",
                )
            self._in_progress[env.id] = asyncio.get_running_loop().create_future()
            inbound.tracked = True
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
            queue=self.queue,
            exchange=inbound.exchange,
            routing_key=inbound.routing_key,
            redelivered=inbound.redelivered,
            attempt=inbound.attempt,
            delivery_tag=inbound.tag,
            message_id=env.id,
            signer=signer,
        )

    async def _finish(self, inbound: _Inbound, futures: list[asyncio.Future[None]]) -> None:
        try:
            if len(futures) == 1:
                await futures[0]
            else:
                results = await asyncio.gather(*futures, return_exceptions=True)
                for r in results:
                    if isinstance(r, BaseException):
                        raise r
        except PublishFailed as exc:
            await self._fail(inbound, exc)
            return
        self._complete(inbound, success=True)

    async def _fail(self, inbound: _Inbound, error: Exception) -> None:
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
                return_to=self.queue,
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
            DEAD_LETTERS.labels(self.destination, "invalid" if invalid else "dead",
                                decision.code).inc()
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

    # -- finishing: records and acks -----------------------------------------------------------

    def _complete(self, inbound: _Inbound, *, success: bool) -> None:
        """The message is done with: its id is recorded (on success) and it is acked, both in
        the next batch."""
        if success:
            self.stats.handled += 1
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
        if self._outstanding == 0:
            self._idle.set()

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._unflushed = 0
        if self._to_record:
            items, waiting = self._to_record, self._recorded_waiters
            self._to_record, self._recorded_waiters = [], []
            assert self.processed is not None
            try:
                self.processed.record(self.name, items)
            except Exception:  # keep the batch and hold the acks it covers
                log.exception(
                    "%s: cannot record %d processed ids; acks held", self.name, len(items)
                )
                self._to_record = items + self._to_record
                self._recorded_waiters = waiting + self._recorded_waiters
                self._flush_timer = asyncio.get_running_loop().call_later(
                    max(self._ack_interval, self.settings.reconnect_initial), self._flush
                )
                return
            for message_id in waiting:
                waiter = self._in_progress.pop(message_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        link = self._link
        if link is None or not link.is_open:
            return
        upto, singles = self._tracker.collect()
        try:
            if upto:
                link.channel.basic_ack(upto, multiple=True)
            for tag in singles:
                link.channel.basic_ack(tag)
        except AMQPError as exc:
            log.warning("%s: acks not sent (%s); the broker will redeliver", self.name, exc)

