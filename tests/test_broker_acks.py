"""Which delivery tags may be acknowledged when messages finish out of order (pure)."""

from __future__ import annotations

import random

from hub.broker.acks import AckTracker


def test_in_order_completions_are_acked_with_one_multiple_ack() -> None:
    t = AckTracker(spill=100)
    for tag in (1, 2, 3):
        t.done(tag)
    assert t.collect() == (3, [])
    assert t.collect() == (0, [])


def test_a_gap_holds_back_later_tags_until_it_is_filled() -> None:
    t = AckTracker(spill=100)
    for tag in (2, 3, 5):
        t.done(tag)
    assert t.collect() == (0, [])
    t.done(1)
    assert t.collect() == (3, [])
    t.done(4)
    assert t.collect() == (5, [])


def test_too_many_waiting_behind_a_slow_message_are_acked_singly() -> None:
    t = AckTracker(spill=3)
    for tag in (2, 3, 4):
        t.done(tag)
    assert t.collect() == (0, [2, 3, 4])
    t.done(5)
    assert t.collect() == (0, [])
    t.done(1)
    # 1 and 5 are outstanding; 2-4 were acked already: the multiple ack names 5 (still
    # outstanding at the broker), never an acked tag.
    assert t.collect() == (5, [])


def test_the_multiple_ack_never_names_a_tag_acked_alone() -> None:
    t = AckTracker(spill=2)
    t.done(2)
    t.done(3)
    assert t.collect() == (0, [2, 3])
    t.done(1)
    assert t.collect() == (1, [])


class Broker:
    """The broker's side of acknowledgements, strict about tags."""

    def __init__(self, n: int) -> None:
        self.outstanding = set(range(1, n + 1))  # delivered, not acked
        self.finished: set[int] = set()  # what the consumer has done with
        self.acked: list[int] = []

    def send(self, collected: tuple[int, list[int]]) -> None:
        upto, singles = collected
        if upto:
            assert upto in self.outstanding  # an unknown tag closes the channel
            singles = singles + [x for x in self.outstanding if x <= upto]
        for tag in singles:
            assert tag in self.outstanding and tag in self.finished  # never ack work in progress
            self.outstanding.discard(tag)
            self.acked.append(tag)


def test_random_completion_orders_ack_every_tag_exactly_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 60)
        tags = list(range(1, n + 1))
        rng.shuffle(tags)
        t = AckTracker(spill=rng.randint(1, 10))
        broker = Broker(n)
        for tag in tags:
            t.done(tag)
            broker.finished.add(tag)
            if rng.random() < 0.4:
                broker.send(t.collect())
        broker.send(t.collect())
        assert sorted(broker.acked) == list(range(1, n + 1))
        assert t.waiting == 0
