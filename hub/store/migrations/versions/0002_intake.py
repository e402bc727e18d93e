"""The intake's tables: Idempotency-Keys and per-dossier state (until now created at start-up
by the intake itself, outside the migrations: a database that has them already keeps them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "intake_idempotency" not in existing:
        op.create_table(
            "intake_idempotency",
            sa.Column("client", sa.String(200), nullable=False),
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("message_id", sa.String(255), nullable=False),
            sa.Column("request_sha256", sa.String(64), nullable=False),
            sa.Column("created_at", _time(), nullable=False),
            sa.PrimaryKeyConstraint("client", "key", name="pk_intake_idempotency"),
        )
        op.create_index(
            "ix_intake_idempotency_created_at", "intake_idempotency", ["created_at"]
        )
    if "intake_dossiers" not in existing:
        op.create_table(
            "intake_dossiers",
            sa.Column("dossier_code", sa.String(100), nullable=False),
            sa.Column("sequence", sa.BigInteger(), nullable=False),
            sa.Column("procedure_code", sa.String(100)),
            sa.Column("status", sa.Integer()),
            sa.Column("updated_at", _time(), nullable=False),
            sa.PrimaryKeyConstraint("dossier_code", name="pk_intake_dossiers"),
        )


def downgrade() -> None:
    op.drop_table("intake_dossiers")
    op.drop_table("intake_idempotency")
