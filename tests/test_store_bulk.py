"""Batch writes (hub.store.bulk and the *_add_many of a unit of work) on both databases: one
statement per batch, exact counts of what was written (skipped conflicts do not count), the
columns' own conversions, all or nothing with the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, select

from hub.store import Store, TimelineEvent
from hub.store.bulk import MAX_ROWS, BulkInsert
from hub.store.tables import intake_dossiers
from hub.testing.store import scratch_url

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SRC = "VN:GOV:000.00.00.H56:igate"


@dataclass(frozen=True)
class Message:
    """Shaped like hub.broker.messages.Outgoing."""

    body: bytes
    exchange: str = "lienthong.events"
    routing_key: str = "dossier.submitted.000_00_00_H56.1_000001"
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    type: str = "vn.gov.dossier.submitted"
    headers: dict[str, Any] = field(default_factory=lambda: {"lt-attempt": 0})
    app_id: str | None = SRC
    subject: str | None = None


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    with scratch_url(store_url, tmp_path) as url:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()


def code() -> str:
    return f"000.00.00.H56-250301-{uuid.uuid4().hex[:8]}"


def event_of(dossier: str, message_id: str, minutes: int = 0) -> TimelineEvent:
    return TimelineEvent(dossier, "vn.gov.dossier.submitted", message_id,
                         T0 + timedelta(minutes=minutes), SRC, {"status": 0, "note": "đã nhận"})


def count_statements(store: Store) -> list[str]:
    """The INSERT statements the store sends from now on."""
    seen: list[str] = []

    def before(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    return seen


def test_timeline_batch_counts_what_it_added(store: Store) -> None:
    dossier, again = code(), str(uuid.uuid4())
    with store.begin() as tx:
        assert tx.timeline_add(dossier, "vn.gov.dossier.submitted", again, T0, source=SRC,
                               summary={})
    fresh = [str(uuid.uuid4()) for _ in range(3)]
    with store.begin() as tx:
        added = tx.timeline_add_many([
            event_of(dossier, fresh[0], 1), event_of(dossier, again, 2),  # kept before
            event_of(dossier, fresh[1], 3), event_of(dossier, fresh[1], 4),  # twice in one batch
            event_of(dossier, fresh[2], 5),
        ])
    # Exactly the new ones, on both databases (no -1, no claim for a duplicate).
    assert added == 3
    entries = store.timeline(dossier)
    assert [e.message_id for e in entries] == [again, fresh[0], fresh[1], fresh[2]]
    assert entries[1].summary == {"status": 0, "note": "đã nhận"}
    assert entries[1].at == T0 + timedelta(minutes=1) and entries[1].source == SRC
    with store.begin() as tx:
        assert tx.timeline_add_many([event_of(dossier, fresh[0])]) == 0
        assert tx.timeline_add_many([]) == 0


def test_outbox_batch_is_one_statement_and_comes_back_whole(store: Store) -> None:
    messages = [Message(f'{{"n":{i},"đ":"\\u0111"}}'.encode() + b"\x00",
                        headers={"lt-signature": f"sig{i}..x", "lt-attempt": 0,
                                 "lt-upstream-proof": "a.b.c"}, app_id=None if i == 2 else SRC)
                for i in range(5)]
    inserts = count_statements(store)
    with store.begin() as tx:
        assert tx.outbox_add_many(messages, at=T0) == 5
    assert len([s for s in inserts if "outbox" in s]) == 1
    pending = store.outbox_pending(10, lease=None)
    assert [p.message_id for p in pending] == [m.message_id for m in messages]
    for item, message in zip(pending, messages, strict=True):
        assert (item.body, item.headers, item.app_id) == (message.body, message.headers,
                                                           message.app_id)
        assert item.created_at == T0


def test_a_batch_is_kept_or_dropped_with_its_transaction(store: Store) -> None:
    dossier = code()
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.outbox_add_many([Message(b"1"), Message(b"2")])
        tx.timeline_add_many([event_of(dossier, str(uuid.uuid4()))])
        raise RuntimeError("the batch failed after writing")
    assert store.outbox_pending(10, lease=None) == []
    assert store.timeline(dossier) == []


def test_bulk_insert_chunks_long_batches_and_upserts(store: Store) -> None:
    upsert = BulkInsert(intake_dossiers,
                        ("dossier_code", "sequence", "procedure_code", "status", "updated_at"),
                        conflict=("dossier_code",),
                        update=("sequence", "procedure_code", "status", "updated_at"))
    codes = [code() for _ in range(MAX_ROWS * 2 + 3)]
    with store.begin() as tx:
        assert upsert.execute(tx.connection, [(c, 1, None, 0, T0) for c in codes]) == len(codes)
    later = T0 + timedelta(hours=1)
    with store.begin() as tx:
        # Updated rows count as written.
        assert upsert.execute(tx.connection, [(codes[0], 2, "1.000001", 4, later)]) == 1
    with store.engine.connect() as conn:
        rows = {r.dossier_code: r for r in conn.execute(
            select(intake_dossiers).where(intake_dossiers.c.dossier_code.in_(codes)))}
    assert len(rows) == len(codes)
    assert (rows[codes[0]].sequence, rows[codes[0]].procedure_code, rows[codes[0]].status,
            rows[codes[0]].updated_at) == (2, "1.000001", 4, later)
    assert rows[codes[-1]].sequence == 1 and rows[codes[-1]].updated_at == T0


def test_bulk_insert_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="no column 'nope'"):
        BulkInsert(intake_dossiers, ("dossier_code", "nope"))
    with pytest.raises(ValueError, match="update needs the conflict columns"):
        BulkInsert(intake_dossiers, ("dossier_code", "sequence"), update=("sequence",))


def test_bulk_insert_checks_row_width(store: Store) -> None:
    insert = BulkInsert(intake_dossiers, ("dossier_code", "sequence", "updated_at"))
    with pytest.raises(ValueError, match="has 2 values for 3 columns"), store.begin() as tx:
        insert.execute(tx.connection, [(code(), 1)])


def test_rows_prepared_before_the_transaction(store: Store, tmp_path: Path) -> None:
    """A batch writer converts its rows before it takes the write lock, then writes some of
    them (the jobs it keeps) in the transaction."""
    messages = [Message(f"{i}".encode()) for i in range(4)]
    dossier = code()
    events = [event_of(dossier, str(uuid.uuid4()), i) for i in range(3)]
    outbox_rows = store.prepare_outbox(messages, at=T0)
    timeline_rows = store.prepare_timeline(events)
    assert (len(outbox_rows), len(timeline_rows)) == (4, 3)
    with store.begin() as tx:
        kept = store.join_outbox([outbox_rows.pick((0, 2)), outbox_rows.pick((3,))])
        assert tx.outbox_add_many(kept) == 3
        assert tx.timeline_add_many(store.join_timeline([timeline_rows.pick((1,))])) == 1
        assert tx.outbox_add_many(store.join_outbox([])) == 0
    assert [p.message_id for p in store.outbox_pending(10, lease=None)] == [
        messages[0].message_id, messages[2].message_id, messages[3].message_id]
    assert [e.message_id for e in store.timeline(dossier)] == [events[1].message_id]
    # Rows are bound to their table and dialect.
    with store.begin() as tx, pytest.raises(ValueError, match="cannot be written to timeline"):
        tx.timeline_add_many(outbox_rows)
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        if store.dialect != "sqlite":
            with other.begin() as tx, pytest.raises(ValueError, match="on postgresql"):
                tx.outbox_add_many(outbox_rows)
