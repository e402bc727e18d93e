"""Outgoing messages: serialised and signed once, with the properties of the contract (pure)."""

from __future__ import annotations

from hub import headers as h
from hub.broker.messages import Outgoing
from hub.broker.names import slot_of
from hub.broker.processed import MemoryProcessedIds
from hub.envelope import CONTENT_TYPE, Envelope
from hub.testing.broker import sample_envelope


class RecordingSigner:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Envelope]] = []

    def sign(self, body: bytes, env: Envelope) -> str:
        self.calls.append((body, env))
        return f"jws-over-{len(body)}"


def test_signed_serialises_once_and_signs_exactly_the_body_it_carries() -> None:
    env = sample_envelope(3)
    signer = RecordingSigner()
    out = Outgoing.signed(env, signer, "p.events")
    assert signer.calls == [(out.body, env)]
    assert out.body == env.to_bytes()
    assert out.headers == {h.SIGNATURE: f"jws-over-{len(out.body)}", h.ATTEMPT: 0,
                           h.SLOT: slot_of(env.subject)}
    assert out.exchange == "p.events"
    assert out.routing_key == "dossier.submitted.000_00_00_H56.2_002492"
    assert (out.message_id, out.type, out.app_id) == (env.id, env.type, env.source)


def test_signed_accepts_an_explicit_routing_key() -> None:
    out = Outgoing.signed(sample_envelope(), RecordingSigner(), "", routing_key="p.work.x")
    assert (out.exchange, out.routing_key) == ("", "p.work.x")


def test_properties_are_persistent_and_typed() -> None:
    out = Outgoing(b"{}", "x", "y", "id-1", "vn.gov.dossier.submitted", {"k": 1}, "VN:GOV:1:a")
    props = out.properties()
    assert props.delivery_mode == 2
    assert props.content_type == CONTENT_TYPE
    assert (props.message_id, props.type, props.app_id) == ("id-1", out.type, "VN:GOV:1:a")
    assert props.headers == {"k": 1}
    assert isinstance(props.timestamp, int)
    kept = Outgoing(b"{}", "x", "y", "id-1", "t", timestamp=1_700_000_000).properties()
    assert kept.timestamp == 1_700_000_000


def test_memory_processed_ids_are_per_consumer_and_bounded() -> None:
    ids = MemoryProcessedIds(capacity=3)
    ids.record("a", [("m1", "d1"), ("m2", "d2")])
    assert ids.lookup("a", "m1") == "d1"
    assert ids.lookup("b", "m1") is None
    ids.record("a", [("m3", "d3"), ("m4", "d4")])
    assert len(ids) == 3
    assert ids.lookup("a", "m1") is None  # the oldest is forgotten first
    assert ids.lookup("a", "m4") == "d4"
