"""The postal adapter's state on SQLAlchemy (``orders.Orders`` and the waybill pool, a
``hub.numberpool``). Tables: ``postal_waybills`` (the pool), ``postal_orders`` (every order
placed, keyed by waybill, with its last collection state), ``postal_tracking`` (every change
reported, with the exact event emitted for it, re-emitted byte for byte)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapters.postal.orders import ORDER, Build, Order, tracked
from adapters.postal.pool import check_waybill, empty
from adapters.postal.translate import TrackItem
from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.numberpool import SqlNumberPool, pool_table
from hub.stateful import event_json, record
from hub.statestore import StateStore, event_columns, request_columns

metadata = sa.MetaData()

waybills = pool_table(metadata, "postal_waybills", number="waybill", owner="customer_code",
                      key="order_key")

orders = sa.Table(
    "postal_orders",
    metadata,
    sa.Column("waybill", sa.String(20), primary_key=True),
    sa.Column("order_key", sa.String(120), nullable=False, unique=True),
    sa.Column("order_number", sa.String(64), nullable=False, index=True),
    sa.Column("customer_code", sa.String(50), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    *request_columns(),
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
    *event_columns(source_length=8),  # source: order | poll | webhook
    sa.Index("ix_postal_tracking_unemitted", "emitted_at", "waybill"),
)


def _record_tracking(conn: Connection, waybill: str, item_state: int, at: datetime,
                     env: Envelope, source: str, now: datetime, emitted: bool) -> str:
    body = event_json(env)
    conn.execute(sa.insert(tracking).values(
        waybill=waybill, state=item_state, at=utc(at), event_id=env.id, event=body,
        source=source, recorded_at=utc(now), emitted_at=utc(now) if emitted else None))
    return body


class SqlOrders(StateStore):
    events = tracking

    def _orders(self, where: sa.ColumnElement[bool], *, order_by: Any = None,
                limit: int | None = None) -> list[Order]:
        return self.rows(Order, sa.select(orders).where(where).order_by(order_by).limit(limit))

    def by_key(self, order_key: str) -> Order | None:
        return self.first(Order, sa.select(orders).where(orders.c.order_key == order_key))

    def by_waybill(self, waybill: str) -> Order | None:
        return self.first(Order, sa.select(orders).where(orders.c.waybill == waybill))

    def add(self, order: Order) -> Order:
        return self.add_once(orders, order, lambda: self.by_key(order.order_key))

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
                self.update(orders, orders.c.waybill == waybill, now, conn,
                            registered_event=current, last_state=state)
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
            self.update(orders, orders.c.waybill == waybill, now, conn, last_state=found.state,
                        closed=found.state in terminal,
                        last_system_at=utc(found.newest) if found.newest else None)
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
        where = sa.and_(tracking.c.waybill.in_(mine), *(
            () if waybills is None else (tracking.c.waybill.in_(list(waybills)),)))
        return self.unemitted_events(where, limit, tracking.c.waybill, tracking.c.at)


def SqlWaybills(engine: Engine) -> SqlNumberPool:
    return SqlNumberPool(engine, waybills, owner="customer_code", key="order_key",
                         check=check_waybill, empty=empty, what="waybill", field="ItemCode")
