"""One decoding of an event's envelope for the consumers of a process that take the same bytes
(``hub.broker.consumer.SharedEnvelopes``): the timeline recorder and the subscriptions' fan-out.
Sharing one object is safe only while their handlers leave it as it is: checked here too."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from subscriptions_support import BHXH, HOTICH, dossier
from test_subscriptions_copies import ACCESS, SN, CountingSigner, sub

from hub.broker.consumer import SharedEnvelopes
from hub.broker.messages import Delivery
from hub.envelope import Envelope
from hub.errors import InvalidMessage
from hub.recorder import make_timeline_recorder
from hub.store import Store
from hub.subscriptions.fanout import copies


def _body(i: int = 1) -> bytes:
    return dossier(i).to_bytes()


def test_the_readers_of_a_body_get_one_envelope_then_it_is_let_go() -> None:
    shared = SharedEnvelopes(readers=2)
    body = _body()
    first = shared.decode(body)
    assert len(shared) == 1
    # Another bytes object with the same content: what the second consumer receives.
    second = shared.decode(bytes(bytearray(body)))
    assert second is first and first == Envelope.from_bytes(body)
    assert len(shared) == 0
    again = shared.decode(body)  # a redelivery after both had it: decoded anew
    assert again is not first and again == first


def test_three_readers_share_it_three_times() -> None:
    shared = SharedEnvelopes(readers=3)
    body = _body()
    envs = [shared.decode(body) for _ in range(3)]
    assert envs[0] is envs[1] is envs[2] and len(shared) == 0


def test_a_single_reader_keeps_nothing() -> None:
    shared = SharedEnvelopes(readers=1)
    body = _body()
    assert shared.decode(body) == Envelope.from_bytes(body) and len(shared) == 0


def test_bodies_beyond_the_limit_drop_the_oldest() -> None:
    shared = SharedEnvelopes(readers=2, limit=3)
    bodies = [_body(i) for i in range(1, 5)]
    decoded = [shared.decode(b) for b in bodies]
    assert len(shared) == 3
    assert shared.decode(bodies[0]) is not decoded[0]  # dropped: decoded again
    assert shared.decode(bodies[3]) is decoded[3]


def test_a_body_that_does_not_decode_is_refused_to_every_reader_and_not_kept() -> None:
    shared = SharedEnvelopes(readers=2)
    for _ in range(2):
        with pytest.raises(InvalidMessage) as info:
            shared.decode(b'{"id": 1, "id": 2}')
        assert info.value.code == "client.duplicate_key"
    assert len(shared) == 0


def _delivery(env: Envelope) -> Delivery:
    body = env.to_bytes()
    return Delivery(body=body, envelope=env, headers={}, queue="q", exchange="",
                    routing_key="", redelivered=False, attempt=0, delivery_tag=1,
                    message_id=env.id)


@pytest.mark.parametrize("event_type", ["vn.gov.dossier.submitted",
                                        "vn.gov.dossier.status-changed"])
def test_the_recorder_and_the_fanout_leave_the_shared_envelope_as_it_was(
        tmp_path: Path, event_type: str) -> None:
    """What makes sharing safe: neither handler changes the envelope's data or extensions
    (projections that remove personal fields, and one that keeps them all)."""
    env = dossier(1, type=event_type)
    env = Envelope.from_bytes(env.to_bytes())  # as a consumer has it
    data, extensions = copy.deepcopy(env.data), copy.deepcopy(env.extensions)
    subs = [sub("b", BHXH, "identity-only", event_type), sub("ht", HOTICH, "minimal", event_type)]
    assert copies(env, subs, ACCESS, CountingSigner(), SN)
    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        make_timeline_recorder(store)(_delivery(env))
    assert env.data == data and env.extensions == extensions
