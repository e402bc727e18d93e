"""The broker is a list of nodes: the settings take several, a client tries them in turn, and on a
RabbitMQ cluster of the test's own (three nodes, tests/cluster.py) killing the node that the
publisher and the worker are connected to does not stop deliveries: they move to another
node, quorum queues elect new leaders, nothing is lost and nothing is handled twice."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, free_port, rabbitmq_cluster
from pydantic import ValidationError

from hub.api.app import default_publisher
from hub.broker import declare
from hub.broker.connection import Backoff, BrokerNodes
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.publisher import Publisher, PublishFailed
from hub.broker.topology import Topology
from hub.errors import BrokerUnavailable
from hub.outbox.relay import OutboxRelay
from hub.settings import Settings
from hub.store import Store
from hub.testing.broker import NullSigner, delete_queues, read_all, sample_envelope
from hub.testing.waiting import eventually, wait_for

NODES = ["amqp://u:p@node1:5672/%2F", "amqp://u:p@node2:5672/%2F", "amqp://u:p@node3:5672/%2F"]


# -- the list of nodes in the settings ----------------------------------------------------------

def test_amqp_urls_from_the_environment_as_json_or_comma_separated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_AMQP_URLS", json.dumps(NODES[:2]))
    assert Settings().broker_urls == NODES[:2]
    monkeypatch.setenv("LIENTHONG_AMQP_URLS", " , ".join(NODES))
    settings = Settings()
    assert settings.broker_urls == NODES
    assert settings.amqp_url == NODES[0]  # what single-URL code reads: the first node


def test_a_single_amqp_url_is_a_list_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIENTHONG_AMQP_URLS", raising=False)
    monkeypatch.setenv("LIENTHONG_AMQP_URL", NODES[1])
    assert Settings().broker_urls == [NODES[1]]


def test_a_node_that_is_not_an_amqp_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(amqp_urls=f"{NODES[0]},http://admin:secret@node2/")
    message = str(caught.value.errors()[0]["msg"])
    assert "node 2 is not an amqp:// or amqps:// URL" in message
    assert "secret" not in message


def test_the_nodes_are_tried_from_the_one_after_the_node_lost() -> None:
    nodes = BrokerNodes(NODES)
    assert [u for _, u in nodes.order()] == NODES
    nodes.served(0)
    nodes.lost(0)
    assert [u for _, u in nodes.order()] == [NODES[1], NODES[2], NODES[0]]
    nodes.served(1)
    nodes.lost(0)  # a late report of the link on node 1 does not skip node 2
    assert nodes.first == NODES[1]
    nodes.lost(1)
    nodes.lost(2)
    assert nodes.first == NODES[0]


# -- a node that does not answer, on the shared broker -------------------------------------------

def test_clients_skip_a_node_that_does_not_answer(settings: Settings, amqp_url: str) -> None:
    dead = amqp_url.replace(":5672/", f":{free_port()}/")
    settings = settings.model_copy(update={"amqp_urls": [dead, amqp_url]})
    empty = settings.data_dir / "topology.toml"
    empty.write_text("")
    topology = Topology.from_settings(settings, [Destination("sink", ("dossier.#",), False)],
                                      topology_file=empty)
    actions = declare.apply(topology, settings.broker_urls)
    assert {a.outcome for a in actions} >= {"created"}
    queue = topology.work_queue("sink")

    async def go() -> tuple[str | None, int]:
        async with Publisher(settings.broker_urls, settings) as pub:
            await pub.publish(Outgoing.signed(sample_envelope(1), NullSigner(),
                                              topology.names.events))
            return pub.node, pub.stats.reconnects

    try:
        node, reconnects = asyncio.run(go())
        assert node == amqp_url and reconnects == 0
        assert len(read_all(settings.broker_urls, queue)) == 1
        with pytest.raises(BrokerUnavailable, match=r"any of the 2 RabbitMQ nodes") as caught:
            declare.apply(topology, [dead, dead.replace("127.0.0.1", "127.0.0.2")])
        assert "guest" not in caught.value.message  # credentials stay out of messages
    finally:
        delete_queues(amqp_url, [q.name for q in topology.queues])


# -- a cluster of the test's own -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with rabbitmq_cluster(tmp_path_factory.mktemp("rabbitmq")) as running:
        yield running


BATCH = 100
FAILOVER_DEADLINE = 30.0  # seconds from the kill until every message is handled


@pytest.mark.slow
def test_deliveries_continue_when_the_connected_node_dies(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    node1 = cluster.nodes[0]
    settings = Settings(data_dir=tmp_path, amqp_urls=cluster.urls, name_prefix="ltcluster",
                        retry_tiers=[0.5, 1.0], reconnect_initial=0.05, reconnect_max=0.5)
    assert settings.broker_urls[0] == node1.url
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    topology = Topology.from_settings(settings, [Destination("sink", ("dossier.#",), False)],
                                      topology_file=empty)
    declare.apply(topology, settings.broker_urls)
    events = topology.names.events

    handled: collections.Counter[str] = collections.Counter()
    gate = asyncio.Event()  # holds the second batch in the worker's hands across the kill
    held = {"n": 0}

    async def handle(delivery: Delivery) -> None:
        i = delivery.envelope.data["i"]
        if BATCH <= i < 2 * BATCH and not gate.is_set():
            held["n"] += 1
            await gate.wait()
        handled[delivery.message_id] += 1

    def batch(start: int) -> list[Outgoing]:
        return [Outgoing.signed(sample_envelope(i), NullSigner(), events)
                for i in range(start, start + BATCH)]

    sent: list[str] = []

    async def publish(pub: Publisher, outgoing: Outgoing) -> None:
        # As the outbox relay does: a queue whose leader died refuses publishes (nack) until
        # the others have elected a new one; the message is published again.
        backoff = Backoff(0.05, 0.5)
        while True:
            try:
                await pub.publish(outgoing)
                return
            except PublishFailed:
                await asyncio.sleep(backoff.next())

    async def go(store: Store) -> tuple[Consumer, Publisher, float, list[str | None]]:
        async with Publisher(settings.broker_urls, settings, name="cluster test") as pub:
            consumer = Consumer(settings, topology.work_queue("sink"), handle,
                                processed=store.processed, name="sink")
            consumer.start()
            await consumer.wait_consuming()
            assert pub.node == node1.url and consumer.nodes.first == node1.url

            first = batch(0)
            await asyncio.gather(*(publish(pub, o) for o in first))
            sent.extend(o.message_id for o in first)
            await eventually(lambda: len(handled) == BATCH, 20, "the first batch")

            second = batch(BATCH)
            await asyncio.gather(*(publish(pub, o) for o in second))
            sent.extend(o.message_id for o in second)
            await eventually(lambda: held["n"] == BATCH, 20, "the worker to hold a batch")

            # Node 1 dies with a batch delivered and unacked, its results not yet published.
            await asyncio.to_thread(cluster.kill, node1)
            killed = time.monotonic()
            gate.set()
            third = batch(2 * BATCH)
            # Published while the publisher is reconnecting: it takes them, then sends them
            # to the node it reaches.
            await asyncio.gather(*(publish(pub, o) for o in third))
            sent.extend(o.message_id for o in third)
            await eventually(lambda: len(handled) == 3 * BATCH, FAILOVER_DEADLINE,
                             "every message handled after the kill")
            took = time.monotonic() - killed
            serving = [pub.node, consumer.nodes.first]
            # The held batch was redelivered by the new leader: its copies are absorbed as
            # duplicates (their ids were recorded), never handled again.
            await eventually(lambda: consumer.stats.duplicates >= BATCH, 20,
                             "the redelivered batch")
            await consumer.stop()  # finishes what it holds: every result confirmed
            return consumer, pub, took, serving

    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        consumer, pub, took, serving = asyncio.run(go(store))

    print(f"failover: every message handled {took:.1f}s after the kill")
    assert set(handled) == set(sent) and len(sent) == 3 * BATCH
    twice = [m for m, n in handled.items() if n != 1]
    assert twice == [], f"{len(twice)} messages handled more than once"
    assert consumer.stats.reconnects >= 1 and pub.stats.reconnects >= 1
    assert node1.url not in serving and None not in serving
    # `topology apply` still works with the first node of the list dead.
    again = declare.apply(topology, settings.broker_urls)
    assert {a.outcome for a in again if a.kind == "queue"} == {"exists"}


@pytest.mark.slow
def test_the_outbox_relay_and_topology_apply_go_past_a_dead_first_node(
        cluster: Cluster, tmp_path: Path) -> None:
    node1 = cluster.nodes[0]
    cluster.kill(node1)  # already dead after the failover test; the list still names it first
    settings = Settings(data_dir=tmp_path, amqp_urls=cluster.urls, name_prefix="ltrelay",
                        reconnect_initial=0.05, reconnect_max=0.5)
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    topology = Topology.from_settings(settings, [Destination("sink", ("dossier.#",), False)],
                                      topology_file=empty)
    assert {a.outcome for a in declare.apply(topology, settings.broker_urls)
            if a.kind == "queue"} == {"created"}
    accepted = [Outgoing.signed(sample_envelope(i), NullSigner(), topology.names.events)
                for i in range(50)]

    async def go(store: Store) -> str | None:
        relay = OutboxRelay(store, default_publisher(settings), poll_interval=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            await eventually(lambda: relay.published == len(accepted), 30,
                             "the relay to publish the outbox")
            assert relay.publisher is not None
            return relay.publisher.node
        finally:
            stop.set()
            await task

    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        with store.begin() as tx:
            tx.outbox_add_many(accepted)
        node = asyncio.run(go(store))
    assert node in cluster.urls[1:]
    published = read_all(settings.broker_urls, topology.work_queue("sink"))
    assert {r.message_id for r in published} == {o.message_id for o in accepted}


@pytest.mark.slow
def test_results_refused_in_a_failover_are_published_again_not_obtained_again(
        cluster: Cluster, tmp_path: Path) -> None:
    """A handler that returns results, its worker connected to the node that dies with the
    results unconfirmed: the broker refuses them (the queues' leader is gone) or the channel
    is lost; they are published again, every input is handled exactly once (its external call
    is never made again) and every result arrives."""
    node1, node2, node3 = cluster.nodes
    if not node1.alive:  # killed by the tests above: back in the cluster, so two survive
        cluster.start(node1, node2)
        cluster.wait_up([node1], 90)
        wait_for(lambda: len(cluster.running()) == 3, 90, "node 1 to rejoin the cluster",
                 interval=0.05)
    # Connected to node 2 first, so the queues' leaders are there (client-local) and die.
    urls = [node2.url, node3.url, node1.url]
    settings = Settings(data_dir=tmp_path, amqp_urls=urls, name_prefix="ltresults",
                        retry_tiers=[0.5, 1.0], reconnect_initial=0.05, reconnect_max=0.5)
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    topology = Topology.from_settings(settings, [Destination("sink", ("dossier.#",), False),
                                                 Destination("out", ("relay.#",), False)],
                                      topology_file=empty)
    declare.apply(topology, settings.broker_urls)
    events = topology.names.events

    handled: collections.Counter[str] = collections.Counter()
    results: dict[str, str] = {}
    gate = asyncio.Event()  # holds the batch in the worker's hands across the kill
    waiting = {"n": 0}

    async def handle(delivery: Delivery) -> list[Outgoing]:
        if not gate.is_set():
            waiting["n"] += 1
            await gate.wait()
        handled[delivery.message_id] += 1
        env = delivery.envelope.derive(source=delivery.envelope.source,
                                       type="vn.gov.relay.done", data={})
        results[delivery.message_id] = env.id
        return [Outgoing.signed(env, NullSigner(), events)]

    inputs = [Outgoing.signed(sample_envelope(i), NullSigner(), events) for i in range(BATCH)]

    async def go(store: Store) -> Consumer:
        async with Publisher(settings.broker_urls, settings, name="cluster test") as pub:
            consumer = Consumer(settings, topology.work_queue("sink"), handle,
                                processed=store.processed, name="sink")
            consumer.start()
            await consumer.wait_consuming()
            assert consumer.nodes.first == node2.url
            await asyncio.gather(*(pub.publish(o) for o in inputs))
            await eventually(lambda: waiting["n"] == BATCH, 20, "the worker to hold the batch")
            # The handlers answer as node 2 dies: their results go to a dead node's channel,
            # then to queues whose leader is being elected again.
            await asyncio.to_thread(cluster.kill, node2)
            gate.set()
            await eventually(lambda: consumer.stats.handled >= BATCH, FAILOVER_DEADLINE,
                             "every result confirmed after the kill")
            await eventually(lambda: consumer.stats.duplicates >= BATCH, 20,
                             "the redelivered batch absorbed")
            await consumer.stop()
            return consumer

    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        consumer = asyncio.run(go(store))

    print(f"results published again after a refusal: {consumer.stats.republished}")
    assert len(handled) == BATCH
    twice = [m for m, n in handled.items() if n != 1]
    assert twice == [], f"{len(twice)} inputs handled more than once"
    assert consumer.stats.retried == 0 and consumer.stats.dead == 0
    arrived = {r.message_id for r in read_all(settings.broker_urls, topology.work_queue("out"))}
    assert arrived == set(results.values())
