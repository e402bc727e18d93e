"""pika's asynchronous connection behind awaitables.

pika's ``AsyncioConnection`` speaks in callbacks; ``Link`` turns one connection and its one
channel into something that can be awaited, and exposes ``lost``: a future resolved (never
failed) with the cause as soon as either the channel or the connection goes away. Publisher and
consumer each own their link and reconnect with ``Backoff`` when it is lost.

The broker is a list of nodes (a cluster: quorum queues keep their messages and elect new
leaders when a node dies, and any node serves any queue). ``BrokerNodes`` remembers where a
client was: ``Link.open`` tries the nodes in turn, starting with the one that served last, and
a link that is lost moves the start to the next node, so a client whose node died reconnects to
another one instead of waiting for it to come back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.exceptions import AMQPError

from hub.errors import BrokerUnavailable

T = TypeVar("T")


class Backoff:
    """Exponential delays between reconnection attempts, with jitter so that many clients cut
    off together do not all come back in the same millisecond."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0

    def next(self) -> float:
        # The exponent stops growing once the maximum is reached: 2**attempt of a long outage
        # would overflow a float (after about a thousand attempts).
        delay = min(self.maximum, self.initial * 2 ** min(self._attempt, 64))
        self._attempt += 1
        return float(delay * random.uniform(0.8, 1.0))

    def reset(self) -> None:
        self._attempt = 0


class _CoalescingBuffers(collections.deque):  # type: ignore[type-arg]
    """pika's transport queues every frame separately and writes each with its own send(2): a
    publish is three frames, so three system calls. Joining the frames queued between two
    writes makes it one call per batch (see docs/performance.md#coalesced-frames). The
    transport only appends, pops from the left and puts back the unsent rest of a partial
    write, so keeping the tail as a growing bytearray preserves the byte order."""

    LIMIT = 256 * 1024

    def append(self, data: bytes) -> None:
        if self:
            last = self[-1]
            if type(last) is bytearray and len(last) < self.LIMIT:
                last += data
                return
        super().append(bytearray(data))


def _coalesce_writes(connection: AsyncioConnection) -> None:
    # Internal attributes of pika's transport (1.3, 1.4); left alone if they ever change.
    transport = getattr(connection, "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if type(buffers) is collections.deque:
        transport._tx_buffers = _CoalescingBuffers(buffers)  # type: ignore[union-attr]


def _describe(params: pika.URLParameters) -> str:
    return f"{params.host}:{params.port} vhost {params.virtual_host!r}"


def node_of(amqp_url: str) -> str:
    """A node's URL without its credentials, for logs and messages."""
    try:
        return _describe(pika.URLParameters(amqp_url))
    except ValueError:
        return "an unparsable URL"


URLS_HINT = "check LIENTHONG_AMQP_URLS (or LIENTHONG_AMQP_URL) and that the broker runs"


def broker_urls(settings: Any) -> list[str]:
    """The broker's nodes named by ``settings``: ``amqp_urls`` (hub.settings), or the single
    ``amqp_url`` of settings-like objects that have only that."""
    urls = getattr(settings, "broker_urls", None)
    return list(urls) if urls else [str(settings.amqp_url)]


class BrokerNodes:
    """The broker's nodes, in the order a client should try them now: the node that served
    last first, and after a lost connection the next node first."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("no broker URL given; set LIENTHONG_AMQP_URLS or LIENTHONG_AMQP_URL")
        self._start = 0

    @classmethod
    def of(cls, urls: str | Sequence[str] | BrokerNodes) -> BrokerNodes:
        return urls if isinstance(urls, BrokerNodes) else cls(urls)

    @property
    def first(self) -> str:
        """The node tried first now: while a link is up, the node serving it."""
        return self.urls[self._start]

    def order(self) -> list[tuple[int, str]]:
        n = len(self.urls)
        return [((self._start + i) % n, self.urls[(self._start + i) % n]) for i in range(n)]

    def served(self, index: int) -> None:
        self._start = index

    def lost(self, index: int) -> None:
        # Only the node currently first moves the start: a late report of an older link must
        # not skip the node that serves now.
        if self._start == index:
            self._start = (index + 1) % len(self.urls)


class Link:
    def __init__(
        self,
        connection: AsyncioConnection,
        channel: Channel,
        lost: asyncio.Future[BaseException],
        connection_closed: asyncio.Future[BaseException],
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.lost = lost
        self._connection_closed = connection_closed
        self._closing = False
        self.url = ""  # the node this link is connected to
        channel.add_on_close_callback(self._on_channel_closed)

    @classmethod
    async def open(cls, nodes: str | Sequence[str] | BrokerNodes, name: str) -> Link:
        """Connect to the first node of ``nodes`` that answers (in ``BrokerNodes.order``);
        ``BrokerUnavailable`` names every node's failure when none does."""
        nodes = BrokerNodes.of(nodes)
        failures: list[BrokerUnavailable] = []
        for index, url in nodes.order():
            try:
                link = await cls._open_node(url, name)
            except BrokerUnavailable as exc:
                failures.append(exc)
                continue
            link.url = url
            nodes.served(index)
            link.lost.add_done_callback(functools.partial(_moved_on, nodes, index))
            return link
        if len(failures) == 1:
            raise failures[0]
        raise BrokerUnavailable(
            f"cannot connect to any of the {len(failures)} RabbitMQ nodes: "
            + "; ".join(str(f.message) for f in failures),
            field="amqp_urls",
        )

    @classmethod
    async def _open_node(cls, amqp_url: str, name: str) -> Link:
        loop = asyncio.get_running_loop()
        params = pika.URLParameters(amqp_url)
        params.client_properties = {"connection_name": name}
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()
        lost: asyncio.Future[BaseException] = loop.create_future()
        connection_closed: asyncio.Future[BaseException] = loop.create_future()

        def on_open(conn: Any) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(
                    BrokerUnavailable(
                        f"cannot connect to RabbitMQ at {_describe(params)}: {exc!r}; "
                        + URLS_HINT,
                        field="amqp_url",
                    )
                )

        def on_close(conn: Any, exc: BaseException) -> None:
            for fut in (lost, connection_closed):
                if not fut.done():
                    fut.set_result(exc)

        connection = AsyncioConnection(
            params,
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        try:
            await opened
            _coalesce_writes(connection)
            channel_opened: asyncio.Future[Channel] = loop.create_future()
            connection.channel(on_open_callback=channel_opened.set_result)
            channel = await _first(channel_opened, lost, what="opening a channel")
        except BaseException:  # failed or cancelled half-way: do not leave a socket behind
            if not (connection.is_closed or connection.is_closing):
                with contextlib.suppress(AMQPError):
                    connection.close()
            raise
        return cls(connection, channel, lost, connection_closed)

    @property
    def is_open(self) -> bool:
        return not self.lost.done() and self.channel.is_open

    def _on_channel_closed(self, channel: Channel, exc: BaseException) -> None:
        # A channel closed by the broker (a bad ack, a deleted queue) makes the link useless:
        # drop the whole connection so the owner reconnects from scratch.
        if not self.lost.done():
            self.lost.set_result(exc)
        if self.connection.is_open and not self._closing:
            self._closing = True
            self.connection.close()

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a pika method taking ``callback=`` and await the frame it reports."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(frame: Any) -> None:
            if not fut.done():
                fut.set_result(frame)

        method(*args, callback=done, **kwargs)
        return await _first(fut, self.lost, what=getattr(method, "__name__", "a broker call"))

    def close(self) -> None:
        self._closing = True
        if self.connection.is_open:
            self.connection.close()

    async def aclose(self, timeout: float = 5.0) -> None:
        self.close()
        if self.connection.is_closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connection_closed), timeout)


def _moved_on(nodes: BrokerNodes, index: int, lost: asyncio.Future[BaseException]) -> None:
    nodes.lost(index)


async def _first(fut: asyncio.Future[T], lost: asyncio.Future[BaseException], what: str) -> T:
    if not fut.done():
        watched: set[asyncio.Future[Any]] = {fut, lost}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    if fut.done():
        return fut.result()
    raise BrokerUnavailable(f"the broker connection was lost while {what}: {lost.result()!r}")


async def sleep_unless(event: asyncio.Event | None, delay: float) -> bool:
    """Sleep ``delay`` seconds, returning early (True) if ``event`` is set meanwhile."""
    if event is None:
        await asyncio.sleep(delay)
        return False
    try:
        await asyncio.wait_for(event.wait(), delay)
        return True
    except TimeoutError:
        return event.is_set()
