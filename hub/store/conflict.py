"""``INSERT ... ON CONFLICT`` for the two dialects: the same SQL, built by each dialect's own
``insert`` (they share the ``on_conflict_do_nothing`` / ``on_conflict_do_update`` API)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

DialectInsert = postgresql.Insert | sqlite.Insert


def dialect_insert(conn: Connection, table: Table) -> DialectInsert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: Table, keys: Sequence[str]) -> DialectInsert:
    """An insert that skips rows whose ``keys`` already exist (idempotent writes)."""
    return dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
