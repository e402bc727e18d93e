"""End to end on the real broker: signed dossier events published to the events exchange reach
the portal's work queue (ordered: one active consumer), the consumer runs the adapter's
handler, the simulator gets the dossier, its status and its progress; with the portal down the
next event walks the retry tiers into the dead letters with the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from npsp_support import sample_dossier, sample_progress, sample_status

from adapters.npsp import adapter
from adapters.npsp.simulator import NpspSimulator
from hub import headers as h
from hub.adapters import AdapterContext, load_config
from hub.broker import declare
from hub.broker.consumer import Consumer
from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.handlers import for_consumer
from hub.model import Status
from hub.settings import PROJECT_ROOT, Settings
from hub.signing import keys
from hub.signing.jws import Signer
from hub.signing.truststore import TrustStore
from hub.signing.verifier import Verifier
from hub.store.store import Store
from hub.testing.broker import depth, read_all
from hub.testing.waiting import eventually

PROVINCE = "VN:GOV:000.00.00.H56:igate"
CODE = "000.00.00.H56-250101-0001"
DEAD = "000.00.00.H56-250101-0002"


def event(event_type: str, data: Any, code: str, sequence: int | None) -> Envelope:
    return Envelope.new(source=PROVINCE, type=event_type, subject=code, data=data,
                        agency="000.00.00.H56", procedure="2.002492", sequence=sequence)


def test_signed_events_reach_the_portal_then_dead_letter_when_it_is_down(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "secret")
    empty = tmp_path / "topology.toml"
    empty.write_text("")
    topo = Topology.from_settings(settings, [adapter], topology_file=empty)
    declare.apply(topo, settings.amqp_url)
    queue = topo.work_queue("npsp")

    province = keys.generate(PROVINCE, "ES256")
    assert province.certificate is not None
    trust = TrustStore(tmp_path / "trust")
    trust.add(province.certificate_pem(), alg="ES256")
    signer = Signer(province.private_key, province.certificate)
    verifier = Verifier(trust, max_age=settings.signature_max_age,
                        clock_skew=settings.clock_skew, retry_grace=600.0)

    def signed(env: Envelope) -> Outgoing:
        return Outgoing.signed(env, signer, topo.names.events)

    with NpspSimulator() as sim, Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        config = load_config(PROJECT_ROOT / "mappings", "npsp")
        config["base_url"] = sim.base_url
        config["policy"] = {"timeout": 30.0, "attempts": 1, "breaker_failures": 100}
        ctx = AdapterContext(settings=settings, config=config, store=store)

        async def go() -> Consumer:
            handler = adapter.make_handler(ctx)
            async with Publisher(settings.amqp_url, settings) as pub:
                consumer = Consumer(settings, queue, for_consumer(handler, store),
                                    verifier=verifier, publisher=pub,
                                    ordered=adapter.ordered, name="npsp-e2e")
                consumer.start()
                await consumer.wait_consuming()
                for env in (
                    event("vn.gov.dossier.submitted",
                          sample_dossier().model_dump(mode="json"), CODE, 1),
                    event("vn.gov.dossier.status-changed",
                          sample_status(Status.RECEIVED).model_dump(mode="json"), CODE, 2),
                    event("vn.gov.dossier.progress-reported",
                          sample_progress().model_dump(mode="json"), CODE, None),
                ):
                    await pub.publish(signed(env))
                await eventually(lambda: consumer.stats.handled == 3, 10, "three deliveries")
                sim.pause()
                await pub.publish(signed(event(
                    "vn.gov.dossier.submitted",
                    sample_dossier(DEAD).model_dump(mode="json"), DEAD, 1)))
                await eventually(lambda: consumer.stats.dead == 1, 15, "the dead letter")
                await consumer.stop()
            await handler.aclose()  # type: ignore[attr-defined]
            return consumer

        consumer = asyncio.run(go())
        assert store.last_sequence("npsp", CODE) == 2

    record = sim.dossier(CODE)
    assert record is not None
    assert record["TrangThaiHoSo"] == "2" and record["NgayTiepNhan"] == "20250102090000"
    assert [p["NoiDungXuLy"] for p in sim.progress_of(CODE)] == [
        "Đã kiểm tra hồ sơ, chuyển lãnh đạo ký"
    ]
    assert sim.dossier(DEAD) is None
    assert consumer.stats.retried == len(settings.retry_tiers)
    [dead] = read_all(settings.amqp_url, topo.names.dead)
    assert Envelope.from_bytes(dead.body).subject == DEAD
    assert dead.headers[h.REASON_CODE] == "system.unavailable"
    assert "cannot be reached" in dead.headers[h.REASON]
    assert dead.headers[h.ATTEMPT] == len(settings.retry_tiers)
    assert depth(settings.amqp_url, queue) == 0
