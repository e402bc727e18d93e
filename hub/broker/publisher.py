"""Publishing with pipelined publisher confirms.

Every message is persistent and published ``mandatory``: the broker either confirms it (the
queues it routes to have it), returns it (it routes nowhere) or nacks it (a queue refused it,
e.g. full with ``overflow=reject-publish``). Many publishes are in flight at once; ``publish``
waits for room when ``max_in_flight`` are unconfirmed, so a slow broker slows its producers
instead of filling memory.

A lost connection is re-established with exponential backoff, to the next node of the broker's
list when there are several (``hub.broker.connection.BrokerNodes``), and every publish not yet
confirmed is sent again on the new connection, in its original order: a message may then reach
a queue twice, which the idempotent receivers absorb, but nothing accepted is lost.

A channel whose publishes to one exchange and routing key have all been refused for
``REFUSED_RESET`` seconds is opened anew (on the next node). RabbitMQ 3.10's quorum queue
client registers a channel as a publisher with the queue's leader once; a channel that did so
while the leader was dying (a node lost) is never told of the new leader and has every later
publish to that queue refused, while a new channel publishes at once (fixed in RabbitMQ 4.0,
rabbitmq-server#13095). A queue that refuses because it is full is reopened for at the same
slow pace, which costs a reconnection every few seconds and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
from pika import spec
from pika.exceptions import AMQPError, ChannelClosedByBroker

from hub.broker.connection import Backoff, BrokerNodes, Link, node_of, sleep_unless
from hub.broker.messages import Outgoing
from hub.errors import BrokerUnavailable, RetryableError

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 1000
REFUSED_RESET = 5.0  # seconds of refusals (and no confirm) to one place before a new channel


_NO_EXCHANGE = re.compile(r"NOT_FOUND - no exchange '(?P<name>[^']*)'")


def _missing_exchange(cause: BaseException | None) -> str | None:
    if isinstance(cause, ChannelClosedByBroker) and cause.reply_code == 404:
        match = _NO_EXCHANGE.search(cause.reply_text)
        if match is not None:
            return match["name"]
    return None


class PublishFailed(RetryableError):
    """The broker did not take a message: nacked, returned as unroutable, or the publisher was
    closed first. Retryable: a full queue drains, a missing binding gets declared."""

    code = "server.publish_failed"


class Unroutable(PublishFailed):
    """The message routes nowhere (no binding, no such exchange): publishing it again changes
    nothing until the topology does."""


@dataclass(slots=True)
class PublisherStats:
    published: int = 0  # basic.publish frames sent, resends included
    confirmed: int = 0
    failed: int = 0
    resent: int = 0  # sent, unconfirmed when the connection was lost, so sent again
    reconnects: int = 0
    peak_unconfirmed: int = 0  # most publishes awaiting a confirm at once


class _Pending:
    __slots__ = ("future", "outgoing", "properties", "returned")

    def __init__(self, outgoing: Outgoing, future: asyncio.Future[None]) -> None:
        self.outgoing = outgoing
        self.future = future
        self.properties: pika.BasicProperties | None = None
        self.returned: str | None = None


class Publisher:
    def __init__(
        self,
        amqp_url: str | Sequence[str],
        settings: Any,
        *,
        max_in_flight: int | None = None,
        name: str = "lienthong publisher",
        on_confirmed: Callable[[Outgoing], None] | None = None,
    ) -> None:
        """``amqp_url``: the broker's node, or its nodes (``Settings.broker_urls``).
        ``on_confirmed``: called with each message the broker confirmed (and did not return),
        e.g. ``hub.broker.queueage.LedgerWriter.confirmed``."""
        self.nodes = BrokerNodes(amqp_url)
        self.name = name
        self.on_confirmed = on_confirmed
        self.max_in_flight = max_in_flight or int(
            getattr(settings, "publish_max_in_flight", DEFAULT_MAX_IN_FLIGHT)
        )
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_max)
        self.stats = PublisherStats()
        self._link: Link | None = None
        self._generation = 0
        self._seq = 0  # last delivery tag used on the current channel
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # sent, awaiting confirm
        self._backlog: deque[_Pending] = deque()  # accepted while disconnected
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._last_error: BaseException | None = None
        # (exchange, routing key) -> when its publishes began to be refused (none confirmed
        # since); see REFUSED_RESET.
        self._refused_since: dict[tuple[str, str], float] = {}
        self._last_reset = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        """Connect (retrying with backoff for up to ``timeout`` seconds)."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            await self.close(timeout=0)
            raise BrokerUnavailable(
                f"publisher could not connect within {timeout}s: {self._last_error}",
                field="amqp_url",
            ) from None

    async def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` seconds for outstanding confirms, then disconnect. Publishes
        still unconfirmed fail with ``PublishFailed``."""
        if self._closed.is_set():
            return
        if self._inflight and timeout > 0 and self._supervisor is not None:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                log.warning(
                    "%s: closing with %d publishes unconfirmed", self.name, self._inflight
                )
        self._closed.set()
        self._space.set()  # release producers waiting for room: their publishes fail below
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._link is not None:
            await self._link.aclose()
            self._link = None
        failure = PublishFailed("the publisher was closed before the broker confirmed")
        for entry in [*self._pending.values(), *self._backlog]:
            if not entry.future.done():
                entry.future.set_exception(failure)
        self._pending.clear()
        self._backlog.clear()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _inflight(self) -> int:
        return len(self._pending) + len(self._backlog)

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def node(self) -> str | None:
        """The URL of the node the publisher is connected to now."""
        return self._link.url if self._link is not None else None

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, outgoing: Outgoing) -> None:
        """Publish and wait for the broker's confirm; raises ``PublishFailed``."""
        await self.wait_for_room()
        await self.publish_nowait(outgoing)

    async def wait_for_room(self) -> None:
        """Wait until fewer than ``max_in_flight`` publishes are unconfirmed (for callers of
        ``publish_nowait`` that want the same backpressure)."""
        while self._inflight >= self.max_in_flight and not self._closed.is_set():
            self._space.clear()
            await self._space.wait()

    def publish_nowait(self, outgoing: Outgoing) -> asyncio.Future[None]:
        """Send now (or as soon as connected) and return a future resolved by the confirm. The
        future fails with ``PublishFailed``."""
        if self._closed.is_set():
            raise PublishFailed("the publisher is closed; start a new one")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = _Pending(outgoing, future)
        if self._link is None or self._backlog:
            self._backlog.append(entry)
        else:
            self._send(entry)
        return future

    def _send(self, entry: _Pending) -> None:
        link = self._link
        assert link is not None
        o = entry.outgoing
        if entry.properties is None:
            entry.properties = o.properties()
        try:
            link.channel.basic_publish(
                o.exchange, o.routing_key, o.body, entry.properties, mandatory=True
            )
        except AMQPError:
            # The channel is going away; the close callback moves what was sent back to the
            # backlog, ahead of this one.
            self._backlog.append(entry)
            return
        self._seq += 1
        pending = self._pending
        pending[self._seq] = entry
        stats = self.stats
        stats.published += 1
        if len(pending) > stats.peak_unconfirmed:
            stats.peak_unconfirmed = len(pending)

    # -- broker callbacks ----------------------------------------------------------------------

    def _on_confirm(self, generation: int, frame: Any) -> None:
        if generation != self._generation:
            return
        method = frame.method
        ok = isinstance(method, spec.Basic.Ack)
        tag: int = method.delivery_tag
        pending = self._pending
        if method.multiple:
            while pending:
                first = next(iter(pending))
                if first > tag:
                    break
                self._settle(pending.popitem(last=False)[1], ok)
        else:
            entry = pending.pop(tag, None)
            if entry is not None:
                self._settle(entry, ok)
        inflight = self._inflight
        if inflight < self.max_in_flight:
            self._space.set()
            if inflight == 0:
                self._drained.set()

    def _settle(self, entry: _Pending, ok: bool) -> None:
        future = entry.future
        if future.done():
            return
        if ok and entry.returned is None:
            self.stats.confirmed += 1
            if self._refused_since:
                o = entry.outgoing
                self._refused_since.pop((o.exchange, o.routing_key), None)
            if self.on_confirmed is not None:
                self.on_confirmed(entry.outgoing)
            future.set_result(None)
            return
        self.stats.failed += 1
        o = entry.outgoing
        if not ok:
            self._refused(o)
        if entry.returned is not None:
            reason = (
                f"unroutable: exchange {o.exchange!r} has no binding for routing key "
                f"{o.routing_key!r} ({entry.returned}); declare the topology "
                "(lienthong topology apply) or fix the routing key"
            )
        else:
            reason = (
                f"the broker refused message {o.message_id} to {o.exchange!r}/{o.routing_key!r} "
                "(nack: a target queue is full or unavailable); retry later"
            )
        failed = Unroutable if entry.returned is not None else PublishFailed
        future.set_exception(failed(reason, field="routing_key"))

    def _refused(self, o: Outgoing) -> None:
        now = time.monotonic()
        since = self._refused_since.setdefault((o.exchange, o.routing_key), now)
        link = self._link
        if (now - since < REFUSED_RESET or now - self._last_reset < REFUSED_RESET
                or link is None):
            return
        log.warning(
            "%s: every publish to %r/%r refused for %.0fs; opening a new channel (a full queue, "
            "or a quorum queue that changed leader and no longer takes this channel's "
            "publishes)", self.name, o.exchange, o.routing_key, now - since)
        self._refused_since.clear()
        self._last_reset = now
        link.close()  # the supervisor reconnects and sends the unconfirmed again

    def _on_return(
        self,
        generation: int,
        channel: Any,
        method: spec.Basic.Return,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        # A return precedes the confirm of the same publish; match it to the oldest unconfirmed
        # publish of the same message to the same place.
        if generation != self._generation:
            return
        message_id = properties.message_id or ""
        for entry in self._pending.values():
            o = entry.outgoing
            if (
                entry.returned is None
                and o.routing_key == method.routing_key
                and o.exchange == method.exchange
                and (o.message_id or "") == message_id
            ):
                entry.returned = f"{method.reply_code} {method.reply_text}"
                return

    # -- connection ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._closed.is_set():
            generation = self._generation + 1
            link: Link | None = None
            try:
                link = await Link.open(self.nodes, self.name)
                await link.call(
                    link.channel.confirm_delivery, functools.partial(self._on_confirm, generation)
                )
                link.channel.add_on_return_callback(functools.partial(self._on_return, generation))
            except (BrokerUnavailable, AMQPError) as exc:
                if link is not None:
                    link.close()
                self._last_error = exc
                log.warning("%s: cannot connect: %s", self.name, exc)
                await sleep_unless(self._closed, self._backoff.next())
                continue
            self._backoff.reset()
            self._generation = generation
            self._seq = 0
            self._link = link
            self._resend_backlog()
            self._connected.set()
            cause = await asyncio.shield(link.lost)
            self._on_lost(link)
            if self._closed.is_set():
                return
            self.stats.reconnects += 1
            log.warning("%s: connection to %s lost (%r); reconnecting", self.name,
                        node_of(link.url), cause)
            await sleep_unless(self._closed, self._backoff.next())

    def _on_lost(self, link: Link) -> None:
        self._connected.clear()
        self._link = None
        self._generation += 1  # confirms of the old channel, if any straggle, are ignored
        # Whatever was sent and not confirmed may or may not have reached its queue: send it
        # again, before what was queued while disconnected.
        unconfirmed = list(self._pending.values())
        self._pending.clear()
        self._backlog.extendleft(reversed(unconfirmed))
        self.stats.resent += len(unconfirmed)
        link.close()
        cause = link.lost.result() if link.lost.done() else None
        missing = _missing_exchange(cause)
        if missing is not None:
            # Publishing to an exchange that does not exist closes the channel; sending the
            # same messages again would close it again, forever. Fail them instead.
            self._fail_backlog(
                lambda o: o.exchange == missing,
                f"exchange {missing!r} does not exist; declare the topology (lienthong topology "
                "apply) or publish to an existing exchange",
            )

    def _fail_backlog(self, match: Callable[[Outgoing], bool], reason: str) -> None:
        kept: deque[_Pending] = deque()
        for entry in self._backlog:
            if match(entry.outgoing):
                if not entry.future.done():
                    self.stats.failed += 1
                    entry.future.set_exception(Unroutable(reason, field="exchange"))
            else:
                kept.append(entry)
        self._backlog = kept
        if self._inflight < self.max_in_flight:
            self._space.set()
            if self._inflight == 0:
                self._drained.set()

    def _resend_backlog(self) -> None:
        backlog = self._backlog
        while backlog and self._link is not None:
            entry = backlog.popleft()
            if entry.future.done():  # the caller gave up on it (cancelled)
                continue
            before = len(backlog)
            self._send(entry)
            if len(backlog) > before:  # channel broke again: _send put it back at the end
                backlog.rotate(1)
                break
