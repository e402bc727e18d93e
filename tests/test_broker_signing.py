"""A consumer with the real verifier (hub.signing): a good signature reaches the handler, and
every kind of bad one lands in the invalid queue without reaching it or being retried."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import headers as h
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.processed import MemoryProcessedIds
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.settings import Settings
from hub.signing import keys
from hub.signing.jws import Signer
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier
from hub.testing.broker import (
    delete_queues,
    read_all,
    sample_envelope,
    topology_queues,
)
from hub.testing.waiting import eventually

SOURCE = "VN:GOV:000.00.00.H56:igate"

@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    queues = topology_queues(settings.name_prefix, ['orders'], len(settings.retry_tiers))
    delete_queues(settings.amqp_url, [*queues])



def _signer(material: keys.KeyMaterial) -> Signer:
    assert material.certificate is not None
    return Signer(material.private_key, material.certificate, material.alg)


def test_only_messages_with_a_good_signature_reach_the_handler(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "topology.toml"
    path.write_text("")
    topo = Topology.from_settings(
        settings, [Destination("orders", ("dossier.#",), ordered=False)], topology_file=path
    )
    declare.apply(topo, settings.amqp_url)
    events = topo.names.events

    now = datetime.now(UTC)
    good = keys.generate(SOURCE, "ES256", 30)
    expired = keys.generate(SOURCE, "ES256", 30, now=now - timedelta(days=60))
    untrusted = keys.generate(SOURCE, "ES256", 30)
    trust = TrustStore(tmp_path / "trust")
    trust.add(good.certificate_pem())
    trust.add(expired.certificate_pem(), now=now - timedelta(days=60))
    verifier = Verifier.from_settings(settings, trust)

    ok = Outgoing.signed(sample_envelope(1), _signer(good), events)
    # Forged: a body changed after it was signed (same id, type and source as the signed one).
    forged_env = sample_envelope(2)
    forged = Outgoing.signed(forged_env, _signer(good), events)
    forged.body = sample_envelope(99, id=forged_env.id).to_bytes()
    stale_cert = Outgoing.signed(sample_envelope(3), _signer(expired), events)
    unknown_kid = Outgoing.signed(sample_envelope(4), _signer(untrusted), events)
    unsigned = Outgoing.signed(sample_envelope(5), _signer(good), events)
    del unsigned.headers[h.SIGNATURE]
    # Replayed: the id of a processed message, another body, itself correctly signed.
    replay = Outgoing.signed(sample_envelope(6, id=ok.message_id), _signer(good), events)
    expected = {
        forged.body: "client.bad_signature",
        stale_cert.body: "client.certificate_expired",
        unknown_kid.body: "client.unknown_key",
        unsigned.body: "client.missing_signature",
        replay.body: "client.replayed_id",
    }
    handled: list[Delivery] = []

    async def handler(d: Delivery) -> None:
        handled.append(d)

    async def scenario() -> Consumer:
        async with Publisher(settings.amqp_url, settings) as pub:
            consumer = Consumer(
                settings, topo.work_queue("orders"), handler, publisher=pub,
                verifier=verifier, processed=MemoryProcessedIds(),
            )
            consumer.start()
            await consumer.wait_consuming()
            for m in (ok, forged, stale_cert, unknown_kid, unsigned, replay):
                await pub.publish(m)
            await eventually(lambda: consumer.stats.invalid == len(expected), 10, "all parked")
            await consumer.stop()
            return consumer

    consumer = asyncio.run(scenario())
    assert [d.body for d in handled] == [ok.body]
    assert handled[0].signer.system_id == SOURCE
    assert handled[0].signer.kid == _signer(good).kid
    parked = read_all(settings.amqp_url, topo.names.invalid)
    assert {r.body: r.headers[h.REASON_CODE] for r in parked} == expected
    assert (consumer.stats.retried, consumer.stats.dead, consumer.stats.handled) == (0, 0, 1)
