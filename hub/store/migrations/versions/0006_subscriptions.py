"""Ministries' subscriptions (hub.subscriptions): one row per subscription queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("ministry", sa.String(200), nullable=False),
        sa.Column("event_types", _json(), nullable=False),
        sa.Column("agencies", _json(), nullable=False),
        sa.Column("procedures", _json(), nullable=False),
        sa.Column("projection", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumer_seen_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("name", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_ministry", "subscriptions", ["ministry"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_ministry", "subscriptions")
    op.drop_table("subscriptions")
