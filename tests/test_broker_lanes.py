"""Order per dossier: the lanes and held groups' bookkeeping (pure logic), then an ordered
consumer on the real broker holding a dossier whose message went to a retry tier: its later
events travel behind it and arrive in order, other dossiers are not held up, and a restarted
consumer goes on holding (the held groups are in the store)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub import headers as h
from hub.broker.consumer import Consumer
from hub.broker.destinations import Destination
from hub.broker.lanes import HeldGroup, Lanes
from hub.broker.messages import Delivery, Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.errors import PermanentError, RetryableError
from hub.settings import Settings
from hub.store import Store
from hub.testing.broker import (
    NullSigner,
    declared_topology,
    delete_queues,
    depth,
    sample_envelope,
    topology_queues,
)
from hub.testing.waiting import elsewhere, eventually

# -- lanes ------------------------------------------------------------------------------------


def test_a_lane_runs_one_delivery_at_a_time_in_arrival_order() -> None:
    lanes: Lanes[str] = Lanes()
    assert lanes.admit("A", "a1") is True  # idle lane: runs now
    assert lanes.admit("B", "b1") is True  # another dossier: runs beside it
    assert lanes.admit("A", "a2") is False  # waits behind a1
    assert lanes.admit("A", "a3") is False
    assert lanes.admit(None, "x") is True  # no dossier, no lane
    assert (lanes.open, lanes.waiting) == (2, 2)
    assert lanes.done("A") == "a2"  # a1 finished: a2 runs
    assert lanes.done("B") is None  # B's lane closes
    assert lanes.done("A") == "a3"
    assert lanes.done("A") is None
    assert (lanes.open, lanes.waiting) == (0, 0)
    assert lanes.admit("A", "a4") is True  # a closed lane opens again
    with pytest.raises(KeyError):
        lanes.done("Z")


# -- held groups -------------------------------------------------------------------------------


def test_later_messages_go_behind_the_head_until_it_succeeds_then_come_back_in_order() -> None:
    group = HeldGroup("q", "D", None, "")
    group.settle("m2", "retry.0")  # m2 failed: the dossier waits on it in tier 0
    assert (group.head, group.tier) == ("m2", "retry.0")
    assert group.arrive("m3") == (False, True)  # behind, and the group changed (save it)
    assert group.arrive("m4") == (False, True)
    assert group.members == ["m3", "m4"]
    assert group.arrive("m2") == (True, False)  # the head is back: handled
    assert group.settle("m2", None) is True  # and succeeded
    assert group.arrive("m4") == (False, False)  # back ahead of m3: behind again, unchanged
    assert group.arrive("m3") == (True, False)  # m3 first
    assert group.arrive("m3") == (True, False)  # asking again (a re-run) changes nothing
    group.settle("m3", None)
    assert group.arrive("m5") == (False, True)  # a new message still goes behind m4
    assert group.arrive("m4") == (True, False)
    group.settle("m4", None)
    assert group.arrive("m5") == (True, False)
    group.settle("m5", None)
    assert group.released


def test_the_group_follows_its_head_from_tier_to_tier_and_a_member_may_become_head() -> None:
    group = HeldGroup("q", "D", None, "")
    group.settle("m1", "retry.0")
    group.arrive("m2")
    assert group.arrive("m1") == (True, False)
    group.settle("m1", "retry.1")  # failed again: now in tier 1, the members follow there
    assert (group.head, group.tier) == ("m1", "retry.1")
    assert group.arrive("m2") == (False, False)  # back from tier 0 before m1: to tier 1
    group.settle("m1", None)
    assert group.arrive("m2") == (True, False)
    group.settle("m2", "retry.0")  # the member failed: the group now waits on it
    assert (group.head, group.members, group.tier) == ("m2", [], "retry.0")
    assert not group.released
    group.settle("m2", None)
    assert group.released


def test_a_parked_head_releases_its_group_and_the_state_round_trips() -> None:
    group = HeldGroup("q", "D", None, "")
    group.settle("m1", "retry.2")
    group.arrive("m2")
    again = HeldGroup.from_dict("q", "D", group.to_dict())
    assert again == group
    assert again.involves("m1") and not again.involves("m2")
    again.settle("m1", None)  # parked in the dead letters
    assert again.involves("m2")
    again.settle("m2", None)
    assert again.released


def test_an_earlier_event_than_the_head_is_not_held_behind_it() -> None:
    # m2 (sequence 2) failed and waits in a tier; m3 went behind it. m1, the dossier's earlier
    # event, arrives late (another entry-point process published it after m2): it runs now.
    group = HeldGroup("q", "D", None, "")
    group.settle("m2", "retry.0", 2)
    assert group.arrive("m3", 3) == (False, True)
    assert group.arrive("m1", 1) == (True, False)
    assert group.arrive("m1", 1) == (True, False)  # asked again, the same answer
    # m1 fails too: it becomes the head, m2 first behind it, then m3.
    assert group.settle("m1", "retry.0", 1)
    assert (group.head, group.head_sequence, group.members) == ("m1", 1, ["m2", "m3"])
    assert group.arrive("m2", 2) == (False, False)  # back from its tier: behind m1 again
    assert HeldGroup.from_dict("q", "D", group.to_dict()) == group
    assert group.settle("m1", None)  # m1 through: m2, then m3
    assert group.arrive("m2", 2) == (True, False)
    assert group.settle("m2", None) and group.arrive("m3", 3) == (True, False)
    assert group.settle("m3", None) and group.released


def test_an_earlier_event_handled_ahead_of_the_head_leaves_the_group() -> None:
    group = HeldGroup("q", "D", None, "")
    group.settle("m2", "retry.0", 2)
    group.members.append("m1")  # sent behind before its sequence was compared (an old group)
    assert group.arrive("m1", 1) == (True, False)
    assert group.settle("m1", None)
    assert (group.head, group.members) == ("m2", [])
    # A group saved before the head's sequence was kept compares nothing.
    old = HeldGroup.from_dict("q", "D", {"head": "m2", "tier": "retry.0", "members": []})
    assert old.head_sequence is None and old.arrive("m1", 1) == (False, True)


# -- an ordered consumer on the broker ---------------------------------------------------------

A = 7  # the held dossier (sample_envelope subject ...-0007)
OTHERS = (1, 2, 3)


@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    delete_queues(settings.amqp_url,
                  topology_queues(settings.name_prefix, ["orders"], len(settings.retry_tiers)))


@dataclass
class Seen:
    """What a handler saw, per dossier."""

    order: dict[int, list[int]] = field(default_factory=dict)
    at: dict[tuple[int, int], float] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    def add(self, d: Delivery) -> tuple[int, int]:
        dossier, seq = int(d.envelope.subject[-4:]), d.envelope.sequence
        assert seq is not None
        self.deliveries.append(d)
        return dossier, seq

    def done(self, dossier: int, seq: int) -> None:
        self.order.setdefault(dossier, []).append(seq)
        self.at[(dossier, seq)] = time.monotonic()


def _orders(settings: Settings, tmp_path: Path) -> Topology:
    return declared_topology(settings, tmp_path, Destination("orders", ("dossier.#",)))


def _events(topo: Topology, dossiers: Sequence[int], events: int) -> list[Outgoing]:
    return [Outgoing.signed(sample_envelope(dossier, sequence=n), NullSigner(), topo.names.events)
            for n in range(events) for dossier in dossiers]


async def _run(settings: Settings, topo: Topology, handler: Callable[[Delivery], Any],
               messages: Sequence[Outgoing], until: Callable[[Consumer], bool],
               *, first: Sequence[Outgoing] = (),
               first_until: Callable[[Consumer], bool] = lambda c: True,
               **kw: Any) -> Consumer:
    """Publish ``first`` and wait for ``first_until``, then publish ``messages`` and wait for
    ``until``, with an ordered consumer on the orders queue."""
    async with Publisher(settings.amqp_url, settings) as pub:
        consumer = Consumer(settings, topo.work_queue("orders"), handler, publisher=pub,
                            ordered=True, concurrency=16, **kw)
        consumer.start()
        await consumer.wait_consuming()
        for stage, done in ((first, first_until), (messages, until)):
            for m in stage:
                await pub.publish(m)
            await eventually(functools.partial(done, consumer), 30, "the consumer to finish")
        await consumer.stop()
    return consumer


def test_a_retry_in_the_middle_of_a_dossier_holds_its_later_events_not_the_others(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _orders(settings, tmp_path)
    seen = Seen()

    async def handler(d: Delivery) -> None:
        dossier, seq = seen.add(d)
        await elsewhere()  # its call to the portal: the other deliveries run meanwhile
        if (dossier, seq) == (A, 2) and d.attempt == 0:
            raise RetryableError("the portal is busy", code="system.unavailable")
        seen.done(dossier, seq)

    messages = _events(topo, (A, *OTHERS), 6)
    consumer = asyncio.run(_run(settings, topo, handler, messages,
                                lambda c: c.stats.handled == len(messages)))
    assert seen.order[A] == [0, 1, 2, 3, 4, 5]
    assert all(seen.order[o] == [0, 1, 2, 3, 4, 5] for o in OTHERS)
    # The other dossiers did not wait for A's retry.
    assert max(seen.at[(o, 5)] for o in OTHERS) < seen.at[(A, 2)]
    assert (consumer.stats.retried, consumer.stats.held) == (1, 3)
    [head] = [d for d in seen.deliveries if d.envelope.subject.endswith(f"{A:04d}")
              and d.envelope.sequence == 2 and d.attempt == 0]
    held = [d for d in seen.deliveries if h.HELD_BEHIND in d.headers]
    assert sorted(d.envelope.sequence or 0 for d in held) == [3, 4, 5]
    # Held, not failed: no attempt counted, and they name the message they waited on.
    assert {(d.attempt, d.headers[h.HELD_BEHIND]) for d in held} == {(0, head.message_id)}
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0


def test_the_held_events_follow_their_head_through_the_tiers_and_past_its_parking(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _orders(settings, tmp_path)
    seen = Seen()

    async def handler(d: Delivery) -> None:
        dossier, seq = seen.add(d)
        if (dossier, seq) == (A, 1) and d.attempt < 2:
            raise RetryableError("the portal is busy", code="system.unavailable")
        if (dossier, seq) == (A, 1):
            raise PermanentError("the portal refuses it", code="system.refused")
        seen.done(dossier, seq)

    messages = _events(topo, (A, *OTHERS), 4)
    consumer = asyncio.run(_run(settings, topo, handler, messages,
                                lambda c: c.stats.handled == len(messages) - 1
                                and c.stats.dead == 1))
    # A1 went through tiers 0 and 1 and was parked; A2 and A3 travelled behind it, then came
    # back in order.
    assert seen.order[A] == [0, 2, 3]
    assert (consumer.stats.retried, consumer.stats.dead) == (2, 1)
    held = [(d.envelope.sequence, d.routing_key) for d in seen.deliveries
            if h.HELD_BEHIND in d.headers]
    assert [seq for seq, _ in held] == [2, 3]
    # They came back last from tier 1, where the head had moved.
    assert {key for _, key in held} == {topo.names.retry(1)}


def test_a_restarted_consumer_goes_on_holding(settings: Settings, tmp_path: Path,
                                              store: Store) -> None:
    slow = settings.model_copy(update={"retry_tiers": [1.5, 1.5, 1.5]})
    topo = _orders(slow, tmp_path)
    queue = topo.work_queue("orders")
    seen = Seen()

    async def handler(d: Delivery) -> None:
        dossier, seq = seen.add(d)
        if (dossier, seq) == (A, 1) and d.attempt == 0:
            raise RetryableError("the portal is busy", code="system.unavailable")
        seen.done(dossier, seq)

    first, second, third = _events(topo, (A,), 3)

    async def scenario() -> tuple[Consumer, dict[str, dict[str, Any]]]:
        before = await _run(slow, topo, handler, [first, second],
                            lambda c: c.stats.handled == 1 and c.stats.retried == 1,
                            store=store, processed=store.processed)
        assert before.stats.held == 0
        held = store.held_load(queue)
        # A new consumer, as after a restart: A2 arrives while A1 is in its tier.
        after = await _run(slow, topo, handler, [third],
                           lambda c: c.stats.handled == 2, store=store,
                           processed=store.processed)
        return after, held

    after, held = asyncio.run(scenario())
    assert held == {sample_envelope(A).subject: {"head": second.message_id,
                                                 "tier": topo.names.retry(0), "members": [],
                                                 "head_sequence": 1}}
    assert after.stats.held == 1  # A2 went behind A1, read from the store
    assert seen.order[A] == [0, 1, 2]
    assert store.held_load(queue) == {}  # released once A1 and A2 were through


def test_an_earlier_event_published_after_a_later_one_goes_first_not_to_the_dead_letters(
    settings: Settings, tmp_path: Path
) -> None:
    # Two entry-point processes each publish what they kept: a dossier's status change can
    # reach the queue before its submission. The destination cannot apply the change to a
    # dossier it does not have yet; held behind it, the submission would wait until the
    # change ran out of retry tiers and was parked.
    topo = _orders(settings, tmp_path)
    seen = Seen()

    async def handler(d: Delivery) -> None:
        dossier, seq = seen.add(d)
        if dossier == A and seq > 0 and 0 not in seen.order.get(A, []):
            raise RetryableError("the destination has no such dossier yet",
                                 code="system.dossier_unknown")
        seen.done(dossier, seq)

    first, second, third = _events(topo, (A,), 3)
    consumer = asyncio.run(_run(settings, topo, handler, [first, third],
                                lambda c: c.stats.handled == 3, first=[second],
                                first_until=lambda c: c.stats.retried == 1))
    assert seen.order[A] == [0, 1, 2]
    assert consumer.stats.dead == 0
    assert depth(settings.amqp_url, topo.work_queue("orders")) == 0
