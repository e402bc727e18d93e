"""Helpers for tests and tools that look at queues from outside, or drive the asynchronous
publisher and consumer from synchronous code (a pytest test, a script).

Nothing here is on the hot path; reading uses pika's blocking connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pika
from pika.exceptions import ChannelClosedByBroker

from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.declare import connect
from hub.broker.destinations import Destination
from hub.broker.names import Names
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.settings import Settings

T = TypeVar("T")


SAMPLE_SOURCE = "VN:GOV:000.00.00.H56:igate"


def sample_envelope(
    i: int = 0,
    *,
    type: str = "vn.gov.dossier.submitted",
    source: str = SAMPLE_SOURCE,
    pad: int = 0,
    id: str | None = None,
    sequence: int | None = None,
) -> Envelope:
    """A valid envelope (routing key ``<domain>.<event>.000_00_00_H56.2_002492``); ``pad`` adds
    that many characters of data, to reach a realistic body size."""
    return Envelope.new(
        source=source,
        type=type,
        subject=f"000.00.00.H56-250101-{i % 10000:04d}",
        data={"i": i, "pad": "x" * pad},
        agency="000.00.00.H56",
        procedure="2.002492",
        id=id,
        sequence=sequence,
    )


class NullSigner:
    """Stands in for ``hub.signing.Signer`` where nothing verifies (consumers built with
    ``verifier=None``)."""

    def sign(self, body: bytes, env: Envelope) -> str:
        return "unsigned"


@dataclass(frozen=True, slots=True)
class Received:
    body: bytes
    headers: dict[str, Any]
    properties: pika.BasicProperties
    exchange: str
    routing_key: str
    redelivered: bool

    @property
    def message_id(self) -> str:
        return self.properties.message_id or ""


# Where a helper takes ``amqp_url``, a list of a cluster's nodes works too (the first that
# answers is used).
Urls = str | Sequence[str]


def read_all(amqp_url: Urls, queue: str, *, timeout: float = 10.0) -> list[Received]:
    """Take (and acknowledge) every message ready in ``queue`` now. Consumes rather than
    ``basic.get``, which quorum queues with a single active consumer refuse."""
    out: list[Received] = []
    conn = connect(amqp_url, "test reader")
    try:
        ch = conn.channel()
        ready = int(ch.queue_declare(queue, passive=True).method.message_count)
        if ready == 0:
            return out
        ch.basic_qos(prefetch_count=min(ready, 65535))
        last_tag = 0
        for method, props, body in ch.consume(queue, inactivity_timeout=timeout):
            if method is None:
                raise AssertionError(
                    f"{queue} announced {ready} ready messages but delivered {len(out)} in "
                    f"{timeout}s (another consumer took them?)"
                )
            out.append(
                Received(
                    body=body,
                    headers=dict(props.headers or {}),
                    properties=props,
                    exchange=method.exchange,
                    routing_key=method.routing_key,
                    redelivered=bool(method.redelivered),
                )
            )
            last_tag = method.delivery_tag
            if len(out) == ready:
                break
        ch.basic_ack(last_tag, multiple=True)
        ch.cancel()
    finally:
        if conn.is_open:
            conn.close()
    return out


def depth(amqp_url: Urls, queue: str) -> int:
    """Ready messages in ``queue`` (-1 when it does not exist)."""
    conn = connect(amqp_url, "test depth")
    try:
        ok = conn.channel().queue_declare(queue, passive=True)
        return int(ok.method.message_count)
    except ChannelClosedByBroker:
        return -1
    finally:
        if conn.is_open:
            conn.close()


def delete_queues(amqp_url: Urls, queues: Iterable[str]) -> None:
    """Delete queues (absent ones are fine), so a test leaves the broker as light as it found
    it: quorum queues cost the broker even when idle."""
    conn = connect(amqp_url, "test cleanup")
    try:
        ch = conn.channel()
        for queue in queues:
            ch.queue_delete(queue)
    finally:
        if conn.is_open:
            conn.close()


def declared_topology(settings: Settings, directory: Path, *destinations: Destination) -> Topology:
    """The topology of ``destinations`` alone, declared on the broker of ``settings``: an empty
    topology file in ``directory`` stands in for the shipped one, whose own destinations (the
    timeline recorder's) would join them."""
    (directory / "topology.toml").write_text("")
    topology = Topology.from_settings(
        settings, list(destinations), topology_file=directory / "topology.toml"
    )
    declare.apply(topology, settings.broker_urls)
    return topology


def topology_queues(prefix: str, destinations: Iterable[str], tiers: int) -> list[str]:
    """Every queue name a topology with these destinations and tiers declares."""
    names = Names(prefix)
    return [
        names.unroutable, names.dead, names.invalid,
        *(names.retry(i) for i in range(tiers)),
        *(names.work(d) for d in destinations),
    ]


async def close_connections(vhost: str, reason: str = "test") -> None:
    """Have the broker drop every client connection of ``vhost`` (never of another vhost), as a
    network cut or a broker restart would, without blocking the running loop."""
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "close_all_connections", "--vhost", vhost, reason,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"rabbitmqctl close_all_connections failed: {(err or out).decode()}")


class LoopThread:
    """An event loop in a daemon thread, for synchronous callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def consuming(make: Callable[[], Consumer], timeout: float = 10.0) -> Iterator[Consumer]:
    """Run a consumer in a background thread for the duration of a ``with`` block.

    ``make`` builds the consumer inside the thread's loop (asyncio objects belong to one loop).
    On exit the consumer finishes what it received, flushes its acks and disconnects."""
    thread = LoopThread()

    async def start() -> Consumer:
        consumer = make()
        consumer.start()
        await consumer.wait_consuming(timeout)
        return consumer

    try:
        consumer = thread.run(start())
        try:
            yield consumer
        finally:
            thread.run(consumer.stop())
    finally:
        thread.close()
