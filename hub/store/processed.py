"""Processed message ids per consumer: the idempotent receiver's memory. Implements the
``ProcessedIds`` port (``lookup`` / ``record``) the broker consumer uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select

from hub.store.bulk import BulkInsert
from hub.store.engine import translate_errors
from hub.store.tables import processed_ids

# One statement per batch of deliveries, not one per id (see hub.store.bulk).
_record_many = BulkInsert(processed_ids, ("consumer", "message_id", "digest", "recorded_at"),
                          conflict=("message_id", "consumer"))


def record_in(
    conn: Connection, consumer: str, items: Iterable[tuple[str, str]],
    at: datetime | None = None,
) -> None:
    """Record ``(message_id, digest)`` pairs inside the caller's transaction. A pair already
    recorded is left as it was (first digest wins), which makes redelivery harmless."""
    when = at or datetime.now(UTC)
    rows = [(consumer, mid, digest, when) for mid, digest in items]
    if rows:
        _record_many.execute(conn, rows)


class StoreProcessedIds:
    """``ProcessedIds`` on the store's database. Each call is its own short transaction."""

    def __init__(self, engine: Engine,
                 write: Callable[[str], AbstractContextManager[Connection]]) -> None:
        self._engine = engine
        # The store's own write transaction (``Store._write``: its write lock on SQLite,
        # BEGIN IMMEDIATE, errors translated), as every write of the store takes it.
        self._write = write

    def lookup(self, consumer: str, message_id: str) -> str | None:
        """The body digest recorded for ``message_id`` by ``consumer``, or None."""
        with translate_errors("looking up a processed id"), self._engine.connect() as conn:
            digest = conn.execute(
                select(processed_ids.c.digest).where(
                    processed_ids.c.consumer == consumer,
                    processed_ids.c.message_id == message_id,
                )
            ).scalar_one_or_none()
        return None if digest is None else str(digest)

    def lookup_many(self, consumer: str, message_ids: list[str]) -> dict[str, str]:
        """The digests recorded for those of ``message_ids`` that ``consumer`` processed: one
        query for a batch of deliveries (a consumer asks for many at once)."""
        found: dict[str, str] = {}
        with translate_errors("looking up processed ids"), self._engine.connect() as conn:
            for start in range(0, len(message_ids), 500):
                rows = conn.execute(
                    select(processed_ids.c.message_id, processed_ids.c.digest).where(
                        processed_ids.c.consumer == consumer,
                        processed_ids.c.message_id.in_(message_ids[start:start + 500]),
                    )
                )
                found.update((str(mid), str(digest)) for mid, digest in rows)
        return found

    def record(self, consumer: str, items: Iterable[tuple[str, str]]) -> None:
        items = list(items)
        if not items:
            return
        with self._write("recording processed ids") as conn:
            record_in(conn, consumer, items)

    def prune(self, older_than: datetime | timedelta) -> int:
        """Forget ids recorded before ``older_than`` (a time, or an age). Keep them longer than
        a message can come back: the signature age window plus the retry tiers."""
        cutoff = datetime.now(UTC) - older_than if isinstance(older_than, timedelta) else older_than
        with self._write("pruning processed ids") as conn:
            result = conn.execute(delete(processed_ids).where(processed_ids.c.recorded_at < cutoff))
        return int(result.rowcount)
