"""The SQL side of a stateful adapter's ports (``hub.stateful``): ``StateStore``, the base of an
adapter's implementation on its tables (the reads and writes every port repeats);
``event_columns``, the columns of a table of the events the adapter emitted, each kept with its
exact bytes (re-emitted verbatim) and marked once the broker confirmed it; ``request_columns``,
those of the request a record answers; ``RecordStore``, the records of the requests a system
answers later, one per key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub import adaptertables
from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.stateful import event_json, insert_once, record

T = TypeVar("T")
R = TypeVar("R")


def event_columns(source: str = "source", at: str = "recorded_at",
                  source_length: int = 16) -> list[sa.Column[Any]]:
    """``event_id``, ``event`` (its JSON), who reported it (``source``), when it was recorded
    (``at``) and ``emitted_at`` (None until the broker confirmed its publication)."""
    return [sa.Column("event_id", sa.String(36), nullable=False, unique=True),
            sa.Column("event", sa.Text, nullable=False),
            sa.Column(source, sa.String(source_length), nullable=False, info={"holds": "source"}),
            sa.Column(at, sa.DateTime, nullable=False, info={"holds": "at"}),
            sa.Column("emitted_at", sa.DateTime)]


def request_columns() -> list[sa.Column[Any]]:
    """What the events a record causes need of the request it answers: its dossier, agency and
    procedure, the request's id (causation) and correlation id."""
    return [sa.Column("dossier_code", sa.String(64), nullable=False),
            sa.Column("agency", sa.String(64)),
            sa.Column("procedure", sa.String(100)),
            sa.Column("request_id", sa.String(64), nullable=False),
            sa.Column("correlation_id", sa.String(64))]


class StateStore:
    """An adapter's state on ``engine`` (its tables created by ``hub.stateful.state_engine``).
    ``events``: its table of emitted events (``event_columns``)."""

    events: sa.Table

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rows(self, cls: Callable[..., T], query: sa.Select[Any],
             conn: Connection | None = None) -> list[T]:
        """The rows ``query`` selects, as ``cls`` (``hub.stateful.record``)."""
        if conn is not None:
            return [record(cls, r) for r in conn.execute(query).mappings()]
        with self.engine.connect() as own:
            return [record(cls, r) for r in own.execute(query).mappings()]

    def first(self, cls: Callable[..., T], query: sa.Select[Any],
              conn: Connection | None = None) -> T | None:
        return next(iter(self.rows(cls, query.limit(1), conn)), None)

    def add_once(self, table: sa.Table, row: Any, found: Callable[[], T | None]) -> T:
        """Insert the dataclass ``row`` unless its key is there already (a redelivered
        request), created and updated at its ``created_at``; the row kept, read by ``found``."""
        created = utc(row.created_at)
        insert_once(self.engine, table, {**asdict(row), "created_at": created,
                                         "updated_at": created})
        kept = found()
        assert kept is not None  # written just now, or there before
        return kept

    def update(self, table: sa.Table, where: sa.ColumnElement[bool], now: datetime | None,
               conn: Connection | None = None, **values: Any) -> None:
        """Set ``values`` on the rows ``where`` selects (and ``updated_at``, given ``now``)."""
        query = sa.update(table).where(where).values(
            **values, **({} if now is None else {"updated_at": utc(now)}))
        if conn is not None:
            conn.execute(query)
            return
        with writing(self.engine) as own:
            own.execute(query)

    def keep_first(self, table: sa.Table, where: sa.ColumnElement[bool], column: str,
                   event: Envelope, now: datetime,
                   first: Callable[[Connection, str], object] | None = None,
                   **values: Any) -> str:
        """The event that answers a request, kept in ``column`` of the row ``where`` selects
        (locked) with ``values`` unless one was kept before: the first writer wins, and a
        redelivered request is answered by the kept event, byte for byte. ``first`` also
        records the one kept now, in the same transaction."""
        with writing(self.engine) as conn:
            kept = conn.execute(sa.select(table.c[column]).where(where).with_for_update()).scalar()
            if kept is None:
                kept = event_json(event)
                self.update(table, where, now, conn, **{column: kept}, **values)
                if first is not None:
                    first(conn, kept)
        return str(kept)

    def keep_event(self, conn: Connection, event: Envelope, source: str, now: datetime, *,
                   emitted: bool, **key: Any) -> str:
        """Record an event in ``events`` under ``key`` (its other columns): emitted already
        when the caller's door publishes it, else waiting for ``mark_emitted``."""
        body = event_json(event)
        named = {c.info["holds"]: c.name for c in self.events.columns if "holds" in c.info}
        conn.execute(sa.insert(self.events).values(
            event_id=event.id, event=body, emitted_at=utc(now) if emitted else None,
            **{named["source"]: source, named["at"]: utc(now)}, **key))
        return body

    def unemitted_events(self, where: sa.ColumnElement[bool], limit: int,
                         *order_by: Any) -> list[str]:
        """The events ``where`` selects whose publication is not confirmed yet."""
        query = (sa.select(self.events.c.event)
                 .where(self.events.c.emitted_at.is_(None), where).order_by(*order_by).limit(limit))
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(query).scalars()]

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        return adaptertables.mark_emitted(self.engine, self.events, event_ids, now)


class Records(Protocol[R]):
    """The port of records kept once per key (``RecordStore``, or an in-memory fake), with the
    events they caused."""

    def add(self, record: R) -> R:
        """The record kept under ``record``'s key, recorded now if none was."""

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        """Record that these events were published; how many were still unmarked."""


class RecordStore(StateStore, Generic[R]):
    """An adapter's records of the requests its system answers (``records``, rows of
    ``record_type`` with ``request_columns``), one per value of ``key``: recorded once however
    often the request is delivered."""

    records: sa.Table
    record_type: type[R]
    key = "reference"

    def by(self, column: str, value: Any, conn: Connection | None = None) -> R | None:
        """The record whose ``column`` is ``value``; locked until ``conn`` commits, given one."""
        query = sa.select(self.records).where(self.records.c[column] == value)
        return self.first(self.record_type, query.with_for_update() if conn else query, conn)

    def add(self, record: R) -> R:
        """The record kept under ``record``'s key, recorded now if none was."""
        return self.add_once(self.records, record,
                             lambda: self.by(self.key, getattr(record, self.key)))

    @property
    def named(self) -> str:
        """The column that names a record: its table's primary key, and its events' column."""
        return str(self.records.primary_key.columns.values()[0].name)

    def chosen(self, *where: sa.ColumnElement[bool], oldest: int | None = None) -> list[R]:
        """The records ``where`` selects; given ``oldest``, that many at most, oldest first."""
        query = sa.select(self.records).where(*where)
        if oldest is not None:
            query = query.order_by(self.records.c.created_at).limit(oldest)
        return self.rows(self.record_type, query)

    def unemitted_of(self, mine: sa.ColumnElement[bool], limit: int, *order_by: Any,
                     named: Sequence[str] | None = None) -> list[str]:
        """The events whose publication is not confirmed yet, of the records ``mine`` selects
        (and, given ``named``, of those it names)."""
        if named is not None and not named:
            return []
        column = self.events.c[self.named]
        where = [column.in_(sa.select(self.records.c[self.named]).where(mine))]
        if named is not None:
            where.append(column.in_(list(named)))
        return self.unemitted_events(sa.and_(*where), limit, *order_by)
