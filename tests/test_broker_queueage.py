"""The age of a queue's oldest message from the queue ledger (hub.broker.queueage): the pure
rule, the ledger on both databases (running totals kept by several writers at once), and the
writer counting the confirms of a real publisher into a real queue."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pika
import pytest
from sqlalchemy import select

from hub.broker.messages import Outgoing
from hub.broker.publisher import Publisher
from hub.broker.queueage import BCC, Checkpoint, LedgerWriter, OldestAge, age_of, oldest_age
from hub.settings import Settings
from hub.store import Store, queueledger
from hub.store.tables import queue_ledger

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


CHECKPOINTS = [Checkpoint(3, at(0)), Checkpoint(5, at(10)), Checkpoint(9, at(20))]


def test_the_oldest_is_the_first_published_still_in_the_queue() -> None:
    now = at(60)
    # 9 published, 9 in the queue: the first, confirmed by the first checkpoint.
    assert oldest_age(9, 9, CHECKPOINTS, now) == OldestAge(60.0)
    # 9 published, 6 left: the 4th, confirmed by the checkpoint at 10 s (total 5).
    assert oldest_age(9, 6, CHECKPOINTS, now) == OldestAge(50.0)
    assert oldest_age(9, 5, CHECKPOINTS, now) == OldestAge(50.0)
    assert oldest_age(9, 4, CHECKPOINTS, now) == OldestAge(40.0)
    assert oldest_age(9, 1, CHECKPOINTS, now) == OldestAge(40.0)
    # Empty, or unknown to the ledger: no age.
    assert oldest_age(9, 0, CHECKPOINTS, now) is None
    assert oldest_age(0, 4, [], now) is None
    # More in the queue than the ledger counted: older than its first checkpoint.
    assert oldest_age(9, 12, CHECKPOINTS, now) == OldestAge(60.0, at_least=True)


def test_the_store_ledger_keeps_one_total_for_many_writers_and_forgets_what_left(
        store: Store) -> None:
    ledger = store.queue_ledger
    queue, other = f"q.{uuid.uuid4().hex[:6]}", f"q.{uuid.uuid4().hex[:6]}"
    assert ledger.checkpoints(queue, 5) == (0, [])
    # Four writers (as worker processes would), 25 additions of 1 to 4 messages each.
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for i in range(25):
                ledger.add({queue: 1 + (i + k) % 4, other: 1}, at(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = sum(1 + (i + k) % 4 for k in range(4) for i in range(25))
    with store.engine.connect() as conn:
        totals = conn.execute(select(queue_ledger.c.total).where(
            queue_ledger.c.queue == queue).order_by(queue_ledger.c.total)).scalars().all()
    # One checkpoint per addition, each on top of the one before (none written twice).
    assert len(totals) == 100 and totals[-1] == expected
    assert ledger.checkpoints(queue, expected)[0] == expected
    assert ledger.checkpoints(other, 0)[0] == 100
    # The oldest of the last 3 is dated by the first checkpoint that reaches it.
    total, [cp] = ledger.checkpoints(queue, 3)
    assert cp.total == min(t for t in totals if t >= total - 2)
    # More than the ledger counted: its first checkpoint, as a lower bound.
    assert ledger.checkpoints(queue, expected + 5)[1][0].total == totals[0]
    assert age_of(ledger, queue, expected + 5, at(100)) == OldestAge(
        (at(100) - ledger.checkpoints(queue, expected + 5)[1][0].at).total_seconds(),
        at_least=True)
    ledger.forget(queue)
    assert ledger.checkpoints(queue, 3) == (0, [])
    assert ledger.checkpoints(other, 0)[0] == 100


def test_a_long_lived_queue_keeps_a_bounded_ledger_oldest_dates_first(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueledger, "MAX_CHECKPOINTS", 10)
    queue = f"q.{uuid.uuid4().hex[:6]}"
    for i in range(40):
        store.queue_ledger.add({queue: 1}, at(i))
    with store.engine.connect() as conn:
        rows = conn.execute(select(queue_ledger.c.total, queue_ledger.c.at).where(
            queue_ledger.c.queue == queue).order_by(queue_ledger.c.total)).all()
    assert len(rows) <= 10
    assert rows[0].total == 1 and rows[-1].total == 40  # the first and the newest kept
    # The newest are dated to the interval; the last message by its own checkpoint.
    assert store.queue_ledger.checkpoints(queue, 1)[1][0].at == at(39)


def test_a_writer_counts_what_the_broker_confirmed_into_each_queue(
        settings: Settings, store: Store) -> None:
    queue = f"{settings.name_prefix}.ledger.{uuid.uuid4().hex[:6]}"
    other = f"{queue}.other"
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    for q in (queue, other):
        conn.channel().queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})

    async def run() -> None:
        writer = LedgerWriter(store.queue_ledger, interval=0.05)
        publisher = Publisher(settings.broker_urls, settings, on_confirmed=writer.confirmed)
        await publisher.start()
        writer.start()
        try:
            await asyncio.gather(*(publisher.publish(Outgoing(
                body=b"{}", exchange="", routing_key=queue, message_id=str(i), type="t"))
                for i in range(7)))
            # One message to both queues (sender-selected distribution): counted in each.
            await publisher.publish(Outgoing(body=b"{}", exchange="", routing_key="",
                                             message_id="both", type="t",
                                             headers={BCC: [queue, other]}))
        finally:
            await publisher.close()
            await writer.stop()

    try:
        before = datetime.now(UTC)
        asyncio.run(run())
        after = datetime.now(UTC)
        total, cps = store.queue_ledger.checkpoints(queue, 8)
        assert total == 8 and store.queue_ledger.checkpoints(other, 1)[0] == 1
        assert all(before <= c.at <= after for c in cps)
    finally:
        for q in (queue, other):
            conn.channel().queue_delete(q)
        conn.close()


def test_a_count_kept_by_the_broker_is_checkpointed_once_and_restarts_when_it_goes_back(
        store: Store) -> None:
    ledger = store.queue_ledger
    queue = f"q-{uuid.uuid4().hex[:8]}"
    ledger.advance(queue, 3, at(0))
    ledger.advance(queue, 3, at(5))  # another process saw the same count: nothing written
    ledger.advance(queue, 5, at(10))
    assert ledger.checkpoints(queue, 4) == (5, [Checkpoint(3, at(0))])
    assert age_of(ledger, queue, 4, at(100)) == OldestAge(100.0)
    ledger.advance(queue, 2, at(20))  # the broker forgot its count: the ledger starts again
    assert ledger.checkpoints(queue, 2) == (2, [Checkpoint(2, at(20))])
    ledger.forget(queue)
