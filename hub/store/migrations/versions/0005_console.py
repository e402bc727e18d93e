"""The operator console: what the dead-letter keeper records of each parked message (digest,
kind, dossier, failures, history, the replay it came from, how it was resolved), the audit
trail's hash chain and its append-only triggers, operators and their sessions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


_APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("digest", sa.String(64)))
        batch.add_column(sa.Column("kind", sa.String(40)))
        batch.add_column(sa.Column("dossier_code", sa.String(100)))
        batch.add_column(sa.Column("first_failure_at", _time()))
        batch.add_column(sa.Column("last_failure_at", _time()))
        batch.add_column(sa.Column("history", _json()))
        batch.add_column(sa.Column("replay_of", sa.BigInteger()))
        batch.add_column(sa.Column("resolved_by", sa.String(200)))
        batch.add_column(sa.Column("resolved_at", _time()))
        batch.add_column(sa.Column("resolution", _json()))
        batch.drop_constraint("uq_dead_letters_message_id_queue_parked_at", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_message_id_digest",
                                       ["message_id", "digest"])
    op.create_index("ix_dead_letters_kind_parked_at", "dead_letters", ["kind", "parked_at"])
    op.create_index("ix_dead_letters_dossier_code", "dead_letters", ["dossier_code"])

    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("why", sa.Text()))
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("row_hash", sa.String(64)))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_PG)
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{what.lower()} BEFORE {what} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {what} "
                       "refused'); END")

    op.create_table(
        "operators",
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("disabled", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_operators"),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="ck_operators_role"),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_operator_sessions"),
    )
    op.create_index("ix_operator_sessions_expires_at", "operator_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("operator_sessions")
    op.drop_table("operators")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_append_only ON audit")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("why")
    op.drop_index("ix_dead_letters_dossier_code", "dead_letters")
    op.drop_index("ix_dead_letters_kind_parked_at", "dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_constraint("uq_dead_letters_message_id_digest", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_message_id_queue_parked_at",
                                       ["message_id", "queue", "parked_at"])
        for name in ("resolution", "resolved_at", "resolved_by", "replay_of", "history",
                     "last_failure_at", "first_failure_at", "dossier_code", "kind", "digest"):
            batch.drop_column(name)
