"""Population adapter end to end through the real broker: a signed verification request reaches
the population work queue, the worker asks the simulator and publishes a signed
``vn.gov.citizen.verified``; with the simulator down the request walks the retry tiers into the
dead letters with the reason; a bad identity number goes to the invalid messages at once."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.population import adapter
from adapters.population.simulator import PopulationSimulator
from adapters.population.worker import VERIFIED
from hub import headers as h
from hub.adapters import AdapterContext
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.processed import MemoryProcessedIds
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.handlers import for_consumer
from hub.settings import PROJECT_ROOT, Settings
from hub.signing import Signer, TrustStore, Verifier
from hub.testing.broker import Received, declared_topology, depth, read_all
from hub.testing.keys import signer_for
from hub.testing.waiting import eventually

UPSTREAM = "VN:GOV:000.00.00.H56:igate"
DOSSIER = "000.00.00.H56-250101-0007"
OBSERVER = Destination("observer", ("citizen.verified.#",), ordered=False)


@pytest.fixture
def sim() -> Iterator[PopulationSimulator]:
    with PopulationSimulator() as simulator:
        yield simulator


def request(signer: Signer, topo: Topology, data: dict[str, Any]) -> Outgoing:
    env = Envelope.new(source=UPSTREAM, type="vn.gov.citizen.verification-requested",
                       subject=DOSSIER, data=data, agency="000.00.00.H56", procedure="2.002492")
    return Outgoing.signed(env, signer, topo.names.events)


def test_verification_through_the_broker(
    settings: Settings, tmp_path: Path, sim: PopulationSimulator
) -> None:
    trust = TrustStore(settings.trust_dir)
    upstream = signer_for(UPSTREAM, trust)
    hub_signer = signer_for(settings.hub_id, trust)
    topo = declared_topology(settings, tmp_path, adapter, OBSERVER)
    with (PROJECT_ROOT / "mappings" / "population" / "config.toml").open("rb") as fh:
        config = tomllib.load(fh)
    config.update(url=sim.url, url_env="")
    config["policy"] = {"timeout": 30.0, "attempts": 1, "breaker_failures": 100,
                        "rate_per_second": 0.0}
    ctx = AdapterContext(settings=settings, config=config)
    work = topo.work_queue("population")
    observed = topo.work_queue("observer")
    amqp = settings.amqp_url

    async def scenario() -> tuple[list[Received], list[Received], list[Received]]:
        handler = adapter.make_handler(ctx)
        consumer = Consumer(settings, work, for_consumer(handler),
                            verifier=Verifier.from_settings(settings),
                            processed=MemoryProcessedIds(), name="population", signer=hub_signer)
        publisher = Publisher(amqp, settings)
        await publisher.start()
        consumer.start()
        try:
            await consumer.wait_consuming()
            # 1. A citizen who exists: a signed answer on the events exchange.
            await publisher.publish(request(upstream, topo, {
                "identity_number": "001090012345", "name": "Nguyễn Văn An",
                "birth_date": "1990-01-15"}))
            await eventually(lambda: depth(amqp, observed) == 1, 10, "the verified event",
                             blocking=True)
            answers = await asyncio.to_thread(read_all, amqp, observed)
            # 2. A bad identity number: parked as invalid at once, the system never asked.
            await publisher.publish(request(upstream, topo, {
                "identity_number": "0010900123", "name": "Nguyễn Văn An",
                "birth_date": "1990-01-15"}))
            await eventually(lambda: depth(amqp, topo.names.invalid) == 1, 10,
                             "the invalid message", blocking=True)
            assert sim.calls == ["XacThucThongTinCongDan"]
            invalid = await asyncio.to_thread(read_all, amqp, topo.names.invalid)
            # 3. The system down: every retry tier, then the dead letters with the reason.
            sim.pause()
            await publisher.publish(request(upstream, topo, {
                "identity_number": "038195004321", "name": "Lê Thị Bình",
                "birth_year": 1995}))
            await eventually(lambda: depth(amqp, topo.names.dead) == 1, 15, "the dead letter",
                             blocking=True)
            dead = await asyncio.to_thread(read_all, amqp, topo.names.dead)
            return answers, invalid, dead
        finally:
            if not sim.up:
                sim.resume()
            await consumer.stop()
            await publisher.close()
            await handler.aclose()  # type: ignore[attr-defined]

    answers, invalid, dead = asyncio.run(scenario())

    [answer] = answers
    env = Envelope.from_bytes(answer.body)
    assert (env.type, env.source, env.subject) == (VERIFIED, settings.hub_id, DOSSIER)
    assert answer.routing_key == "citizen.verified.000_00_00_H56.2_002492"
    token = answer.headers[h.SIGNATURE]
    Verifier.from_settings(settings).verify(answer.body, token, env)
    assert env.data["matched"] is True
    assert env.data["identity_number"] == "001090012345"

    [bad] = invalid
    assert bad.headers[h.REASON_CODE] == "client.bad_code"
    assert "is not an identity number" in bad.headers[h.LAST_ERROR]
    assert "0010900123" not in bad.headers[h.LAST_ERROR]  # masked even in the headers

    [letter] = dead
    assert letter.headers[h.REASON_CODE] == "system.unavailable"
    assert f"gave up after {len(settings.retry_tiers) + 1} attempts" in letter.headers[h.REASON]
    assert letter.headers[h.ATTEMPT] == len(settings.retry_tiers)
    history = letter.headers[h.HISTORY]
    if isinstance(history, (str, bytes)):
        history = json.loads(history)
    assert len(history) == len(settings.retry_tiers) + 1
    assert Envelope.from_bytes(letter.body).data["identity_number"] == "038195004321"
