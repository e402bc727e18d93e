"""The postal adapter's state on SQLAlchemy (``adapters.postal.orders.Orders`` and
``adapters.postal.pool.Waybills``), in its own tables on the hub store's engine (SQLite or
PostgreSQL), written through ``hub.adaptertables``:

- ``postal_waybills``: the pool of pre-allocated waybill numbers (free, taken, burned), each
  taken by at most one order;
- ``postal_orders``: every order the hub placed, keyed by waybill, with what its events need
  (dossier, agency, correlation) and the last collection state known;
- ``postal_tracking``: every state change reported, with the exact event emitted for it, so a
  webhook sent twice yields byte-identical messages.

Taking a number is one UPDATE of the first free one (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so concurrent workers take different rows instead of queueing on one; SQLite serialises
writers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.postal.orders import ORDER, Build, Order, tracked
from adapters.postal.pool import BURNED, FREE, TAKEN, PoolCounts, check_waybill, empty
from adapters.postal.translate import TrackItem
from hub import adaptertables
from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.stateful import event_json, insert_once, record

metadata = sa.MetaData()

waybills = sa.Table(
    "postal_waybills",
    metadata,
    sa.Column("waybill", sa.String(20), primary_key=True),
    sa.Column("customer_code", sa.String(50), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # free | taken | burned
    sa.Column("order_key", sa.String(120), unique=True),
    sa.Column("added_at", sa.DateTime, nullable=False),
    sa.Column("taken_at", sa.DateTime),
    sa.Column("note", sa.Text),
    sa.Index("ix_postal_waybills_free", "customer_code", "state", "waybill"),
)

orders = sa.Table(
    "postal_orders",
    metadata,
    sa.Column("waybill", sa.String(20), primary_key=True),
    sa.Column("order_key", sa.String(120), nullable=False, unique=True),
    sa.Column("order_number", sa.String(64), nullable=False, index=True),
    sa.Column("customer_code", sa.String(50), nullable=False),
    sa.Column("dossier_code", sa.String(64), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("agency", sa.String(64)),
    sa.Column("procedure", sa.String(100)),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("correlation_id", sa.String(64)),
    sa.Column("registered_event", sa.Text),
    sa.Column("last_state", sa.Integer),
    sa.Column("last_system_at", sa.DateTime),  # newest time the postal service reported
    sa.Column("closed", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_postal_orders_open", "closed", "created_at"),
)

tracking = sa.Table(
    "postal_tracking",
    metadata,
    sa.Column("waybill", sa.String(20), primary_key=True),
    sa.Column("state", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),  # order | poll | webhook
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("emitted_at", sa.DateTime),
    sa.Index("ix_postal_tracking_unemitted", "emitted_at", "waybill"),
)


def _record_tracking(conn: Connection, waybill: str, item_state: int, at: datetime,
                     env: Envelope, source: str, now: datetime, emitted: bool) -> str:
    body = event_json(env)
    conn.execute(sa.insert(tracking).values(
        waybill=waybill, state=item_state, at=utc(at), event_id=env.id, event=body,
        source=source, recorded_at=utc(now), emitted_at=utc(now) if emitted else None))
    return body


class SqlOrders:
    """``Orders`` on ``engine`` (its tables created by ``hub.stateful.state_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _orders(self, where: sa.ColumnElement[bool], *, order_by: Any = None,
                limit: int | None = None) -> list[Order]:
        query = sa.select(orders).where(where).order_by(order_by).limit(limit)
        with self.engine.connect() as conn:
            return [record(Order, r) for r in conn.execute(query).mappings()]

    def by_key(self, order_key: str) -> Order | None:
        return next(iter(self._orders(orders.c.order_key == order_key)), None)

    def by_waybill(self, waybill: str) -> Order | None:
        return next(iter(self._orders(orders.c.waybill == waybill)), None)

    def add(self, order: Order) -> Order:
        insert_once(self.engine, orders, {**asdict(order), "updated_at": utc(order.created_at),
                                          "created_at": utc(order.created_at)})
        found = self.by_key(order.order_key)
        assert found is not None  # written just now, or there before
        return found

    def drop(self, waybill: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(sa.delete(orders).where(orders.c.waybill == waybill))

    def register(self, waybill: str, event: Envelope, state: int, at: datetime,
                 now: datetime) -> str:
        with writing(self.engine) as conn:
            current = conn.execute(sa.select(orders.c.registered_event)
                                   .where(orders.c.waybill == waybill).with_for_update()).scalar()
            if current is None:
                current = _record_tracking(conn, waybill, state, at, event, ORDER, now, True)
                conn.execute(sa.update(orders).where(orders.c.waybill == waybill).values(
                    registered_event=current, last_state=state, updated_at=utc(now)))
        return str(current)

    def track(self, waybill: str, items: Iterable[TrackItem], build: Build, *, source: str,
              now: datetime, emitted: bool, terminal: frozenset[int]) -> list[str]:
        with writing(self.engine) as conn:
            row = conn.execute(sa.select(orders).where(orders.c.waybill == waybill)
                               .with_for_update()).mappings().first()
            if row is None:
                return []
            known = conn.execute(sa.select(tracking.c.state, tracking.c.at, tracking.c.event)
                                 .where(tracking.c.waybill == waybill)).all()
            found = tracked(record(Order, row), {(s, at.replace(tzinfo=UTC)): e
                                                 for s, at, e in known}, items, build, source)
            for item, env in found.new:
                _record_tracking(conn, waybill, item.state, item.at, env, source, now, emitted)
            conn.execute(sa.update(orders).where(orders.c.waybill == waybill).values(
                last_state=found.state, closed=found.state in terminal, updated_at=utc(now),
                last_system_at=utc(found.newest) if found.newest else None))
        return found.events

    def numbered(self, customer_code: str, numbers: Sequence[str]) -> list[Order]:
        return self._orders(sa.and_(orders.c.customer_code == customer_code,
                                    orders.c.order_number.in_(list(numbers)),
                                    orders.c.registered_event.is_not(None)))

    def open(self, customer_code: str, limit: int) -> list[Order]:
        return self._orders(sa.and_(orders.c.customer_code == customer_code,
                                    orders.c.closed.is_(False),
                                    orders.c.registered_event.is_not(None)),
                            order_by=orders.c.created_at, limit=limit)

    def unemitted(self, customer_code: str, waybills: Sequence[str] | None,
                  limit: int) -> list[str]:
        if waybills is not None and not waybills:
            return []
        mine = sa.select(orders.c.waybill).where(orders.c.customer_code == customer_code)
        query = sa.select(tracking.c.event).where(tracking.c.emitted_at.is_(None),
                                                  tracking.c.waybill.in_(mine))
        if waybills is not None:
            query = query.where(tracking.c.waybill.in_(list(waybills)))
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(
                query.order_by(tracking.c.waybill, tracking.c.at).limit(limit)).scalars()]

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        return adaptertables.mark_emitted(self.engine, tracking, event_ids, now)

    def history(self, waybill: str) -> list[dict[str, Any]]:
        query = sa.select(tracking).where(tracking.c.waybill == waybill).order_by(tracking.c.at)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


class SqlWaybills:
    """``Waybills`` on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, customer_code: str, numbers: Iterable[str], now: datetime) -> int:
        rows = [{"waybill": check_waybill(n), "customer_code": customer_code, "state": FREE,
                 "added_at": utc(now)} for n in numbers]
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = (dialect.insert(waybills).on_conflict_do_nothing(index_elements=["waybill"])
                     .returning(waybills.c.waybill))
        added = 0
        for i in range(0, len(rows), 1000):
            with writing(self.engine) as conn:
                added += len(conn.execute(statement, rows[i: i + 1000]).all())
        return added

    def _assigned(self, order_key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(waybills.c.waybill).where(
                waybills.c.order_key == order_key, waybills.c.state == TAKEN)).scalar()
        return None if value is None else str(value)

    def take(self, customer_code: str, order_key: str, now: datetime) -> str:
        known = self._assigned(order_key)
        if known is not None:
            return known
        free = (sa.select(waybills.c.waybill)
                .where(waybills.c.customer_code == customer_code, waybills.c.state == FREE)
                .order_by(waybills.c.waybill).limit(1).with_for_update(skip_locked=True)
                .scalar_subquery())
        claim = (sa.update(waybills)
                 # The state test is repeated outside: under READ COMMITTED a row another worker
                 # took between the subquery and the update is re-checked here and left alone.
                 .where(waybills.c.waybill == free, waybills.c.state == FREE)
                 .values(state=TAKEN, order_key=order_key, taken_at=utc(now))
                 .returning(waybills.c.waybill))
        for _ in range(20):
            try:
                with writing(self.engine) as conn:
                    got = conn.execute(claim).scalar()
            except IntegrityError:
                # Another worker took a number for this very order key first: use that one.
                got = self._assigned(order_key)
            if got is not None:
                return str(got)
            if self.counts(customer_code).free == 0:
                raise empty(customer_code)
        raise RetryableError(
            f"could not take a waybill of {customer_code!r} after 20 tries (heavy contention)",
            code="server.waybill_contention", field="ItemCode")

    def burn(self, waybill: str, reason: str, now: datetime) -> None:
        with writing(self.engine) as conn:
            conn.execute(sa.update(waybills).where(waybills.c.waybill == waybill).values(
                state=BURNED, order_key=None, note=reason[:1000], taken_at=utc(now)))

    def counts(self, customer_code: str) -> PoolCounts:
        query = (sa.select(waybills.c.state, sa.func.count())
                 .where(waybills.c.customer_code == customer_code).group_by(waybills.c.state))
        with self.engine.connect() as conn:
            found = {str(state): int(n) for state, n in conn.execute(query).all()}
        return PoolCounts(found.get(FREE, 0), found.get(TAKEN, 0), found.get(BURNED, 0))

    def taken_by(self, numbers: Sequence[str]) -> dict[str, str | None]:
        query = sa.select(waybills.c.waybill, waybills.c.order_key).where(
            waybills.c.waybill.in_(list(numbers)))
        with self.engine.connect() as conn:
            return {str(w): k for w, k in conn.execute(query).all()}
