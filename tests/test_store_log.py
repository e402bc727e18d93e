"""The message log on both databases: appends, the hash chain, tampering, concurrency."""

from __future__ import annotations

import collections
import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from hub.envelope import Envelope
from hub.errors import HubError
from hub.store import LogFields, Store, UnitOfWork, sha256_hex
from hub.testing.store import scratch_url
from hub.testing.waiting import wait_for

SRC = "VN:GOV:000.00.00.H56:igate"


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    with scratch_url(store_url, tmp_path) as url:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()


def fill(store: Store, n: int, subject: str = "D-1", link: bool = True) -> None:
    with store.begin() as tx:
        for i in range(n):
            tx.log(
                "in" if i % 2 else "out",
                LogFields(str(uuid.uuid4()), "vn.gov.dossier.submitted", SRC, subject),
                sha256_hex(f"body {i}".encode()),
                "lienthong.work.x",
            )
    if link:
        store.link_log()  # deferred mode (PostgreSQL): chain what was parked, now


def sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def problems(store: Store) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in store.verify_log().problems]


def test_appends_chain_and_verify(store: Store) -> None:
    fill(store, 3, "D-A")
    env = Envelope.new(source=SRC, type="vn.gov.dossier.submitted", subject="D-B", data={})
    at = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with store.begin() as tx:
        tx.log("in", env, sha256_hex(env.to_bytes()), "igate", at=at)
        tx.flush_log()
        tx.log("out", env, sha256_hex(env.to_bytes()), "lienthong.events")
    fill(store, 2, "D-A")

    report = store.verify_log()
    assert report.ok, report.problems
    assert (report.checked, report.head_seq) == (7, 7)

    rows = store.log_rows(limit=100)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    assert report.head_hash == rows[-1].row_hash
    got = rows[3]
    assert (got.message_id, got.type, got.source, got.subject, got.peer, got.at) == (
        env.id, env.type, SRC, "D-B", "igate", at,
    )
    assert [r.seq for r in store.log_rows(subject="D-B")] == [4, 5]
    assert [r.seq for r in store.log_rows(subject="D-A", limit=2)] == [6, 7]


def test_bad_entries_are_refused_before_anything_is_written(store: Store) -> None:
    fields = LogFields("m")
    with pytest.raises(ValueError, match="direction"), store.begin() as tx:
        tx.log("sideways", fields, sha256_hex(b""), None)
    with pytest.raises(ValueError, match="body_sha256"), store.begin() as tx:
        tx.log("in", fields, "abc", None)
    assert store.verify_log().checked == 0


def test_rollback_leaves_the_chain_untouched(store: Store) -> None:
    fill(store, 2)
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.log("in", LogFields("m-x"), sha256_hex(b"x"), None)
        tx.flush_log()
        raise RuntimeError("handler failed")
    report = store.verify_log()
    assert report.ok and report.checked == 2 and report.head_seq == 2


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("at", datetime(2030, 1, 1, tzinfo=UTC)),
        ("direction", "in"),
        ("message_id", "forged"),
        ("type", "vn.gov.dossier.withdrawn"),
        ("source", "VN:GOV:000.00.00.G22:other"),
        ("subject", "D-OTHER"),
        ("peer", None),
        ("body_sha256", "0" * 64),
    ],
)
def test_an_edited_field_is_detected(store: Store, column: str, value: object) -> None:
    fill(store, 4)
    sql(store, f"UPDATE message_log SET {column} = :v WHERE seq = 2", v=value)
    # "direction" of row 2 is already "in"; flip it the other way.
    if column == "direction":
        sql(store, "UPDATE message_log SET direction = 'out' WHERE seq = 2")
    assert problems(store) == [(2, "edited")]


def test_a_rehashed_row_breaks_the_link_to_the_next(store: Store) -> None:
    fill(store, 4)
    sql(store, "UPDATE message_log SET row_hash = :h WHERE seq = 2", h="a" * 64)
    assert problems(store) == [(2, "edited"), (3, "broken_link")]


def test_a_deleted_row_is_detected(store: Store) -> None:
    fill(store, 5)
    sql(store, "DELETE FROM message_log WHERE seq = 3")
    report = store.verify_log()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "missing"), (4, "broken_link")]
    assert "seq 3 missing" in str(report.problems[0])


def test_inserted_rows_are_detected(store: Store) -> None:
    fill(store, 3)
    columns = "seq, at, direction, message_id, type, source, subject, peer, body_sha256, " \
        "prev_hash, row_hash"
    copy = f"INSERT INTO message_log ({columns}) SELECT :seq, at, direction, message_id, " \
        f"type, source, subject, peer, body_sha256, prev_hash, row_hash FROM message_log " \
        "WHERE seq = 3"
    sql(store, copy, seq=4)
    assert (4, "beyond_head") in problems(store)
    sql(store, "DELETE FROM message_log WHERE seq = 4")
    sql(store, copy, seq=0)
    assert {(0, "unexpected"), (0, "edited")} <= set(problems(store))


def test_a_truncated_tail_is_detected_through_the_chain_head(store: Store) -> None:
    fill(store, 5)
    sql(store, "DELETE FROM message_log WHERE seq >= 4")
    report = store.verify_log()
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "truncated")]
    assert "ends at seq 3" in report.problems[0].detail


def test_a_missing_chain_head_is_reported_and_stops_appends(store: Store) -> None:
    fill(store, 2)
    sql(store, "DELETE FROM log_head")
    assert problems(store) == [(2, "head_missing")]
    with pytest.raises(HubError) as caught:
        fill(store, 1)
    assert caught.value.code == "server.log_head_missing"


def test_rows_parked_by_a_process_that_died_are_linked_by_the_next(store_url: str) -> None:
    with Store.open(store_url) as store:
        before = store.verify_log().head_seq or 0
        if store.deferred_log:
            # A unit of work of a process that died after commit, before its linker ran.
            with store.engine.connect() as conn:
                tx = UnitOfWork(conn, deferred_log=True)
                for n in range(3):
                    tx.log("in", LogFields(f"dead-{n}"), sha256_hex(b""), None)
                conn.begin()
                tx.flush_log()
                conn.commit()
            assert store.verify_log().pending >= 3
        else:
            fill(store, 3)
        assert store.link_log() >= 0
        report = store.verify_log()
        assert report.ok and report.pending == 0
        assert (report.head_seq or 0) >= before + 3


def test_the_linker_thread_chains_parked_rows_on_its_own(pg_url: str, tmp_path: Path) -> None:
    with scratch_url(pg_url, tmp_path) as url, Store.open(url) as store:
        assert store.deferred_log
        for n in range(3):
            fill(store, 2, subject=f"D-{n}", link=False)

        def linked() -> bool:
            report = store.verify_log()
            return report.ok and report.pending == 0 and report.checked == 6

        wait_for(linked, timeout=10, message="the linker to chain 6 rows")
        with Store.open(url, deferred_log=False) as inline:  # both modes share one chain
            fill(inline, 2)
            fill(store, 2)
            report = inline.verify_log()
            assert (report.ok, report.checked) == (True, 10)


def check_concurrent_writers(store: Store) -> None:
    threads, tx_per_thread, rows_per_tx = 6, 15, 4
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for _ in range(tx_per_thread):
                fill(store, rows_per_tx, subject=f"D-{n}", link=False)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors
    store.link_log()
    total = threads * tx_per_thread * rows_per_tx
    report = store.verify_log()
    assert report.ok, report.problems[:5]
    assert (report.checked, report.head_seq, report.pending) == (total, total, 0)
    rows = store.log_rows(limit=total)
    assert collections.Counter(r.subject for r in rows) == {
        f"D-{n}": tx_per_thread * rows_per_tx for n in range(threads)
    }
    if not store.deferred_log:
        # Inline, each unit of work's rows are contiguous: it held the head while appending.
        for first in range(0, total, rows_per_tx):
            assert len({r.subject for r in rows[first:first + rows_per_tx]}) == 1


def test_concurrent_writers_keep_one_linear_chain(store: Store) -> None:
    """Default mode: inline on SQLite, deferred (linker thread) on PostgreSQL."""
    check_concurrent_writers(store)


def test_concurrent_inline_writers_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    with scratch_url(pg_url, tmp_path) as url, Store.open(url, deferred_log=False) as store:
        check_concurrent_writers(store)


def test_verify_reports_progress(store: Store) -> None:
    fill(store, 5)
    seen: list[tuple[int, int]] = []
    assert store.verify_log(progress=lambda done, total: seen.append((done, total))).ok
    assert seen[-1] == (5, 5)


def test_times_round_trip_to_the_microsecond(store: Store) -> None:
    at = datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) + timedelta(hours=0)
    with store.begin() as tx:
        tx.log("in", LogFields("m-t"), sha256_hex(b""), None, at=at)
    store.link_log()
    assert store.log_rows()[-1].at == at
