"""The postal adapter's own tables, on the hub store's engine (SQLite or PostgreSQL):

- ``postal_waybills``: the pool of pre-allocated waybill numbers (free, taken, burned), each
  taken by at most one order;
- ``postal_orders``: every order the hub placed, keyed by waybill, with what its events need
  (dossier, agency, correlation) and the last collection state known;
- ``postal_tracking``: every state change reported, with the exact event emitted for it, so a
  webhook sent twice yields byte-identical messages.

Created idempotently with SQLAlchemy Core (the store's Alembic migrations do not own them).
Times are stored as naive UTC so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hub.store.engine import SQLITE_BEGIN, make_engine

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


def utc(at: datetime) -> datetime:
    """Naive UTC, the form stored."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


_engines: dict[str, Engine] = {}
_ready: set[str] = set()
_lock = threading.Lock()


def engine_for(store: Any, state_url: str, data_dir: Path, filename: str) -> Engine:
    """The store's engine when it offers one, else an engine of the adapter's own (``state_url``
    or a SQLite file in the data directory)."""
    engine = getattr(store, "engine", None)
    if isinstance(engine, Engine):
        return engine
    url = state_url or f"sqlite:///{(Path(data_dir) / filename).resolve()}"
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def ensure_schema(engine: Engine) -> None:
    # Keyed by database URL: the same database needs its tables created once per process.
    key = engine.url.render_as_string(hide_password=False)
    if key in _ready:
        return
    try:
        metadata.create_all(engine, checkfirst=True)
    except (IntegrityError, ProgrammingError, OperationalError):
        # Another worker created the same tables between our check and our CREATE.
        metadata.create_all(engine, checkfirst=True)
    _ready.add(key)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite engines made by the hub's store it begins IMMEDIATE
    (takes the write lock up front, so concurrent writers queue instead of deadlocking)."""
    with engine.connect() as conn:
        conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn
