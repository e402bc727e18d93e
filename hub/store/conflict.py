"""``INSERT ... ON CONFLICT`` for the two dialects: the same SQL, built by each dialect's own
``insert`` (they share the ``on_conflict_do_nothing`` / ``on_conflict_do_update`` API)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

DialectInsert = postgresql.Insert | sqlite.Insert


def dialect_insert(conn: Connection, table: Table) -> DialectInsert:
    return dialect_insert_for(conn.dialect.name, table)


def dialect_insert_for(dialect: str, table: Table) -> DialectInsert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: Table, keys: Sequence[str]) -> DialectInsert:
    """An insert that skips rows whose ``keys`` already exist (idempotent writes). Built once
    per dialect, table and keys (see docs/performance.md#statements-built-once); statements
    are immutable, so callers may derive others from it (``.returning(...)``)."""
    return _insert_ignore(conn.dialect.name, table, tuple(keys))


@cache
def _insert_ignore(dialect: str, table: Table, keys: tuple[str, ...]) -> DialectInsert:
    return dialect_insert_for(dialect, table).on_conflict_do_nothing(index_elements=list(keys))
