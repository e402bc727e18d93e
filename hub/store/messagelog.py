"""The message log on the database: appending hash-chained rows and reading them back.

Appends lock the chain head row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the writer
already holds the database write lock from ``BEGIN IMMEDIATE``), take the next seqs from it,
insert the rows in one statement and move the head. A batch costs one round trip.

Two ways in. Inline (SQLite): a unit of work appends its rows to the chain when it commits;
SQLite has one writer at a time anyway. Deferred (PostgreSQL): a unit of work only parks its
rows in ``log_pending``, in its own transaction (so they are as durable as the rest of it), and
``link_pending`` chains parked rows in batches under the head lock. Holding the head lock
across each writer's commit would make every logging transaction wait for the previous one's
disk flush (about 350 transactions/s here, against over 2,000 without).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, func, select

from hub.envelope import Envelope
from hub.errors import HubError
from hub.store import chain
from hub.store.bulk import BulkInsert, bind, marks
from hub.store.chain import LogReport, LogRow
from hub.store.engine import SQLITE_BEGIN, walk_index_in_order
from hub.store.tables import log_entry_columns, log_head, log_pending, message_log

HEAD_ID = 1
_FIELDS = tuple(column.name for column in log_entry_columns())
_insert_rows = BulkInsert(message_log, ("seq", *_FIELDS, "prev_hash", "row_hash"))
_park_rows = BulkInsert(log_pending, _FIELDS)


@dataclass(frozen=True, slots=True)
class LogFields:
    """What the log keeps of a message when there is no envelope (a body that did not parse:
    its id and type come from the AMQP properties)."""

    message_id: str
    type: str | None = None
    source: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class PendingEntry:
    at: datetime
    direction: str
    message_id: str
    type: str | None
    source: str | None
    subject: str | None
    peer: str | None
    body_sha256: str


def sha256_hex(body: bytes) -> str:
    """The body digest the log and the processed-ids store keep."""
    return hashlib.sha256(body).hexdigest()


def entry(
    direction: str,
    message: Envelope | LogFields,
    body_sha256: str,
    peer: str | None,
    at: datetime | None = None,
) -> PendingEntry:
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
    if len(body_sha256) != 64:
        raise ValueError(
            f"body_sha256 must be a 64-character hex SHA-256 digest, got {body_sha256!r:.80}; "
            "use hub.store.sha256_hex(body)"
        )
    if isinstance(message, Envelope):
        fields = LogFields(message.id, message.type, message.source, message.subject)
    else:
        fields = message
    return PendingEntry(
        at=at or datetime.now(UTC),
        direction=direction,
        message_id=fields.message_id,
        type=fields.type,
        source=fields.source,
        subject=fields.subject,
        peer=peer,
        body_sha256=body_sha256.lower(),
    )


def append(conn: Connection, entries: Sequence[PendingEntry]) -> list[int]:
    """Append ``entries`` to the chain inside the caller's transaction; returns their seqs."""
    if not entries:
        return []
    return _append_after(conn, _lock_head(conn), entries)


def _lock_head(conn: Connection) -> tuple[int, str]:
    # Driver SQL: this runs once per writing transaction (see hub.store.bulk).
    sql = f"SELECT seq, row_hash FROM log_head WHERE id = {marks(conn.dialect, 1)}"
    if conn.dialect.name != "sqlite":
        sql += " FOR UPDATE"
    head = conn.exec_driver_sql(sql, (HEAD_ID,)).one_or_none()
    if head is None:
        raise HubError(
            "the message log's chain head (table log_head, id 1) is missing, so the log cannot "
            "be extended; run 'lienthong log verify' and restore the row from a backup",
            code="server.log_head_missing",
        )
    return int(head[0]), str(head[1])


def _append_after(
    conn: Connection, head: tuple[int, str], entries: Sequence[PendingEntry]
) -> list[int]:
    seq, prev = head
    rows: list[tuple[Any, ...]] = []
    seqs: list[int] = []
    for e in entries:
        seq += 1
        digest = chain.row_hash(
            prev, seq, e.at, e.direction, e.message_id, e.type, e.source, e.subject, e.peer,
            e.body_sha256,
        )
        rows.append((seq, *_values(e), prev, digest))
        seqs.append(seq)
        prev = digest
    _insert_rows.execute(conn, rows)
    dialect = conn.dialect
    conn.exec_driver_sql(
        f"UPDATE log_head SET seq = {marks(dialect, 1)}, row_hash = {marks(dialect, 1)}, "
        f"updated_at = {marks(dialect, 1)} WHERE id = {marks(dialect, 1)}",
        (seq, prev, bind(dialect, log_head, "updated_at", datetime.now(UTC)), HEAD_ID),
    )
    return seqs


def park(conn: Connection, entries: Sequence[PendingEntry]) -> None:
    """Keep ``entries`` in ``log_pending`` inside the caller's transaction, for the linker."""
    _park_rows.execute(conn, [_values(e) for e in entries])


def _values(e: PendingEntry) -> tuple[Any, ...]:
    """In the order of ``_FIELDS``."""
    return (e.at, e.direction, e.message_id, e.type, e.source, e.subject, e.peer, e.body_sha256)


# By id: through the primary key, whose entries of rows already taken out a scan marks dead
# (see hub.store.engine.walk_index_in_order); a sequential scan reads all their pages.
_ANY_PARKED = "SELECT id FROM log_pending ORDER BY id LIMIT 1"
# Column order: id, then _FIELDS.
_TAKE_PARKED = (
    "DELETE FROM log_pending WHERE id IN (SELECT id FROM log_pending ORDER BY id LIMIT {limit}) "
    f"RETURNING id, {', '.join(_FIELDS)}")


def _aware(at: datetime | str) -> datetime:
    # Driver values: PostgreSQL gives an aware datetime; SQLite the stored UTC text.
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def link_pending(engine: Engine, batch: int = 2000) -> int:
    """Chain every parked row, oldest first, ``batch`` per transaction; returns how many.
    Linkers in several processes take turns on the head lock; each reads the parked rows only
    once it holds the lock, so no row is chained twice."""
    linked = 0
    while True:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            conn.begin()
            # Cheap look first: an empty pass takes no row lock (no commit to flush).
            if conn.exec_driver_sql(_ANY_PARKED).first() is None:
                return linked
            walk_index_in_order(conn)
            head = _lock_head(conn)
            # Taken out and read back in one statement (DELETE ... RETURNING: PostgreSQL, and
            # SQLite since 3.35), under the head lock: no other linker takes them meanwhile.
            parked = sorted(conn.exec_driver_sql(
                _TAKE_PARKED.format(limit=marks(conn.dialect, 1)), (batch,)).all())
            if not parked:
                return linked
            _append_after(conn, head, [
                PendingEntry(at=_aware(r[1]), direction=r[2], message_id=r[3], type=r[4],
                             source=r[5], subject=r[6], peer=r[7], body_sha256=r[8])
                for r in parked
            ])
            conn.commit()
        linked += len(parked)
        if len(parked) < batch:
            return linked


def count_pending(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(log_pending)).scalar_one())


def _to_row(r: RowMapping) -> LogRow:
    return LogRow(
        seq=int(r["seq"]), at=r["at"], direction=r["direction"], message_id=r["message_id"],
        type=r["type"], source=r["source"], subject=r["subject"], peer=r["peer"],
        body_sha256=r["body_sha256"], prev_hash=r["prev_hash"], row_hash=r["row_hash"],
    )


def read_head(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(
        select(log_head.c.seq, log_head.c.row_hash).where(log_head.c.id == HEAD_ID)
    ).one_or_none()
    return None if row is None else (int(row.seq), str(row.row_hash))


def verify(
    conn: Connection,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 2000,
) -> LogReport:
    """Check the whole chain. ``conn`` should hold one snapshot (a transaction), so rows
    appended meanwhile do not count as rows beyond the head. ``progress(checked, total)``."""
    head = read_head(conn)
    total = int(conn.execute(select(func.count()).select_from(message_log)).scalar_one())

    def rows() -> Iterator[LogRow]:
        result = conn.execute(
            select(message_log).order_by(message_log.c.seq).execution_options(yield_per=batch)
        )
        for r in result.mappings():
            yield _to_row(r)

    report_progress = None if progress is None else (lambda n: progress(n, total))
    report = chain.verify(rows(), head, report_progress, progress_every=batch)
    return replace(report, pending=count_pending(conn))


def recent(
    conn: Connection, *, subject: str | None = None, limit: int = 50
) -> list[LogRow]:
    """The last ``limit`` rows (of one dossier when ``subject`` is given), oldest first."""
    query = select(message_log).order_by(message_log.c.seq.desc()).limit(limit)
    if subject is not None:
        query = query.where(message_log.c.subject == subject)
    found = [_to_row(r) for r in conn.execute(query).mappings()]
    found.reverse()
    return found
