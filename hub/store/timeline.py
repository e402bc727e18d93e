"""The dossier timeline (every event of a dossier, from every system, in time order) and the
per-dossier sequence a consumer last applied (status events are applied in order).

Besides the events, the timeline says what a destination did NOT deliver: an entry of type
``SKIPPED`` (``skipped_event``) naming the destination, the event skipped and why, so an
operator reading a dossier sees that the portal never got a status, and the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, Executable, select

from hub.store.bulk import BulkInsert, Prepared
from hub.store.conflict import dialect_insert_for, insert_ignore
from hub.store.tables import dossier_sequences, timeline

# Event type of the timeline entry of an event a destination skipped. Not a CloudEvents type
# (those are vn.gov.*): nothing of this type travels on the broker.
SKIPPED = "hub.delivery.skipped"
# Namespace of the ids of those entries: one per destination and skipped message, however
# often the message is redelivered and skipped again.
_SKIPPED_IDS = uuid.UUID("0b6c3f5e-2d41-5a8e-9c17-4e2f8a6d3b90")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    id: int
    dossier_code: str
    event_type: str
    message_id: str
    at: datetime
    source: str
    summary: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """An event to add to a dossier's timeline (``add_many``)."""

    dossier_code: str
    event_type: str
    message_id: str
    at: datetime
    source: str
    summary: Mapping[str, Any]


def skipped_event(dossier_code: str, destination: str, message_id: str, event_type: str,
                  reason: str, note: str, **detail: Any) -> TimelineEvent:
    """The timeline entry saying that ``destination`` did not deliver the event
    ``message_id`` (of type ``event_type``), with a stable ``reason`` code, a sentence
    (``note``) and what the decision was made on (``detail``: numbers, no personal data)."""
    return TimelineEvent(
        dossier_code, SKIPPED, str(uuid.uuid5(_SKIPPED_IDS, f"{destination}\n{message_id}")),
        datetime.now(UTC), f"worker:{destination}",
        {"destination": destination, "reason": reason, "skipped_message_id": message_id,
         "skipped_type": event_type, "note": note, **detail})


def add(
    conn: Connection,
    dossier_code: str,
    event_type: str,
    message_id: str,
    at: datetime,
    source: str,
    summary: Mapping[str, Any],
) -> bool:
    """Add an event; False when this dossier already has this message (a redelivery)."""
    # RETURNING rather than rowcount: drivers do not all report rowcount for upserts.
    result = conn.execute(
        insert_ignore(conn, timeline, ["dossier_code", "message_id"]).returning(timeline.c.id),
        {
            "dossier_code": dossier_code, "event_type": event_type, "message_id": message_id,
            "at": at, "source": source, "summary": dict(summary),
            "recorded_at": datetime.now(UTC),
        },
    )
    return result.scalar_one_or_none() is not None


_insert_many = BulkInsert(
    timeline,
    ("dossier_code", "event_type", "message_id", "at", "source", "summary", "recorded_at"),
    conflict=("dossier_code", "message_id"),
)


def prepare_many(dialect: Dialect, events: Sequence[TimelineEvent]) -> Prepared:
    """Rows of ``events`` converted for ``dialect``, for ``add_many`` later."""
    now = datetime.now(UTC)
    return _insert_many.prepare(dialect, [
        (e.dossier_code, e.event_type, e.message_id, e.at, e.source, dict(e.summary), now)
        for e in events
    ])


def join(dialect: Dialect, parts: Sequence[Prepared]) -> Prepared:
    return _insert_many.join(dialect, parts)


def add_many(conn: Connection, events: Sequence[TimelineEvent] | Prepared) -> int:
    """Add several events with one statement; returns how many were added (an event whose
    dossier already has its message, a redelivery, is skipped and not counted)."""
    if not isinstance(events, Prepared):
        events = prepare_many(conn.dialect, events)
    return _insert_many.execute(conn, events)


def entries(conn: Connection, dossier_code: str) -> list[TimelineEntry]:
    rows = conn.execute(
        select(timeline)
        .where(timeline.c.dossier_code == dossier_code)
        .order_by(timeline.c.at, timeline.c.id)
    ).mappings()
    found = [
        TimelineEntry(
            id=int(r["id"]), dossier_code=r["dossier_code"], event_type=r["event_type"],
            message_id=r["message_id"], at=r["at"], source=r["source"],
            summary=dict(r["summary"]), recorded_at=r["recorded_at"],
        )
        for r in rows
    ]
    # By the second, then in the order the hub recorded them: the systems' wire formats give
    # times to the second (yyyyMMddHHmmss), the hub's own to the microsecond, so within one
    # second a gateway's "paid" at 09:00:05 would sort before the hub's "payment requested"
    # at 09:00:05.4 that caused it. The order of recording follows cause and effect.
    found.sort(key=lambda e: (e.at.replace(microsecond=0), e.id))
    return found


def last_sequence(
    conn: Connection, consumer: str, dossier_code: str, *, for_update: bool = False
) -> int | None:
    query = select(dossier_sequences.c.sequence).where(
        dossier_sequences.c.consumer == consumer,
        dossier_sequences.c.dossier_code == dossier_code,
    )
    if for_update:
        query = query.with_for_update()
    value = conn.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def last_sequences(conn: Connection, consumer: str, dossier_codes: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(dossier_codes), 500):
        rows = conn.execute(
            select(dossier_sequences.c.dossier_code, dossier_sequences.c.sequence).where(
                dossier_sequences.c.consumer == consumer,
                dossier_sequences.c.dossier_code.in_(dossier_codes[start:start + 500]),
            )
        )
        found.update((str(code), int(sequence)) for code, sequence in rows)
    return found


@cache
def _sequence_upsert(dialect: str) -> Executable:
    """The upsert of ``set_sequence``, built once per dialect: building it (the ``excluded``
    alias and its columns) cost more than running it, once per delivery of an ordered
    destination (see docs/performance.md#statements-built-once)."""
    stmt = dialect_insert_for(dialect, dossier_sequences)
    return stmt.on_conflict_do_update(
        index_elements=["consumer", "dossier_code"],
        set_={"sequence": stmt.excluded.sequence, "updated_at": stmt.excluded.updated_at},
        where=dossier_sequences.c.sequence < stmt.excluded.sequence,
    ).returning(dossier_sequences.c.sequence)


# Never backwards, as set_sequence; one statement for a unit of work's sequences.
_set_many = BulkInsert(
    dossier_sequences, ("consumer", "dossier_code", "sequence", "updated_at"),
    conflict=("dossier_code", "consumer"), update=("sequence", "updated_at"),
    update_where="dossier_sequences.sequence < excluded.sequence",
)


def set_sequences(conn: Connection, applied: Mapping[tuple[str, str], int]) -> None:
    """``set_sequence`` for many (consumer, dossier) at once, in one statement."""
    if applied:
        now = datetime.now(UTC)
        _set_many.execute(conn, [(consumer, code, sequence, now)
                                 for (consumer, code), sequence in applied.items()])


def set_sequence(conn: Connection, consumer: str, dossier_code: str, sequence: int) -> bool:
    """Record ``sequence`` as applied; never moves backwards. True when it was stored (higher
    than what was there, or the first)."""
    result = conn.execute(_sequence_upsert(conn.dialect.name), {
        "consumer": consumer, "dossier_code": dossier_code, "sequence": sequence,
        "updated_at": datetime.now(UTC),
    })
    return result.scalar_one_or_none() is not None
