"""Each authenticated call of a system (a payment gateway's callback) and what became of it:
accepted with the event it produced, answered again, or parked (``hub.parked``), never its
body, only its digest. The table is the adapter's own (``call_log_table``), written in the
transaction that applies the call, so the log and the state never disagree."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.adaptertables import utc
from hub.parked import Parked


def call_log_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("reference", sa.String(50)),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("reason_code", sa.String(64)),
        sa.Column("reason", sa.Text),
        sa.Column("event_id", sa.String(36)),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        # No longer written (always NULL): a caller's body is never kept for a refusal, and a
        # parked report keeps its facts in the parked table. Left for databases made before.
        sa.Column("body", sa.Text),
        sa.Column("peer", sa.String(200)),
        sa.Index(f"ix_{name}_reference", "reference"),
    )


def note_call(conn: Connection, table: sa.Table, now: datetime, *, reference: str,
              transaction_id: str, digest: str, peer: str | None, event_id: str | None = None,
              parked: Parked | None = None, reason: str | None = None) -> None:
    """A call, whatever became of it; ``reason``: why an accepted call published nothing."""
    conn.execute(sa.insert(table).values(
        received_at=utc(now), reference=reference[:50] or None,
        transaction_id=transaction_id[:64] or None, accepted=parked is None,
        reason_code=parked.code if parked else None,
        reason=parked.reason if parked else reason, event_id=event_id,
        body_sha256=digest, body=None, peer=(peer or "")[:200] or None))
