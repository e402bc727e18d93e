"""Held dossiers of the ordered consumers (hub.broker.lanes: a dossier whose message waits in a
retry tier, and the messages sent behind it) and the store's write probe (hub.store.probe).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_groups",
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("dossier_code", sa.String(200), nullable=False),
        sa.Column("state", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "dossier_code", name="pk_held_groups"),
    )
    op.create_table(
        "store_probes",
        sa.Column("prober", sa.String(255), nullable=False),
        sa.Column("probed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("prober", name="pk_store_probes"),
    )


def downgrade() -> None:
    op.drop_table("store_probes")
    op.drop_table("held_groups")
