"""The transactional outbox: what an entry point accepted is written in the same transaction as
its other rows, then a relay publishes it and marks it published.

Claiming is a lease: ``claim`` marks the oldest unpublished, unleased rows as leased until
``now + lease`` and returns them, in one statement (``UPDATE ... WHERE id IN (SELECT ... FOR
UPDATE SKIP LOCKED) RETURNING`` on PostgreSQL, so two relays never take the same rows; SQLite
has one writer at a time). A relay that dies leaves its rows leased; they come back when the
lease runs out. Publishing is therefore at least once; receivers deduplicate by message id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Dialect, RowMapping, delete, insert, or_, select, update

from hub.store.bulk import BulkInsert, Prepared, bind, marks, one_of
from hub.store.engine import walk_index_in_order
from hub.store.tables import outbox


class OutgoingLike(Protocol):
    """What ``outbox_add`` needs: the fields of hub.broker.messages.Outgoing."""

    @property
    def body(self) -> bytes: ...
    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...
    @property
    def app_id(self) -> str | None: ...
    @property
    def subject(self) -> str | None: ...


MESSAGE_FIELDS = ("body", "exchange", "routing_key", "message_id", "type", "headers", "app_id",
                  "subject")


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A stored outgoing message. ``Outgoing(**item.message_fields())`` rebuilds what was
    accepted."""

    id: int
    created_at: datetime
    body: bytes
    exchange: str
    routing_key: str
    message_id: str
    type: str
    headers: dict[str, Any]
    app_id: str | None
    subject: str | None = None

    def message_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MESSAGE_FIELDS}


def add(conn: Connection, message: OutgoingLike, at: datetime | None = None) -> int:
    result = conn.execute(
        insert(outbox).returning(outbox.c.id),
        {
            "created_at": at or datetime.now(UTC),
            "message_id": message.message_id,
            "type": message.type,
            "app_id": message.app_id,
            "exchange": message.exchange,
            "routing_key": message.routing_key,
            "headers": dict(message.headers),
            "body": bytes(message.body),
            "subject": message.subject,
        },
    )
    return int(result.scalar_one())


_ROW_COLUMNS = ("created_at", "message_id", "type", "app_id", "exchange", "routing_key",
                "headers", "body", "subject", "claimed_until")
_insert_many = BulkInsert(outbox, _ROW_COLUMNS)


def prepare_many(dialect: Dialect, messages: Sequence[OutgoingLike],
                 at: datetime | None = None, *,
                 claimed_until: datetime | None = None) -> Prepared:
    """Rows of ``messages`` converted for ``dialect``, for ``add_many`` later. With
    ``claimed_until`` they are written leased already, to the relay of the writing process
    (see ``add_claimed``)."""
    when = at or datetime.now(UTC)
    return _insert_many.prepare(dialect, [
        (when, m.message_id, m.type, m.app_id, m.exchange, m.routing_key, dict(m.headers),
         bytes(m.body), m.subject, claimed_until)
        for m in messages
    ])


def join(dialect: Dialect, parts: Sequence[Prepared]) -> Prepared:
    return _insert_many.join(dialect, parts)


def add_many(conn: Connection, messages: Sequence[OutgoingLike] | Prepared,
             at: datetime | None = None) -> int:
    """Keep several messages with one statement; returns how many (ids are not returned: the
    relay reads them back)."""
    if not isinstance(messages, Prepared):
        messages = prepare_many(conn.dialect, messages, at)
    return _insert_many.execute(conn, messages)


def add_claimed(conn: Connection, messages: Prepared) -> dict[str, int]:
    """``add_many`` for rows prepared with ``claimed_until``, returning their ids by message id:
    the process that wrote them hands them to its own relay, which publishes them without
    claiming (another relay skips them until the lease ends, as it skips any claimed row) and
    marks them published by id."""
    return {str(message_id): int(row_id) for row_id, message_id in
            _insert_many.execute_returning(conn, messages, ("id", "message_id"))}


def _item(r: RowMapping) -> OutboxItem:
    return OutboxItem(
        id=int(r["id"]), created_at=r["created_at"], body=bytes(r["body"]),
        exchange=r["exchange"], routing_key=r["routing_key"], message_id=r["message_id"],
        type=r["type"], headers=dict(r["headers"]), app_id=r["app_id"], subject=r["subject"],
    )


_COLUMNS = [outbox.c[name] for name in ("id", "created_at", *MESSAGE_FIELDS)]


def claim(conn: Connection, limit: int, lease: float | None) -> list[OutboxItem]:
    """Up to ``limit`` unpublished, unleased rows, oldest first, leased for ``lease`` seconds.
    ``lease=None`` only looks: every unpublished row, leased or not, nothing changed."""
    unpublished = outbox.c.published_at.is_(None)
    if lease is None:
        rows = conn.execute(
            select(*_COLUMNS).where(unpublished).order_by(outbox.c.id).limit(limit)
        )
    else:
        walk_index_in_order(conn)
        now = datetime.now(UTC)
        ready = (
            select(outbox.c.id)
            .where(
                unpublished,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ready.scalar_subquery()))
            .values(claimed_until=now + timedelta(seconds=lease))
            .returning(*_COLUMNS)
        )
    # RETURNING gives no order.
    return sorted((_item(r) for r in rows.mappings()), key=lambda item: item.id)


def earlier_unpublished(conn: Connection, before: int,
                        subjects: Iterable[str]) -> list[tuple[int, str]]:
    """(id, subject) of the unpublished rows older than row ``before`` about ``subjects``,
    leased or not: what must be published before the later rows of those subjects."""
    wanted = sorted(set(subjects))
    if not wanted:
        return []
    # Driver SQL: once per relayed batch on PostgreSQL (see hub.store.bulk). No "id < before"
    # in it: that would let the planner walk (published_at, id) from the first unpublished row,
    # through every entry a published row left there until a vacuum; by subject it can only
    # probe the partial index of unpublished subjects.
    among, params = one_of(conn.dialect, "subject", wanted)
    rows = conn.exec_driver_sql(
        f"SELECT id, subject FROM outbox WHERE published_at IS NULL AND {among}", params)
    return [(int(row_id), str(subject)) for row_id, subject in rows if row_id < before]


def mark_published(conn: Connection, ids: Sequence[int], at: datetime | None = None) -> int:
    if not ids:
        return 0
    # Driver SQL: once per relayed batch (see hub.store.bulk).
    dialect = conn.dialect
    wanted, params = one_of(dialect, "id", ids)
    result = conn.exec_driver_sql(
        f"UPDATE outbox SET published_at = {marks(dialect, 1)}, claimed_until = NULL "
        f"WHERE {wanted}",
        (bind(dialect, outbox, "published_at", at or datetime.now(UTC)), *params))
    return int(result.rowcount)


def release(conn: Connection, ids: Iterable[int]) -> int:
    """Give leased rows back at once (their publishing failed)."""
    ids = list(ids)
    if not ids:
        return 0
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.published_at.is_(None))
        .values(claimed_until=None)
    )
    return int(result.rowcount)


def prune(conn: Connection, older_than: datetime) -> int:
    """Delete rows published before ``older_than``."""
    result = conn.execute(
        delete(outbox).where(outbox.c.published_at.is_not(None), outbox.c.published_at < older_than)
    )
    return int(result.rowcount)
