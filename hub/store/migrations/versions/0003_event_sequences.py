"""The sequence each event an adapter made took in its dossier's one sequence, by message id
(see hub.sequencing): a handler run again after a failure makes the same message again, and
it must take the same number, or its receivers would see one id with two bodies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_sequences",
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("dossier_code", sa.String(100), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_event_sequences"),
    )
    op.create_index("ix_event_sequences_assigned_at", "event_sequences", ["assigned_at"])


def downgrade() -> None:
    op.drop_table("event_sequences")
