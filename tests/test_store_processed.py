"""Processed ids per consumer (the idempotent receiver's store) on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from hub.store import Store, sha256_hex
from hub.store.tables import processed_ids


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def test_lookup_record_and_duplicates(store: Store) -> None:
    processed = store.processed
    consumer = f"worker-{uuid.uuid4().hex[:8]}"
    a, b, c = ids(3)
    assert processed.lookup(consumer, a) is None
    processed.record(consumer, [(a, sha256_hex(b"a")), (b, sha256_hex(b"b"))])
    assert processed.lookup(consumer, a) == sha256_hex(b"a")
    assert processed.lookup(consumer, b) == sha256_hex(b"b")
    assert processed.lookup(consumer, c) is None

    # The same pair again (a redelivery), even twice in one batch: not an error.
    processed.record(consumer, [(a, sha256_hex(b"a")), (c, sha256_hex(b"c")),
                                (c, sha256_hex(b"c"))])
    # The same id with another body keeps the first digest: the replay stays detectable.
    processed.record(consumer, [(a, sha256_hex(b"forged"))])
    assert processed.lookup(consumer, a) == sha256_hex(b"a")
    assert processed.lookup(consumer, c) == sha256_hex(b"c")
    processed.record(consumer, [])

    # Another consumer has its own memory.
    assert processed.lookup(consumer + "-other", a) is None


def test_recording_inside_a_unit_of_work_rolls_back_with_it(store: Store) -> None:
    consumer, (mid,) = f"w-{uuid.uuid4().hex[:8]}", ids(1)
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.record_processed(consumer, [(mid, sha256_hex(b"x"))])
        raise RuntimeError("boom")
    assert store.processed.lookup(consumer, mid) is None
    with store.begin() as tx:
        tx.record_processed(consumer, [(mid, sha256_hex(b"x"))])
    assert store.processed.lookup(consumer, mid) == sha256_hex(b"x")


def test_prune_forgets_old_ids_only(store: Store, tmp_path: Path) -> None:
    consumer = f"w-{uuid.uuid4().hex[:8]}"
    old, new = ids(2)
    store.processed.record(consumer, [(old, sha256_hex(b"o")), (new, sha256_hex(b"n"))])
    with store.engine.begin() as conn:
        conn.execute(
            update(processed_ids)
            .where(processed_ids.c.message_id == old)
            .values(recorded_at=datetime.now(UTC) - timedelta(days=30))
        )
    assert store.processed.prune(timedelta(days=7)) >= 1
    assert store.processed.lookup(consumer, old) is None
    assert store.processed.lookup(consumer, new) == sha256_hex(b"n")
    assert store.processed.prune(datetime.now(UTC) - timedelta(days=7)) == 0
