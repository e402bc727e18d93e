"""The dossier timeline and per-dossier sequences on both databases."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hub.lastapplied import Sequencer
from hub.store import Store

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SRC = "VN:GOV:000.00.00.H56:igate"


def code() -> str:
    return f"000.00.00.H56-250301-{uuid.uuid4().hex[:8]}"


def test_events_come_back_in_time_order_whatever_the_arrival_order(store: Store) -> None:
    dossier, other = code(), code()
    events = [("vn.gov.dossier.status-changed", 2), ("vn.gov.dossier.submitted", 0),
              ("vn.gov.payment.completed", 1)]
    with store.begin() as tx:
        for event_type, minutes in events:
            assert tx.timeline_add(
                dossier, event_type, str(uuid.uuid4()), T0 + timedelta(minutes=minutes),
                source=SRC, summary={"status": minutes, "note": "đã tiếp nhận"},
            )
        tx.timeline_add(other, "vn.gov.dossier.submitted", str(uuid.uuid4()), T0,
                        source=SRC, summary={})
    got = store.timeline(dossier)
    assert [e.event_type for e in got] == [
        "vn.gov.dossier.submitted", "vn.gov.payment.completed", "vn.gov.dossier.status-changed",
    ]
    assert got[0].summary == {"status": 0, "note": "đã tiếp nhận"}
    assert (got[0].dossier_code, got[0].source, got[0].at) == (dossier, SRC, T0)
    assert store.timeline(code()) == []


def test_the_same_message_is_added_once(store: Store) -> None:
    dossier, mid = code(), str(uuid.uuid4())
    for _ in range(2):
        with store.begin() as tx:
            added = tx.timeline_add(dossier, "vn.gov.dossier.submitted", mid, T0,
                                    source=SRC, summary={"n": 1})
    assert added is False
    assert len(store.timeline(dossier)) == 1
    # The same message may belong to another dossier's timeline.
    with store.begin() as tx:
        assert tx.timeline_add(code(), "vn.gov.dossier.submitted", mid, T0, source=SRC,
                               summary={})


def test_rollback_leaves_no_timeline_entry(store: Store) -> None:
    dossier = code()
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.timeline_add(dossier, "vn.gov.dossier.submitted", str(uuid.uuid4()), T0,
                        source=SRC, summary={})
        raise RuntimeError("boom")
    assert store.timeline(dossier) == []


def test_sequences_only_move_forward(store: Store) -> None:
    consumer, dossier = f"w-{uuid.uuid4().hex[:6]}", code()
    assert store.last_sequence(consumer, dossier) is None
    assert store.set_sequence(consumer, dossier, 3)
    assert store.set_sequence(consumer, dossier, 5)
    assert not store.set_sequence(consumer, dossier, 4)
    assert not store.set_sequence(consumer, dossier, 5)
    assert store.last_sequence(consumer, dossier) == 5
    assert store.last_sequence(consumer + "x", dossier) is None
    with store.begin() as tx:
        assert tx.last_sequence(consumer, dossier) == 5
        assert tx.set_sequence(consumer, dossier, 6)
    assert store.last_sequence(consumer, dossier) == 6


def test_sequences_kept_in_a_unit_of_work_are_written_at_commit_never_backwards(
        store: Store) -> None:
    consumer, ahead, behind, fresh = f"w-{uuid.uuid4().hex[:6]}", code(), code(), code()
    store.set_sequence(consumer, ahead, 7)
    store.set_sequence(consumer, behind, 2)
    with store.begin() as tx:
        tx.sequence_keep(consumer, ahead, 5)  # older than what is there: left as it is
        tx.sequence_keep(consumer, behind, 3)
        tx.sequence_keep(consumer, behind, 4)  # the same dossier twice in one batch
        tx.sequence_keep(consumer, fresh, 1)
        tx.sequence_keep(consumer + "x", fresh, 9)  # another consumer's
        assert store.last_sequence(consumer, fresh) is None  # not before the commit
    assert store.last_sequences(consumer, [ahead, behind, fresh]) == {
        ahead: 7, behind: 4, fresh: 1}
    assert store.last_sequence(consumer + "x", fresh) == 9
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.sequence_keep(consumer, fresh, 2)
        raise RuntimeError("the batch failed")
    assert store.last_sequence(consumer, fresh) == 1  # nothing of a rolled-back unit


def test_sequences_of_many_dossiers_are_read_in_one_query(store: Store) -> None:
    consumer, applied, never = f"w-{uuid.uuid4().hex[:6]}", [code() for _ in range(3)], code()
    for n, dossier in enumerate(applied, start=1):
        store.set_sequence(consumer, dossier, n)
    store.set_sequence(consumer + "x", never, 9)  # another consumer's: not this one's
    assert store.last_sequences(consumer, [*applied, never]) == {
        dossier: n for n, dossier in enumerate(applied, start=1)}
    assert store.last_sequences(consumer, []) == {}


class CountingStore(Store):
    """The real store, counting the batched reads it is asked for."""

    reads: list[list[str]]

    def last_sequences(self, consumer: str, dossier_codes: list[str]) -> dict[str, int]:
        self.reads.append(list(dossier_codes))
        return super().last_sequences(consumer, dossier_codes)


def test_the_reads_of_deliveries_asking_together_share_a_query(store: Store) -> None:
    counting = CountingStore(store.engine)
    counting.reads = []
    consumer, dossiers = f"w-{uuid.uuid4().hex[:6]}", [code() for _ in range(20)]
    for dossier in dossiers[:10]:
        store.set_sequence(consumer, dossier, 5)
    sequencer = Sequencer(counting, consumer)

    async def ask() -> list[int | None]:
        return list(await asyncio.gather(
            *(sequencer.superseded_by(dossier, 5) for dossier in dossiers)))

    # The first ten have 5 applied (not newer: superseded by 5), the others nothing yet.
    assert asyncio.run(ask()) == [5] * 10 + [None] * 10
    assert len(counting.reads) < len(dossiers)
    assert sorted(code for read in counting.reads for code in read) == sorted(dossiers)
    # A read asked after a sequence was committed sees it.
    store.set_sequence(consumer, dossiers[-1], 7)
    assert asyncio.run(ask())[-1] == 7


def test_in_order_application_under_two_workers(store: Store) -> None:
    """Workers that read-then-advance inside a unit of work never apply one step twice."""
    consumer, dossier = f"w-{uuid.uuid4().hex[:6]}", code()
    store.set_sequence(consumer, dossier, 0)
    applied: list[int] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        for _ in range(20):
            with store.begin() as tx:
                last = tx.last_sequence(consumer, dossier)
                assert last is not None
                tx.set_sequence(consumer, dossier, last + 1)
                applied.append(last + 1)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert sorted(applied) == list(range(1, 41))
    assert store.last_sequence(consumer, dossier) == 40


def test_within_one_second_the_order_of_recording_decides(store: Store) -> None:
    """A system's time to the second (a gateway's payment at 09:00:05) must not sort before
    the hub's own event of the same second that caused it (requested at 09:00:05.4)."""
    dossier = code()
    second = T0.replace(microsecond=0)
    with store.begin() as tx:
        for event_type, at in (("vn.gov.payment.requested", second.replace(microsecond=400_000)),
                               ("vn.gov.payment.completed", second),
                               ("vn.gov.dossier.status-changed", second + timedelta(seconds=1)),
                               ("vn.gov.dossier.submitted", second - timedelta(seconds=1))):
            tx.timeline_add(dossier, event_type, str(uuid.uuid4()), at, source=SRC, summary={})
    assert [e.event_type for e in store.timeline(dossier)] == [
        "vn.gov.dossier.submitted", "vn.gov.payment.requested", "vn.gov.payment.completed",
        "vn.gov.dossier.status-changed"]


def test_kept_events_are_written_at_commit_once_each_or_not_at_all(store: Store) -> None:
    from hub.store.timeline import TimelineEvent

    dossier, first, second = code(), str(uuid.uuid4()), str(uuid.uuid4())

    def event(message_id: str, status: int) -> TimelineEvent:
        return TimelineEvent(dossier, "vn.gov.dossier.status-changed", message_id, T0, SRC,
                             {"status": status})

    with store.begin() as tx:
        tx.timeline_keep(event(first, 1))
        tx.timeline_keep(event(second, 2))
        tx.timeline_keep(event(first, 1))  # the same message twice in one batch
        assert store.timeline(dossier) == []  # not before the commit
    got = store.timeline(dossier)
    # Within one second, in the order kept.
    assert [(e.message_id, e.summary) for e in got] == [(first, {"status": 1}),
                                                        (second, {"status": 2})]
    with store.begin() as tx:  # a redelivery, kept again
        tx.timeline_keep(event(second, 2))
    assert len(store.timeline(dossier)) == 2
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.timeline_keep(event(str(uuid.uuid4()), 3))
        raise RuntimeError("rolled back")
    assert len(store.timeline(dossier)) == 2
