"""``hub.broker.queueage.QueueLedger`` on the store's database (table ``queue_ledger``).

Running totals are kept consistent across processes by serialising the writers: SQLite's
``BEGIN IMMEDIATE``, an advisory transaction lock on PostgreSQL (two writers reading the same
last total would otherwise both write on top of it).

A queue keeps at most ``MAX_CHECKPOINTS`` rows: past that, every other one of its older half is
deleted, so recent messages stay dated to the writer's interval and older ones more coarsely
(never later than they were). Nothing is deleted from what a queue's depth says, which the
management API may report late.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, select, text

from hub.broker.queueage import Checkpoint
from hub.store.engine import SQLITE_BEGIN, is_sqlite, translate_errors
from hub.store.tables import queue_ledger as table

# pg_advisory_xact_lock key: any constant; "lt-ledgr" in ASCII.
_PG_LOCK_KEY = 0x6C742D6C65646772
MAX_CHECKPOINTS = 2000


class StoreQueueLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _serialised(self) -> Iterator[Connection]:
        """A transaction no other writer of the ledger runs beside (see the module's text)."""
        with translate_errors("writing the queue ledger"), self._engine.connect() as conn:
            sqlite = is_sqlite(self._engine)
            if sqlite:
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                yield conn

    def add(self, counts: Mapping[str, int], at: datetime) -> None:
        counts = {q: n for q, n in counts.items() if n > 0}
        if not counts:
            return
        with self._serialised() as conn:
            for queue, n in sorted(counts.items()):
                last = conn.execute(select(func.max(table.c.total))
                                    .where(table.c.queue == queue)).scalar_one_or_none()
                conn.execute(table.insert().values(queue=queue, total=int(last or 0) + n, at=at))
                _thin(conn, queue)

    def advance(self, queue: str, total: int, at: datetime) -> None:
        """Say that ``total`` messages had been published into ``queue`` by ``at``, a count
        kept elsewhere (the broker's, ``hub.broker.queueage.PublishSampler``): a checkpoint
        when it is past the ledger's total, none when it is not, and the queue's ledger started
        again when the count went back (the broker forgot it: a restart, a queue deleted).
        Several processes may say the same count: it is written once."""
        with self._serialised() as conn:
            last = conn.execute(select(func.max(table.c.total))
                                .where(table.c.queue == queue)).scalar_one_or_none()
            if last is not None and total == int(last):
                return
            if last is not None and total < int(last):
                conn.execute(delete(table).where(table.c.queue == queue))
            conn.execute(table.insert().values(queue=queue, total=total, at=at))
            _thin(conn, queue)

    def checkpoints(self, queue: str, depth: int) -> tuple[int, list[Checkpoint]]:
        with translate_errors("reading the queue ledger"), self._engine.connect() as conn:
            total = int(conn.execute(select(func.max(table.c.total))
                                     .where(table.c.queue == queue)).scalar_one_or_none() or 0)
            index = max(1, total - max(depth, 0) + 1)
            # The first checkpoint that reaches the oldest message dates it (the first of all
            # when the queue holds more than the ledger counted).
            row = conn.execute(select(table.c.total, table.c.at)
                               .where(table.c.queue == queue, table.c.total >= index)
                               .order_by(table.c.total).limit(1)).first()
            return total, [] if row is None else [Checkpoint(int(row.total), row.at)]

    def forget(self, queue: str) -> None:
        with translate_errors("clearing the queue ledger"), self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.queue == queue))


def _thin(conn: Connection, queue: str) -> None:
    count = conn.execute(select(func.count()).select_from(table)
                         .where(table.c.queue == queue)).scalar_one()
    if count <= MAX_CHECKPOINTS:
        return
    totals = conn.execute(select(table.c.total).where(table.c.queue == queue)
                          .order_by(table.c.total).limit(count // 2)).scalars().all()
    # Keeping the first (the oldest date known) and every other one after it.
    drop = totals[1::2]
    conn.execute(delete(table).where(table.c.queue == queue, table.c.total.in_(drop)))
