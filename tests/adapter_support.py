"""Helpers the adapters' broker tests share: a trusted signer, a declared topology, and polling
a blocking condition with a deadline while the consumer runs on the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.broker import declare
from hub.broker.destinations import Destination
from hub.broker.topology import Topology
from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate


def signer_for(system_id: str, trust: TrustStore) -> Signer:
    """A fresh key and certificate for ``system_id``, trusted by ``trust``."""
    material = generate(system_id)
    assert material.certificate is not None
    trust.add(material.certificate_pem())
    return Signer(material.private_key, material.certificate)


def declared_topology(settings: Settings, tmp_path: Path, *destinations: Destination) -> Topology:
    """The topology of ``destinations`` (no overrides), declared on the test's vhost."""
    (tmp_path / "topology.toml").write_text("")
    topo = Topology.from_settings(
        settings, list(destinations), topology_file=tmp_path / "topology.toml"
    )
    declare.apply(topo, settings.amqp_url)
    return topo


async def until(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll a blocking condition off the loop (the consumer keeps running) with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.05)
