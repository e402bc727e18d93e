"""The postal adapter's state on SQLAlchemy (``orders.Orders`` and the waybill pool, a
``hub.numberpool``). Tables: ``postal_waybills`` (the pool), ``postal_orders`` (every order
placed, keyed by waybill, with its last collection state), ``postal_tracking`` (every change
reported, with the exact event emitted for it, re-emitted byte for byte)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.postal.orders import ORDER, WEBHOOK, Order
from adapters.postal.pool import check_waybill, empty
from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.numberpool import SqlNumberPool, pool_table
from hub.statefeed import FeedStore
from hub.statestore import event_columns, request_columns

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


class SqlOrders(FeedStore[Order]):
    records = orders
    record_type = Order
    key = "order_key"
    events = tracking
    pushed = WEBHOOK

    def by_key(self, order_key: str) -> Order | None:
        return self.by("order_key", order_key)

    def by_waybill(self, waybill: str) -> Order | None:
        return self.by("waybill", waybill)

    def drop(self, waybill: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(sa.delete(orders).where(orders.c.waybill == waybill))

    def register(self, waybill: str, event: Envelope, state: int, at: datetime,
                 now: datetime) -> str:
        return self.keep_first(
            orders, orders.c.waybill == waybill, "registered_event", event, now,
            lambda conn, _: self.keep_event(conn, event, ORDER, now, emitted=True,
                                            waybill=waybill, state=state, at=utc(at)),
            last_state=state)

    def numbered(self, customer_code: str, numbers: Sequence[str]) -> list[Order]:
        return self.chosen(orders.c.customer_code == customer_code,
                           orders.c.order_number.in_(list(numbers)),
                           orders.c.registered_event.is_not(None))

    def open(self, customer_code: str, limit: int) -> list[Order]:
        return self.chosen(orders.c.customer_code == customer_code, orders.c.closed.is_(False),
                           orders.c.registered_event.is_not(None), oldest=limit)

    def unemitted(self, customer_code: str, waybills: Sequence[str] | None,
                  limit: int) -> list[str]:
        return self.unemitted_of(orders.c.customer_code == customer_code, limit,
                                 tracking.c.waybill, tracking.c.at, named=waybills)


def SqlWaybills(engine: Engine) -> SqlNumberPool:
    return SqlNumberPool(engine, waybills, owner="customer_code", key="order_key",
                         check=check_waybill, empty=empty, what="waybill", field="ItemCode")
