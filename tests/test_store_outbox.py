"""The outbox on both databases: add in a unit of work, claim, publish, release, prune."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.broker.messages import Outgoing
from hub.store import OutboxItem, Store
from hub.store.outbox import MESSAGE_FIELDS
from hub.testing.store import scratch_url


@dataclass(frozen=True)
class Message:
    """Shaped like hub.broker.messages.Outgoing."""

    body: bytes
    exchange: str = "lienthong.events"
    routing_key: str = "dossier.submitted.000_00_00_H56.1_000001"
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    type: str = "vn.gov.dossier.submitted"
    headers: dict[str, Any] = field(default_factory=lambda: {"lt-attempt": 0})
    app_id: str = "VN:GOV:000.00.00.H56:igate"
    subject: str | None = None


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    with scratch_url(store_url, tmp_path) as url:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()


def add(store: Store, *bodies: bytes) -> list[Message]:
    messages = [Message(body) for body in bodies]
    with store.begin() as tx:
        for m in messages:
            tx.outbox_add(m)
    return messages


def test_added_messages_come_back_whole_and_oldest_first(store: Store) -> None:
    body = b'{"x":"\xc4\x91\x00 binary"}'
    first = Message(body, headers={"lt-signature": "abc..def", "lt-attempt": 0,
                                   "lt-history": [{"attempt": 1, "code": "x"}]})
    with store.begin() as tx:
        assert tx.outbox_add(first) > 0
    add(store, b"2", b"3")

    pending = store.outbox_pending(10)
    assert [p.body for p in pending] == [body, b"2", b"3"]
    item = pending[0]
    assert isinstance(item, OutboxItem)
    assert item.message_fields() == {name: getattr(first, name) for name in MESSAGE_FIELDS}
    assert item.created_at.tzinfo is not None
    assert pending[0].id < pending[1].id < pending[2].id


def test_claims_lease_and_publishing_marks(store: Store) -> None:
    add(store, b"a", b"b", b"c")
    claimed = store.outbox_pending(2)
    assert [c.body for c in claimed] == [b"a", b"b"]
    # Leased rows are not handed out again; the next claim gets the rest.
    assert [c.body for c in store.outbox_pending(10)] == [b"c"]
    assert store.outbox_pending(10) == []
    # Looking without leasing sees all unpublished rows.
    assert len(store.outbox_pending(10, lease=None)) == 3

    assert store.outbox_mark_published([claimed[0].id]) == 1
    assert store.outbox_release([claimed[1].id]) == 1
    assert [c.body for c in store.outbox_pending(10)] == [b"b"]
    assert [c.body for c in store.outbox_pending(10, lease=None)] == [b"b", b"c"]


def test_an_expired_lease_hands_the_rows_out_again(store: Store) -> None:
    add(store, b"a")
    assert len(store.outbox_pending(10, lease=-1)) == 1  # a relay that died at once
    assert [c.body for c in store.outbox_pending(10)] == [b"a"]


def test_rollback_leaves_no_outbox_row(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.outbox_add(Message(b"never"))
        raise RuntimeError("validation failed after storing")
    assert store.outbox_pending(10, lease=None) == []


def test_two_relays_never_claim_the_same_rows(store: Store) -> None:
    add(store, *(str(i).encode() for i in range(200)))
    claimed: list[list[int]] = [[], [], []]
    start = threading.Barrier(len(claimed))

    def relay(n: int) -> None:
        start.wait()
        while batch := store.outbox_pending(7):
            claimed[n].extend(item.id for item in batch)
            store.outbox_mark_published([item.id for item in batch])

    workers = [threading.Thread(target=relay, args=(n,)) for n in range(len(claimed))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == 200


def test_prune_deletes_published_rows_only(store: Store) -> None:
    add(store, b"old", b"unpublished")
    old = store.outbox_pending(1)[0]
    store.outbox_mark_published([old.id])
    assert store.outbox_prune(datetime.now(UTC) - timedelta(days=1)) == 0
    assert store.outbox_prune(timedelta(seconds=-1)) == 1
    assert [c.body for c in store.outbox_pending(10, lease=None)] == [b"unpublished"]


def test_the_broker_outgoing_goes_in_and_comes_back_equal(store: Store) -> None:
    sent = Outgoing(
        body=b'{"id":"1"}', exchange="lienthong.events", routing_key="dossier.x.none.none",
        message_id=str(uuid.uuid4()), type="vn.gov.dossier.submitted",
        headers={"lt-signature": "e30..sig", "lt-attempt": 0}, app_id=None,
    )
    with store.begin() as tx:
        tx.outbox_add(sent)
    (item,) = store.outbox_pending(10)
    assert Outgoing(**item.message_fields()) == sent


def test_earlier_unpublished_rows_of_subjects(store: Store) -> None:
    """What a relay must see published before a later row of the same subject (the relay's
    order across processes): unpublished rows older than the given row, of those subjects."""
    a, b = f"A-{uuid.uuid4()}", f"B-{uuid.uuid4()}"
    with store.begin() as tx:
        ids = [tx.outbox_add(Message(b"x", subject=s)) for s in (a, b, a, None, a)]
    store.outbox_mark_published([ids[0]])
    assert sorted(store.outbox_earlier_unpublished(ids[4], [a, b])) == [(ids[1], b), (ids[2], a)]
    assert store.outbox_earlier_unpublished(ids[2], [a]) == []
    assert store.outbox_earlier_unpublished(ids[4], []) == []


def _buffers(conn: Any, sql: str) -> tuple[int, str]:
    """The shared buffers ``sql`` read and its plan's node types (EXPLAIN ANALYZE, rolled
    back by the caller)."""
    plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}").scalar_one()
    top = plan[0]["Plan"]
    nodes: list[str] = []
    stack = [top]
    while stack:
        node = stack.pop()
        nodes.append(node["Node Type"])
        stack += node.get("Plans", [])
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"]), " ".join(nodes)


def test_a_claim_walks_the_unpublished_rows_by_index_past_published_ones(
        pg_url: str, tmp_path: Path) -> None:
    """A published row leaves its unpublished version's index entry behind until a vacuum.
    The claim plans with plain index scans only (hub.store.engine.walk_index_in_order), which
    mark such entries dead as they pass them, so that the next claim skips them instead of
    reading every published row's page again, as a bitmap scan did."""
    from hub.store import outbox as rows
    from hub.store.engine import walk_index_in_order

    with scratch_url(pg_url, tmp_path) as url, Store.open(url) as store:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO outbox (created_at, message_id, type, app_id, exchange, routing_key,"
                " headers, body, subject) SELECT now(), 'm' || g, 't', 'a', 'x', 'rk', '{}',"
                " convert_to(repeat('x', 1500), 'UTF8'), 'S' || g"
                " FROM generate_series(1, 3000) AS g")
            ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM outbox ORDER BY id")]
        store.outbox_mark_published(ids[:-3])
        claim = ("UPDATE outbox SET claimed_until = now() WHERE id IN (SELECT id FROM outbox "
                 "WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())"
                 " ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id")
        read = []
        for _ in range(2):
            with store.engine.connect() as conn, conn.begin() as tx:
                walk_index_in_order(conn)
                read.append(_buffers(conn, claim))
                tx.rollback()
        # Whether the second scan skips the entries the first marked depends on every
        # transaction open in the database having started after the rows were published (a
        # test run in parallel may hold one): the plan is what the hub controls.
        for _, plan in read:
            assert "Bitmap" not in plan and "Seq Scan" not in plan, plan
        # The claim itself plans so, in its own transaction only.
        with store.engine.connect() as conn, conn.begin():
            assert [item.id for item in rows.claim(conn, 10, 30.0)] == ids[-3:]
            assert conn.exec_driver_sql("SHOW enable_bitmapscan").scalar_one() == "off"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW enable_bitmapscan").scalar_one() == "on"
