"""The postal adapter's own tables, on the hub store's engine (SQLite or PostgreSQL):

- ``postal_waybills``: the pool of pre-allocated waybill numbers (free, taken, burned), each
  taken by at most one order;
- ``postal_orders``: every order the hub placed, keyed by waybill, with what its events need
  (dossier, agency, correlation) and the last collection state known;
- ``postal_tracking``: every state change reported, with the exact event emitted for it, so a
  webhook sent twice yields byte-identical messages.

Created and written through ``hub.adaptertables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub import adaptertables

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


def ensure_schema(engine: Engine) -> None:
    adaptertables.ensure_schema(engine, metadata)
