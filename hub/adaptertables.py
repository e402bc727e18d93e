"""Tables an adapter keeps for itself (what it sent a system, what the system reported, the
exact events emitted for it), on the hub store's engine (SQLite or PostgreSQL).

They are created idempotently with SQLAlchemy Core: the store's Alembic migrations do not own
them. Times are stored as naive UTC so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hub.envelope import Envelope
from hub.store.engine import SQLITE_BEGIN, make_engine


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


def ensure_schema(engine: Engine, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s tables unless they exist."""
    # Keyed by database URL and tables: a database needs them created once per process.
    key = f"{engine.url.render_as_string(hide_password=False)}|{sorted(metadata.tables)}"
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


def mark_emitted(engine: Engine, table: sa.Table, event_ids: Iterable[str], now: datetime) -> int:
    """Set ``emitted_at`` on the rows of ``table`` (with ``event_id`` and ``emitted_at``
    columns) whose events were published; returns how many were still unmarked."""
    ids = list(event_ids)
    if not ids:
        return 0
    with writing(engine) as conn:
        result = conn.execute(
            sa.update(table)
            .where(table.c.event_id.in_(ids), table.c.emitted_at.is_(None))
            .values(emitted_at=utc(now))
        )
    return int(result.rowcount)


async def publish_then_mark(
    events: Sequence[Envelope],
    publish: Callable[[Envelope], Awaitable[None]],
    mark: Callable[[list[str]], object],
) -> None:
    """Publish each event (``publish`` returns once the broker confirmed it), then mark as
    emitted those that were: a failure part-way leaves the rest to be emitted next run, and
    nothing is marked that the broker does not have."""
    done: list[str] = []
    try:
        for env in events:
            await publish(env)
            done.append(env.id)
    finally:
        await asyncio.to_thread(mark, done)
