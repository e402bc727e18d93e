"""Three lookup tables' primary keys lead with the column looked up by many values, not the one
every row of a consumer shares: ``intake_idempotency`` (key, client), ``processed_ids``
(message_id, consumer), ``dossier_sequences`` (dossier_code, consumer).

Each is read as ``client = :one AND key = ANY(:many)``. Led by ``client``, PostgreSQL planned it,
without statistics (a new table, or autovacuum off), as a scan of the client's every row with
the keys as a filter: one intake batch read every idempotency key ever kept, 580 buffers a
batch after 15 s of bench/e2e.py and growing. Led by the key, the only index path probes each
key.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "intake_idempotency": (["key", "client"], ["client", "key"]),
    "processed_ids": (["message_id", "consumer"], ["consumer", "message_id"]),
    "dossier_sequences": (["dossier_code", "consumer"], ["consumer", "dossier_code"]),
}


def _primary_keys(which: int) -> None:
    inspector = sa.inspect(op.get_bind())
    for table, orders in KEYS.items():
        # A database from before revision 0002 has the intake's table with the key PostgreSQL
        # named (intake_idempotency_pkey) or SQLite left unnamed (named by the convention).
        name = inspector.get_pk_constraint(table).get("name") or f"pk_{table}"
        with op.batch_alter_table(table, naming_convention={"pk": "pk_%(table_name)s"}) as batch:
            batch.drop_constraint(name, type_="primary")
            batch.create_primary_key(f"pk_{table}", orders[which])


def upgrade() -> None:
    _primary_keys(0)


def downgrade() -> None:
    _primary_keys(1)
