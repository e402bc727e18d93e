"""Reports of a system that an adapter checked but could not apply (they contradict its state:
another amount, a payment already paid), parked for an operator instead of published or
dropped. Each is kept with the reason, the system's message as received and what the adapter
expected; the same report sent again (systems resend what they were not thanked for) is the
same row, counted. The table is the adapter's own (``parked_table``), on its state's engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.adaptertables import utc
from hub.stateful import record


@dataclass(frozen=True)
class Parked:
    """Why a report is not applied: the code it is answered and kept with, a sentence, and the
    system's field at fault."""

    code: str
    reason: str
    field: str | None


@dataclass(frozen=True)
class ParkedReport:
    """A report parked for an operator. ``reference``: the record it names; ``state_before``
    and ``state_after``: the record's (None: no record has the reference)."""

    id: int
    reference: str | None
    transaction_id: str | None
    source: str
    reason_code: str
    reason: str
    field: str | None
    state_before: str | None
    state_after: str | None
    dossier_code: str | None
    agency: str | None
    expected: dict[str, Any]
    reported: dict[str, Any]
    peer: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    times: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["first_seen_at"] = self.first_seen_at.isoformat()
        out["last_seen_at"] = self.last_seen_at.isoformat()
        return out


def parked_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(50)),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),  # callback | query | ...
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("field", sa.String(32)),
        sa.Column("state_before", sa.String(16)),
        sa.Column("state_after", sa.String(16)),
        sa.Column("dossier_code", sa.String(64)),
        sa.Column("agency", sa.String(64)),
        sa.Column("expected", sa.Text, nullable=False),  # JSON: the adapter's facts
        sa.Column("reported", sa.Text, nullable=False),  # JSON: the system's message as received
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("peer", sa.String(200)),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("times", sa.Integer, nullable=False),
        sa.UniqueConstraint("source", "body_sha256", name=f"uq_{name}_report"),
        sa.Index(f"ix_{name}_reference", "reference"),
        sa.Index(f"ix_{name}_last_seen", "last_seen_at"),
    )


def park(conn: Connection, table: sa.Table, now: datetime, *, source: str, digest: str,
         expected: Mapping[str, Any], reported: Mapping[str, Any], **values: Any) -> None:
    """Keep a report (``values``: the other columns), or count it again on its row."""
    seen = conn.execute(
        sa.update(table).where(table.c.source == source, table.c.body_sha256 == digest)
        .values(last_seen_at=utc(now), times=table.c.times + 1))
    if seen.rowcount:
        return
    conn.execute(sa.insert(table).values(
        source=source, body_sha256=digest, first_seen_at=utc(now), last_seen_at=utc(now),
        times=1, expected=json.dumps(dict(expected), ensure_ascii=False, default=str),
        reported=json.dumps(dict(reported), ensure_ascii=False, default=str), **values))


def parked_reports(engine: Engine, table: sa.Table, *, reference: str | None = None,
                   limit: int = 100) -> list[ParkedReport]:
    """Parked reports (of the record ``reference``, or all), the most recently seen first."""
    query = sa.select(table)
    if reference is not None:
        query = query.where(table.c.reference == reference)
    query = query.order_by(table.c.last_seen_at.desc(), table.c.id.desc())
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).mappings().all()
    return [record(ParkedReport, {**r, "expected": json.loads(r["expected"]),
                                  "reported": json.loads(r["reported"])}) for r in rows]
