"""Postal adapter end to end through the real broker: a signed pick-up request reaches the
postal work queue, the worker orders on a pooled waybill and publishes a signed
``vn.gov.postal.tracking-updated``; with the postal service down the request walks the retry
tiers into the dead letters with the reason, and so does one that finds the pool empty."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from postal_support import UPSTREAM, context, pickup_envelope

from adapters.postal import adapter, events
from adapters.postal.simulator import PostalSimulator, make_simulator
from adapters.postal.store import SqlWaybills
from adapters.postal.store import metadata as tables
from adapters.postal.worker import PostalWorker
from hub import headers as h
from hub.adaptertables import ensure_schema
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.processed import MemoryProcessedIds
from hub.broker.publisher import Publisher
from hub.envelope import Envelope
from hub.handlers import for_consumer
from hub.numberpool import PoolCounts
from hub.settings import Settings
from hub.signing import TrustStore, Verifier
from hub.store import Store
from hub.testing.broker import Received, declared_topology, depth, read_all
from hub.testing.keys import signer_for
from hub.testing.waiting import eventually

OBSERVER = Destination("observer", ("postal.tracking-updated.#",), ordered=False)


@pytest.fixture
def sim() -> Iterator[PostalSimulator]:
    with make_simulator(webhook_token="") as simulator:
        yield simulator


def history_of(letter: Received) -> list[dict[str, Any]]:
    history = letter.headers[h.HISTORY]
    if isinstance(history, str | bytes):
        history = json.loads(history)
    assert isinstance(history, list)
    return history


def test_postal_order_through_the_broker(
    settings: Settings, tmp_path: Path, sim: PostalSimulator
) -> None:
    trust = TrustStore(settings.trust_dir)
    upstream = signer_for(UPSTREAM, trust)
    hub_signer = signer_for(settings.hub_id, trust)
    topo = declared_topology(settings, tmp_path, adapter, OBSERVER)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    ctx = context(settings, sim.base_url, store=store)
    ensure_schema(store.engine, tables)
    SqlWaybills(store.engine).add("LIENTHONG", ["VNP00001", "VNP00002"], datetime.now(UTC))
    work, observed = topo.work_queue("postal"), topo.work_queue("observer")
    amqp = settings.amqp_url

    def publishable(dossier: str) -> Outgoing:
        return Outgoing.signed(pickup_envelope(dossier_code=dossier), upstream, topo.names.events)

    async def scenario() -> tuple[list[Received], list[Received], list[Received], PoolCounts]:
        handler = adapter.make_handler(ctx)
        assert isinstance(handler, PostalWorker)
        consumer = Consumer(
            settings,
            work,
            for_consumer(handler, store),
            verifier=Verifier.from_settings(settings),
            processed=MemoryProcessedIds(),
            name="postal",
            signer=hub_signer,
        )
        publisher = Publisher(amqp, settings)
        await publisher.start()
        consumer.start()
        try:
            await consumer.wait_consuming()
            # 1. The order is accepted: state 1 (registered), signed by the hub.
            await publisher.publish(publishable("000.00.00.H56-250101-0001"))
            await eventually(lambda: depth(amqp, observed) == 1, 10, "the tracking event",
                             blocking=True)
            registered = await asyncio.to_thread(read_all, amqp, observed)
            # 2. The postal service down: every retry tier, then the dead letters.
            sim.down()
            await publisher.publish(publishable("000.00.00.H56-250101-0002"))
            await eventually(lambda: depth(amqp, topo.names.dead) == 1, 15, "the first dead letter",
                             blocking=True)
            sim.up()
            # 3. The pool is empty now (the second number went to the order in 2): the reason
            # says how to refill it.
            await publisher.publish(publishable("000.00.00.H56-250101-0003"))
            await eventually(lambda: depth(amqp, topo.names.dead) == 2, 15,
                             "the second dead letter", blocking=True)
            dead = await asyncio.to_thread(read_all, amqp, topo.names.dead)
            return registered, dead[:1], dead[1:], SqlWaybills(store.engine).counts("LIENTHONG")
        finally:
            sim.up()
            await consumer.stop()
            await publisher.close()
            await handler.aclose()
            store.close()

    registered, down, empty, counts = asyncio.run(scenario())

    [answer] = registered
    env = Envelope.from_bytes(answer.body)
    assert (env.type, env.source) == (events.TRACKING_UPDATED, settings.hub_id)
    assert answer.routing_key == "postal.tracking-updated.000_00_00_H56.2_002492"
    Verifier.from_settings(settings).verify(answer.body, answer.headers[h.SIGNATURE], env)
    assert (env.data["state"], env.data["waybill"]) == (1, "VNP00001")
    assert sim.orders["VNP00001"].order_number == "000.00.00.H56-250101-0001"

    [letter] = down
    assert letter.headers[h.REASON_CODE] == "system.unavailable"
    assert f"gave up after {len(settings.retry_tiers) + 1} attempts" in letter.headers[h.REASON]
    assert len(history_of(letter)) == len(settings.retry_tiers) + 1
    # Its four attempts kept one waybill: the pool had just enough for the two orders.
    assert counts == PoolCounts(free=0, taken=2, burned=0)

    [starved] = empty
    assert starved.headers[h.REASON_CODE] == "server.waybill_pool_empty"
    assert "lienthong postal pool add" in starved.headers[h.REASON]
    assert len(history_of(starved)) == len(settings.retry_tiers) + 1
