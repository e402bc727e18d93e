"""A new system is a new package: the toy adapter in tests/plugins is registered through a real
entry point (a dist-info written into a directory on sys.path, exactly what pip would leave)
and the core discovers it without any edit of hub/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.adapters import AdapterSpec, discover
from hub.errors import ConfigError

PLUGINS = Path(__file__).parent / "plugins"


def install_entry_point(site: Path, name: str, target: str) -> None:
    info = site / f"lienthong_{name}_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: lienthong-{name}-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[lienthong.adapters]\n{name} = {target}\n")


@pytest.fixture
def toy_installed(tmp_path: Path) -> Iterator[None]:
    install_entry_point(tmp_path, "toy", "lienthong_toy:adapter")
    sys.path[:0] = [str(tmp_path), str(PLUGINS)]
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(PLUGINS))
        sys.modules.pop("lienthong_toy", None)


def test_toy_adapter_is_discovered(toy_installed: None) -> None:
    found = discover()
    assert "toy" in found
    spec = found["toy"]
    assert isinstance(spec, AdapterSpec)
    assert list(spec.bindings) == ["dossier.submitted.#"]
    # The five shipped systems are found the same way.
    assert {"provincial", "npsp", "population", "payment", "postal"} <= set(found)


def test_entry_point_that_is_not_a_spec_is_refused(tmp_path: Path) -> None:
    install_entry_point(tmp_path, "broken", "json:loads")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="not an AdapterSpec"):
            discover()
    finally:
        sys.path.remove(str(tmp_path))


def test_toy_adapter_gets_a_queue_and_deliveries(
    toy_installed: None, settings: Any, tmp_path: Path
) -> None:
    """End to end with nothing but the plug-in: the topology declares the toy's work queue from
    its entry point, the runtime builds its worker, and a signed event reaches the toy system;
    with the toy system down, the message walks the retry tiers into the dead letters."""
    import asyncio

    from hub import runtime
    from hub.broker import declare
    from hub.broker.messages import Outgoing
    from hub.broker.names import Names
    from hub.broker.publisher import Publisher
    from hub.broker.topology import Topology
    from hub.envelope import Envelope
    from hub.signing import TrustStore, generate, load_signer
    from hub.store import Store
    from hub.testing.broker import read_all
    from hub.testing.waiting import wait_for

    spec = discover()["toy"]
    system = spec.make_simulator()  # type: ignore[misc]
    system.server.start()
    overlay = settings.data_dir / "adapters"
    overlay.mkdir(parents=True)
    (overlay / "toy.toml").write_text(f'base_url = "{system.server.base_url}"\n')
    topology = Topology.from_settings(settings, {"toy": spec})
    declare.apply(topology, settings.amqp_url)
    assert Names(settings.name_prefix).work("toy") in {q.name for q in topology.queues}

    source = "VN:GOV:000.00.00.H56:igate"
    trust = TrustStore(settings.trust_dir)
    for sid in (settings.hub_id, source):
        material = generate(sid)
        material.save(settings.keys_dir)
        trust.add(material.certificate_pem())
    signer = load_signer(settings.keys_dir, source)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")

    def event(n: int) -> Outgoing:
        env = Envelope.new(source=source, type="vn.gov.dossier.submitted",
                           subject=f"000.00.00.H56-250101-{n:04d}", data={},
                           agency="000.00.00.H56", procedure="2.002492")
        return Outgoing.signed(env, signer, Names(settings.name_prefix).events)

    async def scenario() -> None:
        [worker] = runtime.build_workers(settings, ["toy"], store=store,
                                         adapters={"toy": spec}, recorder=False)
        worker.consumer.start()
        await worker.consumer.wait_consuming()
        async with Publisher(settings.amqp_url, settings) as publisher:
            await publisher.publish(event(1))
            await asyncio.to_thread(wait_for, lambda: system.received, 10, message="delivery")
            system.server.pause()
            await publisher.publish(event(2))
            dead = await asyncio.to_thread(
                wait_for, lambda: read_all(settings.amqp_url, Names(settings.name_prefix).dead,
                                           timeout=0.5), 20, message="dead letter")
        await worker.stop()
        [parked] = dead
        assert parked.headers["lt-reason-code"] in ("system.unavailable", "server.circuit_open")
        assert parked.headers["lt-attempt"] == len(settings.retry_tiers)

    try:
        asyncio.run(scenario())
        assert system.received == [{"dossier": "000.00.00.H56-250101-0001",
                                     "type": "vn.gov.dossier.submitted"}]
    finally:
        system.server.stop()
        store.close()
