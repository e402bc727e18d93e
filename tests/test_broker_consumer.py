"""The consumer on the real broker: what happens to a message for every outcome of its handler,
duplicates absorbed, order kept where asked, and nothing lost when connections are cut while
thousands of messages are in flight."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
import pytest

from hub import headers as h
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.names import slot_of
from hub.broker.processed import MemoryProcessedIds
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope, routing_key
from hub.errors import InvalidMessage, PermanentError, RetryableError
from hub.settings import Settings
from hub.signing import TrustStore, Verifier
from hub.testing.broker import (
    NullSigner,
    close_connections,
    consuming,
    delete_queues,
    depth,
    read_all,
    sample_envelope,
    topology_queues,
)
from hub.testing.keys import signer_for
from hub.testing.waiting import elsewhere, eventually, wait_for

ORIGINAL_KEY = "dossier.submitted.000_00_00_H56.2_002492"

@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    queues = topology_queues(settings.name_prefix, ['orders', 'sink'], len(settings.retry_tiers))
    delete_queues(settings.amqp_url, [*queues])



def _topology(settings: Settings, tmp_path: Path, *, ordered: bool = False) -> Topology:
    path = tmp_path / "topology.toml"
    path.write_text("")
    topo = Topology.from_settings(
        settings,
        [
            Destination("orders", ("dossier.#",), ordered=ordered),
            Destination("sink", ("relay.#",), ordered=False),
        ],
        topology_file=path,
    )
    declare.apply(topo, settings.amqp_url)
    return topo


def _message(topo: Topology, i: int = 0, **kw: Any) -> Outgoing:
    return Outgoing.signed(sample_envelope(i, **kw), NullSigner(), topo.names.events)


@dataclass
class Calls:
    """What a handler saw."""

    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def attempts(self) -> list[int]:
        return [d.attempt for d in self.deliveries]


async def _consume(
    settings: Settings,
    topo: Topology,
    handler: Callable[[Delivery], Any],
    messages: Sequence[Outgoing],
    until: Callable[[Consumer], bool],
    *,
    timeout: float = 10.0,
    **kw: Any,
) -> Consumer:
    """Start a consumer on the orders queue, publish ``messages``, wait for ``until``, stop."""
    async with Publisher(settings.amqp_url, settings) as pub:
        consumer = Consumer(settings, topo.work_queue("orders"), handler, publisher=pub, **kw)
        consumer.start()
        await consumer.wait_consuming()
        for m in messages:
            await pub.publish(m)
        await eventually(lambda: until(consumer), timeout, "the consumer to finish")
        await consumer.stop()
    return consumer


def test_a_failing_message_walks_every_retry_tier_then_succeeds(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()

    async def handler(d: Delivery) -> list[Outgoing]:
        calls.deliveries.append(d)
        if d.attempt < 3:
            raise RetryableError("the portal is down", code="system.unavailable")
        return []

    message = _message(topo)
    consumer = asyncio.run(
        _consume(settings, topo, handler, [message], lambda c: c.stats.handled == 1)
    )
    assert calls.attempts == [0, 1, 2, 3]
    first, *retries = calls.deliveries
    assert (first.exchange, first.routing_key) == (topo.names.events, ORIGINAL_KEY)
    # Each retry came back from its own tier through the return exchange.
    assert [(d.exchange, d.routing_key) for d in retries] == [
        (topo.names.return_exchange, topo.names.retry(i)) for i in range(3)
    ]
    last = calls.deliveries[-1].headers
    assert last[h.RETURN_TO] == topo.work_queue("orders")
    assert last[h.ORIGINAL_EXCHANGE] == topo.names.events
    assert last[h.ORIGINAL_ROUTING_KEY] == ORIGINAL_KEY
    assert last[h.LAST_ERROR] == "system.unavailable: the portal is down"
    assert [e["attempt"] for e in last[h.HISTORY]] == [0, 1, 2]
    assert all(d.body == message.body for d in calls.deliveries)
    assert (consumer.stats.retried, consumer.stats.handled, consumer.stats.dead) == (3, 1, 0)
    assert depth(settings.amqp_url, topo.names.dead) == 0


def test_exhausted_retries_park_the_message_in_the_dead_letters(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()

    def handler(d: Delivery) -> None:  # a plain function will do as a handler
        calls.deliveries.append(d)
        raise ValueError("bug in the mapping")

    message = _message(topo)
    consumer = asyncio.run(
        _consume(settings, topo, handler, [message], lambda c: c.stats.dead == 1, name="orders-w1")
    )
    assert calls.attempts == [0, 1, 2, 3]  # the first try and one per tier
    [dead] = read_all(settings.amqp_url, topo.names.dead)
    assert dead.body == message.body
    assert dead.message_id == message.message_id
    assert dead.properties.type == message.type and dead.properties.app_id == message.app_id
    hd = dead.headers
    assert hd[h.REASON_CODE] == "server.unexpected_error"
    assert "gave up after 4 attempts" in hd[h.REASON] and "bug in the mapping" in hd[h.REASON]
    assert hd[h.ATTEMPT] == 3
    assert [e["attempt"] for e in hd[h.HISTORY]] == [0, 1, 2, 3]
    assert hd[h.ORIGINAL_EXCHANGE] == topo.names.events
    assert hd[h.ORIGINAL_ROUTING_KEY] == ORIGINAL_KEY
    assert hd[h.PARKED_BY] == "orders-w1"
    assert datetime.fromisoformat(hd[h.PARKED_AT]).tzinfo is not None
    assert h.RETURN_TO not in hd
    assert consumer.stats.retried == 3
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0


def test_a_permanent_error_goes_to_the_dead_letters_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()

    async def handler(d: Delivery) -> None:
        calls.deliveries.append(d)
        raise PermanentError("the portal refused the dossier", code="system.rejected")

    asyncio.run(_consume(settings, topo, handler, [_message(topo)], lambda c: c.stats.dead == 1))
    assert calls.attempts == [0]
    [dead] = read_all(settings.amqp_url, topo.names.dead)
    assert dead.headers[h.REASON_CODE] == "system.rejected"
    assert dead.headers[h.REASON] == "the portal refused the dossier"
    assert dead.headers[h.ATTEMPT] == 0
    assert dead.headers[h.ORIGINAL_ROUTING_KEY] == ORIGINAL_KEY


def test_an_invalid_message_from_the_handler_goes_to_the_invalid_queue_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()

    async def handler(d: Delivery) -> None:
        calls.deliveries.append(d)
        raise InvalidMessage("no mapping for procedure 2.002492", code="client.mapping_failed")

    consumer = asyncio.run(
        _consume(settings, topo, handler, [_message(topo)], lambda c: c.stats.invalid == 1)
    )
    assert calls.attempts == [0]
    [bad] = read_all(settings.amqp_url, topo.names.invalid)
    assert bad.headers[h.REASON_CODE] == "client.mapping_failed"
    assert (consumer.stats.retried, consumer.stats.dead) == (0, 0)
    assert depth(settings.amqp_url, topo.names.dead) == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (lambda b: b[: len(b) // 2], "client.unparseable"),  # truncated
        (lambda b: b"\xff\xfe" + b, "client.unparseable"),  # not UTF-8 JSON
        (lambda b: b"[1, 2]", "client.unparseable"),  # JSON, not an object
        (lambda b: b'{"id": "x"}', "client.envelope_invalid"),  # an object, not an envelope
        # Nested beyond the JSON parser's recursion: parked, not retried as a failure.
        (lambda b: b[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         "client.unparseable"),
    ],
)
def test_an_undecodable_body_is_invalid_and_never_reaches_the_handler(
    settings: Settings, tmp_path: Path, body: Callable[[bytes], bytes], code: str
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()
    good = _message(topo)
    broken = Outgoing(
        body(good.body), good.exchange, good.routing_key, good.message_id, good.type,
        dict(good.headers), good.app_id,
    )

    async def handler(d: Delivery) -> None:
        calls.deliveries.append(d)

    consumer = asyncio.run(
        _consume(settings, topo, handler, [broken], lambda c: c.stats.invalid == 1)
    )
    assert calls.deliveries == []
    [bad] = read_all(settings.amqp_url, topo.names.invalid)
    assert bad.body == broken.body
    assert bad.message_id == good.message_id
    assert bad.headers[h.REASON_CODE] == code
    assert bad.headers[h.ORIGINAL_ROUTING_KEY] == ORIGINAL_KEY
    assert consumer.stats.retried == 0


def test_the_same_message_delivered_again_runs_the_handler_once(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()
    message = _message(topo)

    both_received = asyncio.Event()

    async def handler(d: Delivery) -> None:
        calls.deliveries.append(d)
        # Stay in progress until the second copy has arrived, so the two meet in flight.
        await asyncio.wait_for(both_received.wait(), 10)

    async def scenario() -> Consumer:
        async with Publisher(settings.amqp_url, settings) as pub:
            consumer = Consumer(
                settings, topo.work_queue("orders"), handler, publisher=pub,
                processed=MemoryProcessedIds(),
            )
            consumer.start()
            await consumer.wait_consuming()
            # Two copies in flight together, then one more after the first was processed.
            await asyncio.gather(pub.publish(message), pub.publish(message))
            await eventually(lambda: consumer.stats.received == 2)
            both_received.set()
            await eventually(lambda: consumer.stats.handled + consumer.stats.duplicates == 2)
            await pub.publish(message)
            await eventually(lambda: consumer.stats.duplicates == 2)
            await consumer.stop()
            return consumer

    consumer = asyncio.run(scenario())
    assert len(calls.deliveries) == 1
    assert (consumer.stats.handled, consumer.stats.duplicates) == (1, 2)
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0
    assert depth(settings.amqp_url, topo.names.invalid) == 0


def test_the_same_id_with_another_body_is_a_replay(settings: Settings, tmp_path: Path) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()
    first = _message(topo, 1)
    replay = _message(topo, 2, id=first.message_id)

    async def handler(d: Delivery) -> None:
        calls.deliveries.append(d)

    consumer = asyncio.run(
        _consume(
            settings, topo, handler, [first, replay], lambda c: c.stats.invalid == 1,
            processed=MemoryProcessedIds(),
        )
    )
    assert [d.body for d in calls.deliveries] == [first.body]
    [bad] = read_all(settings.amqp_url, topo.names.invalid)
    assert bad.body == replay.body
    assert bad.headers[h.REASON_CODE] == "client.replayed_id"
    assert consumer.stats.handled == 1


def test_what_the_handler_returns_is_published_before_the_ack(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)

    def handler(d: Delivery) -> list[Outgoing]:
        env = d.envelope.derive(source=d.envelope.source, type="vn.gov.relay.done", data={})
        return [Outgoing.signed(env, NullSigner(), topo.names.events)]

    messages = [_message(topo, i) for i in range(20)]
    asyncio.run(_consume(settings, topo, handler, messages, lambda c: c.stats.handled == 20))
    relayed = read_all(settings.amqp_url, topo.work_queue("sink"))
    assert sorted(r.properties.type for r in relayed) == ["vn.gov.relay.done"] * 20
    assert {r.body for r in relayed} and all(b"causationid" in r.body for r in relayed)
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0


def test_canonical_events_a_handler_returns_are_signed_by_the_consumer(
    settings: Settings, tmp_path: Path
) -> None:
    """An adapter's handler returns envelopes and holds no key: the consumer signs them with
    the worker's signer (verifiable against the trust store), for the events exchange, with
    the routing key and the lt-slot header of Outgoing.signed."""
    topo = _topology(settings, tmp_path)
    signer = signer_for(settings.hub_id, TrustStore(settings.trust_dir))

    def handler(d: Delivery) -> list[Envelope]:
        return [d.envelope.derive(source=settings.hub_id, type="vn.gov.relay.done", data={})]

    messages = [_message(topo, i) for i in range(3)]
    asyncio.run(_consume(settings, topo, handler, messages, lambda c: c.stats.handled == 3,
                         signer=signer))
    relayed = read_all(settings.amqp_url, topo.work_queue("sink"))
    assert len(relayed) == 3
    verifier = Verifier.from_settings(settings)
    for r in relayed:
        env = Envelope.from_bytes(r.body)
        assert verifier.verify(r.body, r.headers[h.SIGNATURE], env).system_id == settings.hub_id
        assert r.routing_key == routing_key(env)
        assert r.headers[h.SLOT] == slot_of(env.subject)
        assert r.properties.message_id == env.id


def test_a_result_that_routes_nowhere_is_parked_and_the_handler_is_not_run_again(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    calls = Calls()

    async def handler(d: Delivery) -> list[Outgoing]:
        calls.deliveries.append(d)
        return [Outgoing(b"{}", "", f"{settings.name_prefix}.no-such-queue", "m", "t")]

    consumer = asyncio.run(_consume(settings, topo, handler, [_message(topo)],
                                    lambda c: c.stats.handled == 1))
    # The handler's call was made: it is not made again for want of a route for its result.
    assert calls.attempts == [0]
    [dead] = read_all(settings.amqp_url, topo.names.dead)
    assert dead.body == b"{}" and dead.message_id == "m"
    assert dead.headers[h.REASON_CODE] == "server.publish_failed"
    assert "unroutable" in dead.headers[h.REASON]
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0
    assert consumer.stats.dead == 1 and consumer.stats.retried == 0


def test_results_the_broker_refuses_are_published_again_and_the_handler_runs_once(
    settings: Settings, tmp_path: Path
) -> None:
    """A full queue (``reject-publish``) nacks the results, as a quorum queue whose leader is
    lost does in a failover: the results are published again until confirmed, each input is
    handled once, and every result arrives."""
    topo = _topology(settings, tmp_path)
    full = f"{settings.name_prefix}.results"
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    ch = conn.channel()
    ch.queue_declare(full, durable=True, arguments={
        "x-queue-type": "classic", "x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", full, b"filler", pika.BasicProperties(message_id="filler"))
    conn.close()
    calls: Counter[str] = Counter()

    async def handler(d: Delivery) -> list[Outgoing]:
        calls[d.message_id] += 1
        return [Outgoing(d.body, "", full, f"result-{d.message_id}", "t")]

    messages = [_message(topo, i) for i in range(5)]
    taken: list[str] = []

    async def go() -> Consumer:
        async with Publisher(settings.amqp_url, settings) as pub:
            consumer = Consumer(settings, topo.work_queue("orders"), handler, publisher=pub,
                                processed=MemoryProcessedIds(), concurrency=5)
            consumer.start()
            await consumer.wait_consuming()
            for m in messages:
                await pub.publish(m)
            await eventually(lambda: consumer.stats.republished >= len(messages), 10,
                             "every result refused at least once")
            assert consumer.stats.handled == 0
            # The queue takes one message at a time: each read makes room for one result.
            deadline = time.monotonic() + 30
            while len(taken) < len(messages):
                assert time.monotonic() < deadline, f"only {taken} arrived"
                got = await asyncio.to_thread(read_all, settings.amqp_url, full, timeout=0.5)
                taken.extend(r.message_id for r in got if r.message_id != "filler")
            await eventually(lambda: consumer.stats.handled == len(messages), 10,
                             "the inputs acked")
            await consumer.stop()
        return consumer

    try:
        consumer = asyncio.run(go())
    finally:
        delete_queues(settings.amqp_url, [full])
    assert sorted(taken) == sorted(f"result-{m.message_id}" for m in messages)
    assert calls == {m.message_id: 1 for m in messages}
    assert consumer.stats.retried == 0 and consumer.stats.dead == 0
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_an_ordered_consumer_keeps_each_dossiers_order_and_runs_dossiers_concurrently(
    settings: Settings, tmp_path: Path, ordered: bool
) -> None:
    topo = _topology(settings, tmp_path, ordered=ordered)
    seen: dict[str, list[int]] = {}
    running: Counter[str] = Counter()
    most = 0
    most_per_dossier = 0
    overlap = 10  # deliveries in flight at once that show the dossiers run concurrently
    overlapping = asyncio.Event()

    async def handler(d: Delivery) -> list[Outgoing]:
        nonlocal most, most_per_dossier
        subject = d.envelope.subject
        running[subject] += 1
        most = max(most, sum(running.values()))
        most_per_dossier = max(most_per_dossier, running[subject])
        if most >= overlap:
            overlapping.set()
        # The first deliveries hold until ten of them are in flight together: a consumer that
        # ran its deliveries one at a time would never get there, and the test would fail at
        # the deadline for all 100 to be handled.
        await overlapping.wait()
        # The call to a system that a handler makes: the loop goes to the other deliveries
        # meanwhile, so later ones overlap too, and a consumer that ran one dossier's events
        # side by side, or out of order, would be caught after the first wave as well.
        await elsewhere()
        running[subject] -= 1
        seq = d.envelope.sequence
        assert seq is not None
        seen.setdefault(subject, []).append(seq)
        env = d.envelope.derive(source=d.envelope.source, type="vn.gov.relay.done", data={})
        return [Outgoing.signed(env, NullSigner(), topo.names.events)]

    # 20 dossiers with 5 events each, published interleaved (sample_envelope: subject i % 10000).
    messages = [_message(topo, dossier, sequence=n) for n in range(5) for dossier in range(20)]
    asyncio.run(
        _consume(settings, topo, handler, messages, lambda c: c.stats.handled == 100,
                 ordered=ordered, concurrency=64)
    )
    assert most >= overlap  # dossiers overlap
    assert sorted(n for events in seen.values() for n in events) == sorted(
        n for n in range(5) for _ in range(20))
    if ordered:
        assert most_per_dossier == 1  # one dossier's events one at a time...
        assert all(events == [0, 1, 2, 3, 4] for events in seen.values())  # ...in order


def test_a_consumer_runs_in_a_background_thread_for_synchronous_callers(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path)
    got: list[str] = []

    def make() -> Consumer:
        return Consumer(settings, topo.work_queue("orders"), lambda d: got.append(d.message_id))

    message = _message(topo)
    with consuming(make) as consumer:
        async def publish() -> None:
            async with Publisher(settings.amqp_url, settings) as pub:
                await pub.publish(message)

        asyncio.run(publish())
        wait_for(lambda: consumer.stats.handled == 1, message="the message handled")
    assert got == [message.message_id]
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0


def test_cut_connections_lose_nothing_and_effects_stay_exactly_once(
    settings: Settings, tmp_path: Path, amqp_vhost: str
) -> None:
    topo = _topology(settings, tmp_path)
    total = 5000
    ahead = 250
    effects: Counter[str] = Counter()
    processed = MemoryProcessedIds()

    async def handler(d: Delivery) -> list[Outgoing]:
        effects[d.message_id] += 1
        env = d.envelope.derive(source=d.envelope.source, type="vn.gov.relay.done", data={})
        return [Outgoing.signed(env, NullSigner(), topo.names.events)]

    async def scenario() -> tuple[Consumer, Publisher, list[str]]:
        consumer = Consumer(settings, topo.work_queue("orders"), handler, processed=processed)
        consumer.start()
        await consumer.wait_consuming()
        ids: list[str] = []
        async with Publisher(settings.amqp_url, settings, name="producer") as producer:
            futures: list[asyncio.Future[None]] = []
            cuts: list[asyncio.Task[None]] = []
            for i in range(total):
                # Two cuts, one after the other, while messages are being published and
                # consumed; the last 500 are held back until both have happened.
                if i == 300 or (len(cuts) == 1 and cuts[0].done()):
                    cuts.append(asyncio.create_task(close_connections(amqp_vhost)))
                if i == total - 500:
                    while len(cuts) < 2 or not cuts[1].done():
                        await asyncio.wait(cuts)
                        if len(cuts) == 1:
                            cuts.append(asyncio.create_task(close_connections(amqp_vhost)))
                if i % 25 == 0:
                    # The producer stays at most `ahead` messages ahead of the handler, so the
                    # cuts fall while messages are both being published and being consumed.
                    await eventually(lambda floor=i - ahead: len(effects) >= floor, 30,
                                     f"the handler to come within {ahead} messages of the "
                                     f"producer at message {i}")
                m = _message(topo, i, pad=500)
                ids.append(m.message_id)
                await producer.wait_for_room()
                futures.append(producer.publish_nowait(m))
            for cut in cuts:
                await cut
            await asyncio.gather(*futures)
            await eventually(lambda: len(effects) == total, 30, "every message handled")
            await consumer.stop()
            return consumer, producer, ids

    consumer, producer, ids = asyncio.run(scenario())
    assert consumer.stats.reconnects >= 2 and producer.stats.reconnects >= 2
    assert set(effects) == set(ids)
    assert set(effects.values()) == {1}  # the handler ran exactly once per message
    # Everything was acked: nothing ready again after the consumer left, nothing parked.
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0
    assert depth(settings.amqp_url, topo.names.dead) == 0
    assert depth(settings.amqp_url, topo.names.invalid) == 0
    assert depth(settings.amqp_url, topo.names.unroutable) == 0
    relayed = read_all(settings.amqp_url, topo.work_queue("sink"))
    assert {Envelope.from_bytes(r.body).causationid for r in relayed} == set(ids)
