"""Payment adapter end to end through the real broker: a signed payment request reaches the
payment work queue, the worker calls the gateway simulator and publishes a signed
``vn.gov.payment.initiated``; with the gateway down the request walks the retry tiers into the
dead letters with the reason; bad canonical data goes to the invalid messages at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from payment_support import UPSTREAM, context, request_envelope, sample_request

from adapters.payment import adapter, events
from adapters.payment.simulator import PaymentSimulator, make_simulator
from adapters.payment.worker import PaymentWorker
from hub import headers as h
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.processed import MemoryProcessedIds
from hub.broker.publisher import Publisher
from hub.envelope import Envelope
from hub.handlers import for_consumer
from hub.settings import Settings
from hub.signing import TrustStore, Verifier
from hub.store import Store
from hub.testing.broker import Received, declared_topology, depth, read_all
from hub.testing.keys import signer_for
from hub.testing.waiting import eventually

SECRET = "broker-test-secret"
OBSERVER = Destination("observer", ("payment.initiated.#",), ordered=False)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[PaymentSimulator]:
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    with make_simulator() as simulator:
        yield simulator


def test_payment_through_the_broker(
    settings: Settings, tmp_path: Path, sim: PaymentSimulator
) -> None:
    trust = TrustStore(settings.trust_dir)
    upstream = signer_for(UPSTREAM, trust)
    hub_signer = signer_for(settings.hub_id, trust)
    topo = declared_topology(settings, tmp_path, adapter, OBSERVER)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    ctx = context(settings, sim.base_url, store=store)
    work, observed = topo.work_queue("payment"), topo.work_queue("observer")
    amqp = settings.amqp_url

    def publishable(env: Envelope) -> Outgoing:
        return Outgoing.signed(env, upstream, topo.names.events)

    async def scenario() -> tuple[list[Received], list[Received], list[Received]]:
        handler = adapter.make_handler(ctx)
        assert isinstance(handler, PaymentWorker)
        consumer = Consumer(
            settings,
            work,
            for_consumer(handler, store),
            verifier=Verifier.from_settings(settings),
            processed=MemoryProcessedIds(),
            name="payment",
            signer=hub_signer,
        )
        publisher = Publisher(amqp, settings)
        await publisher.start()
        consumer.start()
        try:
            await consumer.wait_consuming()
            # 1. The gateway answers: the payment URL, signed by the hub, on the events exchange.
            await publisher.publish(publishable(request_envelope()))
            await eventually(lambda: depth(amqp, observed) == 1, 10, "the initiated event",
                             blocking=True)
            initiated = await asyncio.to_thread(read_all, amqp, observed)
            # 2. An amount in fractions of a dong: invalid at once, the gateway never asked.
            await publisher.publish(publishable(request_envelope(amount="10.5", fees=[])))
            await eventually(lambda: depth(amqp, topo.names.invalid) == 1, 10,
                             "the invalid message", blocking=True)
            assert len(sim.requests) == 1
            invalid = await asyncio.to_thread(read_all, amqp, topo.names.invalid)
            # 3. The gateway down: every retry tier, then the dead letters with the reason.
            sim.down()
            await publisher.publish(publishable(request_envelope(sample_request())))
            await eventually(lambda: depth(amqp, topo.names.dead) == 1, 15, "the dead letter",
                             blocking=True)
            dead = await asyncio.to_thread(read_all, amqp, topo.names.dead)
            return initiated, invalid, dead
        finally:
            sim.up()
            await consumer.stop()
            await publisher.close()
            await handler.aclose()
            store.close()

    initiated, invalid, dead = asyncio.run(scenario())

    [answer] = initiated
    env = Envelope.from_bytes(answer.body)
    assert (env.type, env.source) == (events.INITIATED, settings.hub_id)
    assert answer.routing_key == "payment.initiated.000_00_00_H56.2_002492"
    Verifier.from_settings(settings).verify(answer.body, answer.headers[h.SIGNATURE], env)
    assert env.data["payment_url"].startswith(f"{sim.base_url}/pay/")

    [bad] = invalid
    assert bad.headers[h.REASON_CODE] == "client.schema_invalid"
    assert "whole numbers of dong" in bad.headers[h.LAST_ERROR]

    [letter] = dead
    assert letter.headers[h.REASON_CODE] == "system.unavailable"
    assert f"gave up after {len(settings.retry_tiers) + 1} attempts" in letter.headers[h.REASON]
    assert letter.headers[h.ATTEMPT] == len(settings.retry_tiers)
    history = letter.headers[h.HISTORY]
    if isinstance(history, str | bytes):
        history = json.loads(history)
    assert len(history) == len(settings.retry_tiers) + 1
    assert all("payment gateway" in step["message"] for step in history)
