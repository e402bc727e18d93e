"""The publisher on the real broker: pipelined confirms, what the broker refuses, and nothing
lost when the connection is cut while messages are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from hub import headers as h
from hub.broker import declare
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.names import slot_of
from hub.broker.publisher import Publisher, PublishFailed
from hub.broker.topology import Topology
from hub.envelope import CONTENT_TYPE
from hub.settings import Settings
from hub.testing.broker import (
    NullSigner,
    close_connections,
    delete_queues,
    read_all,
    sample_envelope,
    topology_queues,
)


@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    queues = topology_queues(settings.name_prefix, ['orders'], len(settings.retry_tiers))
    delete_queues(settings.amqp_url, [*queues, f"{settings.name_prefix}.tiny"])



def _topology(settings: Settings, tmp_path: Path) -> Topology:
    path = tmp_path / "topology.toml"
    path.write_text("")
    topo = Topology.from_settings(
        settings, [Destination("orders", ("dossier.#",), ordered=False)], topology_file=path
    )
    declare.apply(topo, settings.amqp_url)
    return topo


def _message(topo: Topology, i: int, pad: int = 0) -> Outgoing:
    return Outgoing.signed(sample_envelope(i, pad=pad), NullSigner(), topo.names.events)


def test_many_publishes_in_flight_are_all_confirmed(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    messages = [_message(topo, i, pad=2000) for i in range(3000)]

    async def scenario() -> Publisher:
        async with Publisher(amqp_url, settings, max_in_flight=200) as pub:
            waiting: list[asyncio.Future[None]] = []
            for m in messages[:2000]:
                await pub.wait_for_room()
                waiting.append(pub.publish_nowait(m))
            # publish() applies the same window by itself.
            await asyncio.gather(*(pub.publish(m) for m in messages[2000:]), *waiting)
            return pub

    pub = asyncio.run(scenario())
    assert pub.stats.confirmed == 3000 and pub.stats.failed == 0
    assert 1 < pub.stats.peak_unconfirmed <= 200
    got = read_all(amqp_url, topo.work_queue("orders"))
    assert sorted(r.message_id for r in got) == sorted(m.message_id for m in messages)


def test_messages_carry_the_properties_of_the_contract(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    env = sample_envelope(7)
    message = Outgoing.signed(env, NullSigner(), topo.names.events)

    async def scenario() -> None:
        async with Publisher(amqp_url, settings) as pub:
            await pub.publish(message)

    asyncio.run(scenario())
    [got] = read_all(amqp_url, topo.work_queue("orders"))
    props = got.properties
    assert got.body == env.to_bytes()
    assert got.routing_key == "dossier.submitted.000_00_00_H56.2_002492"
    assert (props.message_id, props.type, props.app_id) == (env.id, env.type, env.source)
    assert props.content_type == CONTENT_TYPE
    assert props.delivery_mode == 2
    assert isinstance(props.timestamp, int) and props.timestamp > 0
    assert got.headers == {h.SIGNATURE: "unsigned", h.ATTEMPT: 0, h.SLOT: slot_of(env.subject)}


def test_a_direct_publish_to_no_queue_fails_instead_of_vanishing(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    lost = Outgoing(b"{}", "", f"{settings.name_prefix}.no-such-queue", "m-1", "t")

    async def scenario() -> None:
        async with Publisher(amqp_url, settings) as pub:
            with pytest.raises(PublishFailed) as caught:
                await pub.publish(lost)
            assert "unroutable" in caught.value.message
            # The channel is still good.
            await pub.publish(_message(topo, 1))
            assert pub.stats.reconnects == 0

    asyncio.run(scenario())


def test_a_publish_to_a_missing_exchange_fails_once_and_others_go_through(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    bad = Outgoing(b"{}", f"{settings.name_prefix}.nowhere", "x", "m-2", "t")

    async def scenario() -> None:
        async with Publisher(amqp_url, settings) as pub:
            good = [pub.publish_nowait(_message(topo, i)) for i in range(20)]
            with pytest.raises(PublishFailed) as caught:
                await pub.publish(bad)
            assert "does not exist" in caught.value.message
            await asyncio.gather(*good)
            await pub.publish(_message(topo, 99))

    asyncio.run(scenario())
    assert len({r.message_id for r in read_all(amqp_url, topo.work_queue("orders"))}) == 21


def test_a_full_queue_refuses_and_the_publisher_says_so(
    settings: Settings, amqp_url: str
) -> None:
    queue = f"{settings.name_prefix}.tiny"
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    conn.channel().queue_declare(
        queue, durable=True,
        arguments={"x-queue-type": "quorum", "x-max-length": 3, "x-overflow": "reject-publish"},
    )
    conn.close()

    async def scenario() -> list[bool]:
        async with Publisher(amqp_url, settings) as pub:
            outcomes = []
            for i in range(6):
                try:
                    await pub.publish(Outgoing(b"{}", "", queue, f"m-{i}", "t"))
                    outcomes.append(True)
                except PublishFailed as exc:
                    assert "refused" in exc.message
                    outcomes.append(False)
            return outcomes

    outcomes = asyncio.run(scenario())
    # A quorum queue notices it is over its limit after the publish that crosses it.
    assert outcomes[:3] == [True, True, True]
    assert outcomes[-2:] == [False, False]
    assert sum(outcomes) <= 4


def test_a_cut_connection_loses_no_accepted_publish(
    settings: Settings, tmp_path: Path, amqp_url: str, amqp_vhost: str
) -> None:
    topo = _topology(settings, tmp_path)

    async def scenario() -> tuple[Publisher, list[str]]:
        async with Publisher(amqp_url, settings, max_in_flight=500) as pub:
            ids: list[str] = []
            futures: list[asyncio.Future[None]] = []
            cut = asyncio.create_task(close_connections(amqp_vhost))
            # Keep publishing until the cut has happened and some more went through after.
            while not (cut.done() and pub.stats.reconnects and len(ids) >= 3000):
                assert len(ids) < 100_000, "the connection was never cut"
                m = _message(topo, len(ids))
                ids.append(m.message_id)
                await pub.wait_for_room()
                futures.append(pub.publish_nowait(m))
            await cut
            await asyncio.gather(*futures)
            return pub, ids

    pub, ids = asyncio.run(scenario())
    assert pub.stats.reconnects >= 1
    assert pub.stats.resent > 0  # the cut caught publishes in flight, and they were sent again
    assert pub.stats.failed == 0
    got = read_all(amqp_url, topo.work_queue("orders"))
    assert {r.message_id for r in got} == set(ids)
