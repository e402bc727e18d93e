"""The store's first schema: message log, its parked rows and its chain head, processed ids,
outbox, dossier timeline and sequences, dead-letter mirror, operators' audit trail.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "message_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(200)),
        sa.Column("source", sa.String(200)),
        sa.Column("subject", sa.String(200)),
        sa.Column("peer", sa.String(200)),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_message_log"),
        sa.CheckConstraint("direction IN ('in', 'out')", name="ck_message_log_direction"),
    )
    op.create_index("ix_message_log_subject_seq", "message_log", ["subject", "seq"])
    op.create_index("ix_message_log_message_id", "message_log", ["message_id"])

    op.create_table(
        "log_pending",
        _id(),
        sa.Column("at", _time(), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(200)),
        sa.Column("source", sa.String(200)),
        sa.Column("subject", sa.String(200)),
        sa.Column("peer", sa.String(200)),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_pending"),
    )

    log_head = op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_head"),
    )
    op.bulk_insert(
        log_head, [{"id": 1, "seq": 0, "row_hash": GENESIS, "updated_at": datetime.now(UTC)}]
    )

    op.create_table(
        "processed_ids",
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_processed_ids"),
    )
    op.create_index("ix_processed_ids_recorded_at", "processed_ids", ["recorded_at"])

    op.create_table(
        "outbox",
        _id(),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("app_id", sa.String(200)),
        sa.Column("exchange", sa.String(255), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("claimed_until", _time()),
        sa.Column("published_at", _time()),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_published_at_id", "outbox", ["published_at", "id"])

    op.create_table(
        "timeline",
        _id(),
        sa.Column("dossier_code", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_timeline"),
        sa.UniqueConstraint(
            "dossier_code", "message_id", name="uq_timeline_dossier_code_message_id"
        ),
    )
    op.create_index("ix_timeline_dossier_code_at", "timeline", ["dossier_code", "at"])

    op.create_table(
        "dossier_sequences",
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("dossier_code", sa.String(100), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "dossier_code", name="pk_dossier_sequences"),
    )

    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("reason_code", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("destination", sa.String(200)),
        sa.Column("type", sa.String(200)),
        sa.Column("agency", sa.String(100)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", _time(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.CheckConstraint(
            "state IN ('parked', 'replayed', 'discarded', 'edited')",
            name="ck_dead_letters_state",
        ),
        sa.UniqueConstraint(
            "message_id", "queue", "parked_at",
            name="uq_dead_letters_message_id_queue_parked_at",
        ),
    )
    op.create_index(
        "ix_dead_letters_state_parked_at", "dead_letters", ["state", "parked_at"]
    )

    op.create_table(
        "audit",
        _id(),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_target_at", "audit", ["target", "at"])
    op.create_index("ix_audit_at", "audit", ["at"])


def downgrade() -> None:
    for table in (
        "audit", "dead_letters", "dossier_sequences", "timeline", "outbox", "processed_ids",
        "log_head", "log_pending", "message_log",
    ):
        op.drop_table(table)
