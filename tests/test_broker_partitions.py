"""Partitioned work queues on the real broker: a dossier's messages always reach the same
partition (by the hub's own slot), retries come back to the partition they left, two consumers
share the partitions and one takes the other's over when it stops, and a destination that
becomes partitioned drains its former queue before its partitions."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub import headers as h
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.names import slot_of
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.settings import Settings
from hub.testing.broker import (
    NullSigner,
    delete_queues,
    depth,
    read_all,
    sample_envelope,
    topology_queues,
)
from hub.testing.waiting import eventually

ORDERS = Destination("orders", ("dossier.#",), ordered=True)


@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    n = settings.name_prefix
    delete_queues(settings.amqp_url, [
        *topology_queues(n, ["orders"], len(settings.retry_tiers)),
        *(f"{n}.work.orders.p{i}" for i in range(4)),
    ])


def _topology(settings: Settings, tmp_path: Path, partitions: int = 4) -> Topology:
    path = tmp_path / "topology.toml"
    path.write_text(f"[destinations.orders]\npartitions = {partitions}\n")
    topo = Topology.from_settings(settings, [ORDERS], topology_file=path)
    declare.apply(topo, settings.amqp_url)
    return topo


def _message(topo: Topology, dossier: int, seq: int) -> Outgoing:
    return Outgoing.signed(sample_envelope(dossier, sequence=seq), NullSigner(),
                           topo.names.events)


def _partition_of(topo: Topology, dossier: int) -> str:
    return topo.work_queues("orders")[slot_of(sample_envelope(dossier).subject) % 4]


def test_each_dossier_reaches_one_partition_by_its_slot(settings: Settings,
                                                       tmp_path: Path) -> None:
    topo = _topology(settings, tmp_path)
    queues = topo.work_queues("orders")
    n = topo.names
    assert queues == [f"{settings.name_prefix}.work.orders.p{i}" for i in range(4)]
    declared = {q.name: q.arguments for q in topo.queues}
    assert all(declared[q]["x-single-active-consumer"] is True for q in queues)
    assert n.work("orders") not in declared  # no plain queue besides the partitions
    # Applying again finds everything in place.
    assert {a.outcome for a in declare.apply(topo, settings.amqp_url)} <= {"exists", "bound"}
    assert any(f"{n.route('orders')} -> {queues[1]}  {h.SLOT} in [1, 5, 9" in line
               for line in topo.describe())

    async def publish() -> None:
        async with Publisher(settings.amqp_url, settings) as pub:
            for seq in range(3):
                for dossier in range(12):
                    await pub.publish(_message(topo, dossier, seq))
            # A message from an older publisher, without a slot: partition 0, not nowhere.
            bare = _message(topo, 99, 0)
            del bare.headers[h.SLOT]
            await pub.publish(bare)

    asyncio.run(publish())
    found: dict[str, set[str]] = {}
    for queue in queues:
        for received in read_all(settings.amqp_url, queue):
            found.setdefault(Envelope.from_bytes(received.body).subject, set()).add(queue)
    assert len(found) == 13
    for dossier in range(12):
        assert found[sample_envelope(dossier).subject] == {_partition_of(topo, dossier)}
    assert found[sample_envelope(99).subject] == {queues[0]}
    assert len({q for qs in found.values() for q in qs}) == 4  # every partition got some
    assert depth(settings.amqp_url, n.unroutable) == 0


@dataclass
class Log:
    """Who handled what, in which order."""

    order: dict[str, list[int]] = field(default_factory=dict)
    by: dict[str, set[str]] = field(default_factory=dict)  # consumer -> partitions
    deliveries: list[Delivery] = field(default_factory=list)

    def handler(self, who: str, *, fail_first: bool = False,
                pause: float = 0.0) -> Any:
        async def handle(d: Delivery) -> None:
            self.deliveries.append(d)
            if fail_first and d.attempt == 0:
                raise RetryableError("not yet", code="system.unavailable")
            await asyncio.sleep(pause)
            self.by.setdefault(who, set()).add(d.queue)
            assert d.envelope.sequence is not None
            self.order.setdefault(d.envelope.subject, []).append(d.envelope.sequence)

        return handle


def test_a_retry_comes_back_to_the_partition_it_left(settings: Settings,
                                                    tmp_path: Path) -> None:
    topo = _topology(settings, tmp_path)
    log = Log()

    async def go() -> Consumer:
        async with Publisher(settings.amqp_url, settings) as pub:
            consumer = Consumer.for_destination(settings, topo, "orders",
                                                log.handler("c", fail_first=True),
                                                publisher=pub)
            consumer.start()
            await consumer.wait_consuming()
            for dossier in range(8):
                await pub.publish(_message(topo, dossier, 0))
            await eventually(lambda: consumer.stats.handled == 8, 15, "the retries")
            await consumer.stop()
        return consumer

    consumer = asyncio.run(go())
    assert consumer.stats.retried == 8
    for d in log.deliveries:
        dossier = int(d.envelope.subject[-4:])
        assert d.queue == _partition_of(topo, dossier)
        if d.attempt:
            assert d.headers[h.RETURN_TO] == d.queue


def test_two_consumers_share_the_partitions_and_one_takes_over_when_the_other_stops(
    settings: Settings, tmp_path: Path
) -> None:
    quick = settings.model_copy(update={"standby_delay": 0.3})
    topo = _topology(quick, tmp_path)
    queues = topo.work_queues("orders")
    log = Log()

    async def go() -> None:
        async with Publisher(quick.amqp_url, quick) as pub:
            first, second = (
                Consumer.for_destination(quick, topo, "orders", log.handler(who, pause=0.02),
                                         process=(i, 2), name=f"orders-{who}")
                for i, who in enumerate(("first", "second")))
            first.start()
            second.start()
            await first.wait_consuming()
            await second.wait_consuming()
            # Each on its home partitions at once, on the others as standby a moment later.
            await eventually(lambda: sorted(first.registered) == sorted(second.registered)
                             == queues, 10, "both consumers on every partition")
            for seq in range(3):
                for dossier in range(24):
                    await pub.publish(_message(topo, dossier, seq))
            await eventually(lambda: first.stats.handled + second.stats.handled == 72, 15,
                             "the first round")
            await first.stop()  # its partitions go to the standby
            for seq in range(3, 6):
                for dossier in range(24):
                    await pub.publish(_message(topo, dossier, seq))
            await eventually(lambda: second.stats.handled == 144 - first.stats.handled, 15,
                             "the second round")
            await second.stop()

    asyncio.run(go())
    # While both ran, each had its home partitions: p0, p2 and p1, p3.
    assert log.by["first"] == {queues[0], queues[2]}
    assert log.by["second"] == {queues[0], queues[1], queues[2], queues[3]}
    assert all(events == [0, 1, 2, 3, 4, 5] for events in log.order.values())
    assert len(log.order) == 24


def test_a_destination_newly_partitioned_drains_its_former_queue_first(
    settings: Settings, tmp_path: Path
) -> None:
    before = _topology(settings, tmp_path, partitions=1)
    plain = before.work_queue("orders")
    assert plain == before.names.work("orders")

    async def publish(topo: Topology, seqs: range) -> None:
        async with Publisher(settings.amqp_url, settings) as pub:
            for seq in seqs:
                for dossier in range(6):
                    await pub.publish(_message(topo, dossier, seq))

    asyncio.run(publish(before, range(3)))  # taken in while the destination had one queue
    after = _topology(settings, tmp_path, partitions=4)
    actions = declare.apply(after, settings.amqp_url)
    assert any(a.outcome == "unbound" and plain in a.name for a in actions)
    assert any(a.outcome == "kept" and plain in a.name and "18 ready" in a.name
               for a in actions)
    asyncio.run(publish(after, range(3, 5)))  # the partitions take the new ones
    assert depth(settings.amqp_url, plain) == 18
    log = Log()

    async def drain() -> Consumer:
        async with Publisher(settings.amqp_url, settings) as pub:
            consumer = Consumer.for_destination(
                settings, after, "orders", log.handler("c"), publisher=pub,
                drain_first=functools.partial(declare.former_queues, after, "orders",
                                              settings.amqp_url))
            consumer.start()
            await consumer.wait_consuming()
            await eventually(lambda: consumer.stats.handled == 30, 15, "every event")
            await consumer.stop()
        return consumer

    asyncio.run(drain())
    assert all(events == [0, 1, 2, 3, 4] for events in log.order.values())
    assert {d.queue for d in log.deliveries if (d.envelope.sequence or 0) < 3} == {plain}
    assert depth(settings.amqp_url, plain) == 0


@pytest.mark.parametrize("partitions", [1, 4])
def test_a_destination_disabled_keeps_its_queue_but_takes_no_new_events(
    settings: Settings, tmp_path: Path, partitions: int
) -> None:
    """``enabled = false`` in the topology file: the queues an earlier configuration declared
    stay (with what they hold), unbound; left bound and unconsumed, one would fill up and then
    refuse every publish its bindings match (overflow=reject-publish)."""
    before = _topology(settings, tmp_path, partitions=partitions)
    queues = before.work_queues("orders")

    async def publish(topo: Topology, seqs: range) -> None:
        async with Publisher(settings.amqp_url, settings) as pub:
            for seq in seqs:
                for dossier in range(6):
                    await pub.publish(_message(topo, dossier, seq))

    asyncio.run(publish(before, range(2)))
    assert sum(depth(settings.amqp_url, q) for q in queues) == 12
    path = tmp_path / "topology.toml"
    path.write_text(f"[destinations.orders]\npartitions = {partitions}\nenabled = false\n")
    after = Topology.from_settings(settings, [ORDERS], topology_file=path)
    assert "orders" not in [d.name for d in after.destinations]
    actions = declare.apply(after, settings.amqp_url)
    assert any(a.outcome == "unbound" for a in actions)
    asyncio.run(publish(after, range(2, 4)))  # into the unroutable queue, not the old ones
    assert sum(depth(settings.amqp_url, q) for q in queues) == 12
    assert depth(settings.amqp_url, after.names.unroutable) >= 12
