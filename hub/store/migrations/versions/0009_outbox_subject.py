"""The outbox keeps each message's subject (its dossier): on PostgreSQL every serve process's
relay publishes the rows its own intake kept, so two events of one dossier kept by two
processes could reach the broker in the wrong order; a relay now holds a row back while an
earlier unpublished row of the same subject is another relay's (hub.outbox.relay). Rows kept
before this revision have none and are published as they come.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("subject", sa.String(255)))
    op.create_index("ix_outbox_unpublished_subject", "outbox", ["subject"],
                    postgresql_where=UNPUBLISHED, sqlite_where=UNPUBLISHED)


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished_subject", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("subject")
