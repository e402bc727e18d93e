"""Helpers the adapters' broker tests share: a trusted signer and a declared topology."""

from __future__ import annotations

from pathlib import Path

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

