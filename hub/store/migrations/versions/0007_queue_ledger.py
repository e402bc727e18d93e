"""The ledger of messages published into queues (hub.broker.queueage): the oldest message's age
of queues without a head timestamp.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_ledger",
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "total", name="pk_queue_ledger"),
    )


def downgrade() -> None:
    op.drop_table("queue_ledger")
