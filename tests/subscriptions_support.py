"""What the subscription tests share: a hub with keys and a trust store, its topology
declared on the test's vhost, signed events published as an upstream would, and the
cleaning of the broker users the tests make (users are per broker, not per vhost)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hub.broker import declare
from hub.broker.declare import connect
from hub.broker.management import Management
from hub.broker.messages import Outgoing
from hub.broker.names import Names
from hub.broker.topology import Topology
from hub.envelope import Envelope
from hub.settings import Settings
from hub.signing import keys
from hub.signing.jws import Signer
from hub.signing.truststore import TrustStore
from hub.store import Store
from hub.subscriptions.fanout import Fanout, consumer, hub_signer
from hub.subscriptions.topology import apply_from_store
from hub.testing.broker import consuming

UPSTREAM = "VN:GOV:000.00.00.H56:igate"
BHXH = "VN:GOV:000.00.00.G12:bhxh"
HOTICH = "VN:GOV:000.00.00.G15:hotich"
H56, H57 = "000.00.00.H56", "000.00.00.H57"


@dataclass
class Hub:
    settings: Settings
    upstream: Signer
    hub_material: keys.KeyMaterial

    @property
    def names(self) -> Names:
        return Names(self.settings.name_prefix)


def make_hub(settings: Settings, **overrides: object) -> Hub:
    settings = settings.model_copy(update=overrides)
    hub = keys.generate(settings.hub_id)
    hub.save(settings.keys_dir)
    upstream = keys.generate(UPSTREAM)
    trust = TrustStore(settings.trust_dir)
    trust.add(upstream.certificate_pem())
    trust.add(hub.certificate_pem())
    assert upstream.certificate is not None
    empty = settings.data_dir / "topology.toml"  # the exchanges and tiers, no destination
    empty.write_text("")
    topology = Topology.from_settings(settings, [], topology_file=empty)
    declare.apply(topology, settings.broker_urls)
    apply_from_store(settings)
    return Hub(settings, Signer(upstream.private_key, upstream.certificate, upstream.alg), hub)


def dossier(i: int, agency: str = H56, *, type: str = "vn.gov.dossier.submitted") -> Envelope:
    code = f"{agency}-250101-{i:04d}"
    if type == "vn.gov.dossier.submitted":
        data: dict[str, object] = {
            "code": code, "procedure_code": "2.002492", "agency_code": agency, "channel": 2,
            "applicant": {"identity_number": "001090012345", "name": "Nguyễn Văn An",
                          "phone": "0912345678", "address": "Nha Trang"}}
    else:
        data = {"dossier_code": code, "status": 2, "at": "2025-07-01T08:00:00+07:00",
                "officer": "Trần Thị Bình"}
    return Envelope.new(source=UPSTREAM, type=type, subject=code, data=data, agency=agency,
                        procedure="2.002492")


def publish(hub: Hub, envelopes: list[Envelope]) -> None:
    conn = connect(hub.settings.broker_urls, "test upstream")
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for env in envelopes:
            o = Outgoing.signed(env, hub.upstream, hub.names.events)
            ch.basic_publish(o.exchange, o.routing_key, o.body, o.properties(), mandatory=True)
    finally:
        conn.close()


@contextmanager
def fanout_running(hub: Hub, store: Store) -> Iterator[Fanout]:
    handler = Fanout(hub.settings, store, hub_signer(hub.settings))
    with consuming(lambda: consumer(hub.settings, store, handler)):
        yield handler


def drop_users(settings: Settings) -> None:
    with Management.from_settings(settings) as mgmt:
        for user in mgmt._call("GET", "/api/users") or []:
            if user["name"].startswith(f"{settings.name_prefix}-"):
                mgmt.delete_user(user["name"])


def store_at(tmp: Path) -> Store:
    return Store.open(f"sqlite:///{tmp / 'hub.db'}")
