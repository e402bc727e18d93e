"""The store: the hub's database, SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete
from sqlalchemy.exc import SQLAlchemyError

from hub.errors import HubError
from hub.store import health, held, messagelog, migrate, operators, outbox, timeline
from hub.store.bulk import Prepared
from hub.store.chain import LogReport, LogRow
from hub.store.engine import SQLITE_BEGIN, is_sqlite, make_engine, translate_errors
from hub.store.linker import LogLinker
from hub.store.operators import AuditEntry, DeadLetter
from hub.store.outbox import OutboxItem, OutgoingLike
from hub.store.processed import StoreProcessedIds
from hub.store.queueledger import StoreQueueLedger
from hub.store.tables import event_sequences, intake_idempotency
from hub.store.timeline import TimelineEntry, TimelineEvent
from hub.store.unit import UnitOfWork
from hub.store.writelock import SqliteWriteLock, lock_file

log = logging.getLogger(__name__)


class Store:
    def __init__(self, engine: Engine, *, deferred_log: bool | None = None) -> None:
        self.engine = engine
        # SQLite: the lock every write of the store takes, in every process, so writers take
        # turns instead of sleeping in SQLite's busy handler (hub.store.writelock); nothing to
        # take on PostgreSQL.
        self.write_lock: AbstractContextManager[Any] = (
            SqliteWriteLock(lock_file(engine)) if is_sqlite(engine) else nullcontext())
        self.processed = StoreProcessedIds(engine, self._write)
        self.queue_ledger = StoreQueueLedger(engine)
        # SQLite has one writer at a time: chaining inline costs nothing more there.
        self.deferred_log = not is_sqlite(engine) if deferred_log is None else deferred_log
        if self.deferred_log and is_sqlite(engine):
            raise ValueError("deferred_log is for PostgreSQL; SQLite chains log rows inline")
        self._linker = LogLinker(engine) if self.deferred_log else None
        self._closed = False

    @classmethod
    def open(
        cls, url: str, *, migrate_schema: bool = True, deferred_log: bool | None = None
    ) -> Store:
        """Connect to ``url`` and bring its schema to the newest revision (idempotent, safe
        when several processes open one database at once). ``deferred_log`` (default: on for
        PostgreSQL) parks log rows for a linker thread instead of chaining them in each
        writer's transaction; see ``hub.store.messagelog``."""
        engine = make_engine(url)
        try:
            if migrate_schema:
                migrate.upgrade(engine)
            return cls(engine, deferred_log=deferred_log)
        except BaseException:
            engine.dispose()
            raise

    def close(self) -> None:
        """Stop the linker (linking what is still parked), close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._linker is not None:
            self._linker.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[UnitOfWork]:
        """One transaction. Leaving the block commits (writing the kept timeline and log rows
        first); an exception rolls everything back and is re-raised as it was, except that the
        database being unreachable or locked, here or inside the block, becomes
        ``RetryableError`` (``server.store_unavailable``)."""
        with translate_errors("writing to the store"), self.write_lock:
            conn = self._writer()
            try:
                tx = UnitOfWork(conn, deferred_log=self.deferred_log)
                try:
                    yield tx
                    tx.flush_timeline()
                    tx.flush_sequences()
                    tx.flush_log()
                    conn.commit()
                except BaseException:
                    if conn.in_transaction():
                        conn.rollback()
                    raise
            finally:
                conn.close()
        if tx.parked and self._linker is not None:
            self._linker.notify()

    def _writer(self) -> Connection:
        conn = self.engine.connect()
        if is_sqlite(conn):
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        conn.begin()
        return conn

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        with translate_errors(what), self.write_lock, self.engine.connect() as conn:
            if is_sqlite(conn):
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str, *, snapshot: bool = False) -> Iterator[Connection]:
        with translate_errors(what), self.engine.connect() as conn:
            if snapshot and not is_sqlite(conn):
                conn.execution_options(isolation_level="REPEATABLE READ")
            # SQLite: a read transaction is a snapshot in WAL mode.
            with conn.begin():
                yield conn

    # Message log.

    def link_log(self) -> int:
        """Chain every log row parked so far, now, in this thread (the linker thread does it
        soon anyway); returns how many. After it, rows written before the call are in the
        chain, for ``verify_log`` and ``log_rows``."""
        with translate_errors("linking the message log"):
            return messagelog.link_pending(self.engine)

    def verify_log(self, progress: Callable[[int, int], None] | None = None) -> LogReport:
        """Check the hash chain; ``progress(checked, total)`` is called as rows are checked.
        Rows parked but not linked yet are counted in ``pending``, not checked."""
        with self._read("verifying the message log", snapshot=True) as conn:
            return messagelog.verify(conn, progress)

    def log_rows(self, *, subject: str | None = None, limit: int = 50) -> list[LogRow]:
        """The newest ``limit`` log rows (of one dossier), oldest first. Parked rows are
        linked first, so every committed unit of work's rows are there."""
        try:
            messagelog.link_pending(self.engine)
        except (HubError, SQLAlchemyError) as exc:
            # Show what is chained; verify_log names what is wrong with the chain.
            log.warning("could not link parked log rows before reading: %s", exc)
        with self._read("reading the message log") as conn:
            return messagelog.recent(conn, subject=subject, limit=limit)

    # Outbox.

    def outbox_pending(self, limit: int = 100, *, lease: float | None = 30.0) -> list[OutboxItem]:
        """Unpublished messages, oldest first, leased to the caller for ``lease`` seconds
        (another relay skips them meanwhile). ``lease=None`` only looks: every unpublished
        message, leased or not."""
        if lease is None:
            with self._read("reading the outbox") as conn:
                return outbox.claim(conn, limit, None)
        with self._write("claiming outbox messages") as conn:
            return outbox.claim(conn, limit, lease)

    def prepare_outbox(
        self, messages: Sequence[OutgoingLike], *, at: datetime | None = None,
        claimed_until: datetime | None = None,
    ) -> Prepared:
        """Rows for ``UnitOfWork.outbox_add_many`` (or, leased already to this process's
        relay until ``claimed_until``, for ``outbox_add_claimed``), converted now, outside any
        transaction (a batch writer does it before taking the write lock)."""
        return outbox.prepare_many(self.engine.dialect, messages, at,
                                   claimed_until=claimed_until)

    def join_outbox(self, parts: Sequence[Prepared]) -> Prepared:
        return outbox.join(self.engine.dialect, parts)

    def outbox_earlier_unpublished(self, before: int,
                                   subjects: Iterable[str]) -> list[tuple[int, str]]:
        """(id, subject) of unpublished rows older than row ``before`` about ``subjects`` (see
        hub.outbox.relay: a relay holds back the later rows of a subject)."""
        with self._read("reading the outbox") as conn:
            return outbox.earlier_unpublished(conn, before, subjects)

    def outbox_mark_published(self, ids: Sequence[int]) -> int:
        with self._write("marking outbox messages published") as conn:
            return outbox.mark_published(conn, ids)

    def outbox_release(self, ids: Sequence[int]) -> int:
        """End the lease on messages that could not be published, so they are tried again."""
        with self._write("releasing outbox messages") as conn:
            return outbox.release(conn, ids)

    def outbox_prune(self, older_than: datetime | timedelta) -> int:
        """Delete messages published before ``older_than`` (a time, or an age)."""
        cutoff = _cutoff(older_than)
        with self._write("pruning the outbox") as conn:
            return outbox.prune(conn, cutoff)

    # The intake's Idempotency-Keys.

    def idempotency_prune(self, older_than: datetime | timedelta) -> int:
        """Forget Idempotency-Keys given before ``older_than`` (a time, or an age); returns how
        many. Keep them longer than a client goes on retrying one request."""
        cutoff = _cutoff(older_than)
        with self._write("pruning idempotency keys") as conn:
            result = conn.execute(
                delete(intake_idempotency).where(intake_idempotency.c.created_at < cutoff))
            return int(result.rowcount)

    def event_sequences_prune(self, older_than: datetime | timedelta) -> int:
        """Forget the numbers adapters' events took (hub.intake.sequencing) before ``older_than``;
        returns how many. Keep them as long as processed ids: an event made again after that
        takes a new number, and its receivers no longer remember the first one either."""
        cutoff = _cutoff(older_than)
        with self._write("pruning event sequence numbers") as conn:
            result = conn.execute(
                delete(event_sequences).where(event_sequences.c.assigned_at < cutoff))
            return int(result.rowcount)

    # Dossier timeline and sequences.

    def prepare_timeline(self, events: Sequence[TimelineEvent]) -> Prepared:
        """Rows for ``UnitOfWork.timeline_add_many``, converted now (see ``prepare_outbox``)."""
        return timeline.prepare_many(self.engine.dialect, events)

    def join_timeline(self, parts: Sequence[Prepared]) -> Prepared:
        return timeline.join(self.engine.dialect, parts)

    def timeline(self, dossier_code: str) -> list[TimelineEntry]:
        with self._read("reading a dossier timeline") as conn:
            return timeline.entries(conn, dossier_code)

    def last_sequence(self, consumer: str, dossier_code: str) -> int | None:
        with self._read("reading a dossier sequence") as conn:
            return timeline.last_sequence(conn, consumer, dossier_code)

    def last_sequences(self, consumer: str, dossier_codes: list[str]) -> dict[str, int]:
        """The last sequences ``consumer`` applied to those of ``dossier_codes`` it applied any
        to: one query for the deliveries of a worker that ask together."""
        with self._read("reading dossier sequences") as conn:
            return timeline.last_sequences(conn, consumer, dossier_codes)

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool:
        with self._write("recording a dossier sequence") as conn:
            return timeline.set_sequence(conn, consumer, dossier_code, sequence)

    # Held dossiers of ordered consumers (hub.broker.lanes) and the write probe.

    def held_load(self, queue: str) -> dict[str, dict[str, Any]]:
        """The held dossiers of ``queue``: dossier code -> the group's state."""
        with self._read("reading held dossiers") as conn:
            return held.load(conn, queue)

    def held_save(self, queue: str, dossier_code: str, state: dict[str, Any]) -> None:
        with self._write("saving a held dossier") as conn:
            held.save(conn, queue, dossier_code, state)

    def held_release(self, queue: str, dossier_code: str) -> None:
        with self._write("releasing a held dossier") as conn:
            held.remove(conn, queue, dossier_code)

    def probe(self) -> str:
        """"ok", or why the store cannot be used: ``unreachable: ...`` or ``not writable:
        ...`` (it answers reads but refuses a write). Blocking; see ``hub.store.health``."""
        return health.probe(self.engine)

    @staticmethod
    def is_failure(error: BaseException) -> bool:
        """True when ``error`` says the store cannot be written now (unreachable, locked,
        read-only, full), rather than a bug: the same write can succeed later."""
        return health.is_store_failure(error)

    # Operators.

    def dead_letters(self, **filters: Any) -> list[DeadLetter]:
        """Mirrored dead letters, newest first (filters of ``operators.list_dead_letters``)."""
        with self._read("listing dead letters") as conn:
            return operators.list_dead_letters(conn, **filters)

    def dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        with self._read("reading a dead letter") as conn:
            return operators.get_dead_letter(conn, dead_letter_id)

    def audit(self, **filters: Any) -> list[AuditEntry]:
        """The audit trail, newest first (filters of ``operators.list_audit``)."""
        with self._read("reading the audit trail") as conn:
            return operators.list_audit(conn, **filters)


def _cutoff(older_than: datetime | timedelta) -> datetime:
    if isinstance(older_than, timedelta):
        return datetime.now(UTC) - older_than
    return older_than
