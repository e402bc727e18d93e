"""End to end on the real broker: a signed dossier event published to the events exchange
reaches the provincial work queue, the consumer runs the adapter's handler, the simulator gets
the dossier; with the simulator down the next one walks the retry tiers into the dead letters
with the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

from provincial_support import PORTAL_SOURCE, sample_dossier

from adapters.provincial import adapter
from adapters.provincial.simulator import ProvincialSimulator
from hub import headers as h
from hub.adapters import AdapterContext, load_config
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.handlers import for_consumer
from hub.settings import PROJECT_ROOT, Settings
from hub.signing import keys
from hub.signing.jws import Signer
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier
from hub.testing.broker import depth, read_all
from hub.testing.waiting import eventually

DELIVERED = "000.00.00.H56-250101-0001"
DEAD = "000.00.00.H56-250101-0002"


def submitted(code: str) -> Envelope:
    dossier = sample_dossier(code)
    return Envelope.new(source=PORTAL_SOURCE, type="vn.gov.dossier.submitted", subject=code,
                        data=dossier.model_dump(mode="json"), agency=dossier.agency_code,
                        procedure=dossier.procedure_code, sequence=1)


def test_signed_event_is_delivered_then_dead_lettered_when_the_province_is_down(
    settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    topo = Topology.from_settings(settings, [adapter], topology_file=empty)
    declare.apply(topo, settings.amqp_url)
    queue = topo.work_queue("provincial")

    # The portal signs its events; the worker trusts its certificate.
    portal = keys.generate(PORTAL_SOURCE, "ES256")
    assert portal.certificate is not None
    trust = TrustStore(tmp_path / "trust")
    trust.add(portal.certificate_pem(), alg="ES256")
    signer = Signer(portal.private_key, portal.certificate)
    verifier = Verifier(trust, max_age=settings.signature_max_age,
                        clock_skew=settings.clock_skew, retry_grace=600.0)

    with ProvincialSimulator() as sim:
        config = load_config(PROJECT_ROOT / "mappings", "provincial")
        config["base_url"] = sim.base_url
        config["policy"] = {"timeout": 30.0, "attempts": 1, "breaker_failures": 100}
        ctx = AdapterContext(settings=settings, config=config)

        async def go() -> Consumer:
            handler = adapter.make_handler(ctx)
            async with Publisher(settings.amqp_url, settings) as pub:
                consumer = Consumer(settings, queue, for_consumer(handler), verifier=verifier,
                                    publisher=pub,
                                    ordered=adapter.ordered, name="provincial-e2e")
                consumer.start()
                await consumer.wait_consuming()
                await pub.publish(Outgoing.signed(submitted(DELIVERED), signer,
                                                  topo.names.events))
                await eventually(lambda: sim.dossier(DELIVERED), 10, "the delivery")
                sim.pause()
                await pub.publish(Outgoing.signed(submitted(DEAD), signer, topo.names.events))
                await eventually(lambda: consumer.stats.dead == 1, 15, "the dead letter")
                await consumer.stop()
            await handler.aclose()  # type: ignore[attr-defined]
            return consumer

        consumer = asyncio.run(go())

    delivered = sim.dossier(DELIVERED)
    assert delivered is not None and delivered["kenhNop"] == "TRUC_TUYEN"
    assert (consumer.stats.handled, consumer.stats.retried, consumer.stats.dead) == (1, 3, 1)
    [dead] = read_all(settings.amqp_url, topo.names.dead)
    assert Envelope.from_bytes(dead.body).subject == DEAD
    assert dead.headers[h.REASON_CODE] == "system.unavailable"
    assert "cannot be reached" in dead.headers[h.REASON]
    assert dead.headers[h.ATTEMPT] == len(settings.retry_tiers)
    assert [e["attempt"] for e in dead.headers[h.HISTORY]] == [0, 1, 2, 3]
    assert depth(settings.amqp_url, queue) == 0
