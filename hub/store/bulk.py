"""Statements of the batch writers' hot path, run as driver SQL rendered once: batches of rows
written with one statement (``INSERT ... VALUES (...), (...), ...``, optionally ``ON CONFLICT
(keys) DO NOTHING`` or ``DO UPDATE``), with the columns' own conversions (the bind processors
SQLAlchemy would apply), and the helpers the few hand-written queries beside them use.

Why not ``conn.execute(insert(table), rows)``: SQLAlchemy then calls the driver's
``executemany``, which on SQLite steps once per row and releases the GIL around each step. A
writer thread that shares its process with a busy event loop waits for the GIL again after
every row, up to the interpreter's switch interval. One statement per batch pays that once. It
also spares SQLAlchemy's per-row parameter handling, and on PostgreSQL it is one round trip.

Building and compiling a Core statement costs far more than ``exec_driver_sql`` with a ready
string, and a batch runs about ten statements.

On PostgreSQL the rows go as one array per column (``INSERT ... SELECT * FROM unnest(%s::type[],
...)``): the statement has as many parameters as the table has columns, whatever the rows.
psycopg converts a query's ``%s`` markers with a regular expression and caches the result only
for queries of at most 50 parameters, so a VALUES list of many rows would be parsed again on
every execution. One text for every row count is also one prepared statement on the server.

What each of these spares, and how to measure it again: docs/performance.md#array-sql.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, Table

# Rows per statement: bounds how many distinct statements (one per row count) the drivers keep
# prepared, and the parameters of one statement (SQLite allows 32,766, PostgreSQL 65,535).
MAX_ROWS = 64
_MAX_PARAMS = 30_000

Processor = Callable[[Any], Any] | None
_processors: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, str], Processor]] = (
    weakref.WeakKeyDictionary())


def marks(dialect: Dialect, count: int) -> str:
    """``count`` positional parameter markers, comma separated, in the driver's style."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)


def one_of(dialect: Dialect, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """``column`` equal to one of ``values``: the SQL condition and its parameters. On
    PostgreSQL one array parameter (``= ANY``), so the query's text, and psycopg's conversion
    of it, is the same for any number of values (see the module's note); ``IN (?, ...)``
    elsewhere."""
    if dialect.name == "postgresql":
        return f"{column} = ANY(%b)", (list(values),)
    return f"{column} IN ({marks(dialect, len(values))})", tuple(values)


def processor(dialect: Dialect, table: Table, column: str) -> Processor:
    """The conversion SQLAlchemy applies to a value bound to ``table.column`` (None: none)."""
    memo = _processors.get(dialect)
    if memo is None:
        memo = _processors[dialect] = {}
    key = (table.name, column)
    if key not in memo:
        memo[key] = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return memo[key]


def bind(dialect: Dialect, table: Table, column: str, value: Any) -> Any:
    """``value`` as the driver takes it for ``table.column``."""
    convert = processor(dialect, table, column)
    return value if convert is None or value is None else convert(value)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Rows of one ``BulkInsert``, converted for one dialect (``BulkInsert.prepare``)."""

    insert: BulkInsert
    dialect: str
    rows: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def pick(self, indices: Sequence[int]) -> Prepared:
        """These rows only (the jobs of a batch that are kept)."""
        return Prepared(self.insert, self.dialect, tuple(self.rows[i] for i in indices))


class BulkInsert:
    """``INSERT INTO table (columns) VALUES ...`` for many rows at once. Rows are sequences of
    the Python values SQLAlchemy would take for ``columns``, in that order. ``conflict`` names
    the unique columns of ``ON CONFLICT``: without ``update`` the conflicting rows are skipped,
    with it their ``update`` columns take the new values (where ``update_where`` holds, an SQL
    condition that may name the table's row and ``excluded``)."""

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        conflict: Sequence[str] = (),
        update: Sequence[str] = (),
        update_where: str | None = None,
    ) -> None:
        for name in (*columns, *conflict, *update):
            if name not in table.c:
                raise ValueError(f"table {table.name} has no column {name!r}")
        if update and not conflict:
            raise ValueError("update needs the conflict columns it applies to")
        if update_where and not update:
            raise ValueError("update_where needs the columns it updates")
        self.table = table
        self.columns = tuple(columns)
        self.conflict = tuple(conflict)
        self.update = tuple(update)
        self.update_where = update_where
        self.rows_per_statement = max(1, min(MAX_ROWS, _MAX_PARAMS // len(self.columns)))
        self._sql: dict[tuple[str, int], str] = {}

    def prepare(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> Prepared:
        """``rows`` converted for ``dialect`` now, to be written later by ``execute``: the
        conversions (JSON, times) then happen before the transaction and its locks."""
        processors = self._processors_of(dialect)
        width = len(processors)
        # Rows of a batch often share a value (the batch's time): converted once.
        last: list[tuple[Any, Any]] = [(None, None)] * width
        converted = []
        for row in rows:
            if len(row) != width:
                raise ValueError(f"a row for {self.table.name} has {len(row)} values for "
                                 f"{width} columns ({', '.join(self.columns)})")
            values = list(row)
            for i, convert in enumerate(processors):
                value = values[i]
                if convert is None or value is None:
                    continue
                seen, done = last[i]
                if seen is not value:
                    done = convert(value)
                    last[i] = (value, done)
                values[i] = done
            converted.append(tuple(values))
        return Prepared(self, dialect.name, tuple(converted))

    def join(self, dialect: Dialect, parts: Sequence[Prepared]) -> Prepared:
        """Prepared rows of several parts (the jobs of a batch) as one."""
        for part in parts:
            self._check(part, dialect)
        return Prepared(self, dialect.name, tuple(row for part in parts for row in part.rows))

    def execute(self, conn: Connection, rows: Sequence[Sequence[Any]] | Prepared) -> int:
        """Write ``rows`` (Python values, or ``prepare``d); returns how many were written
        (inserted, or updated with ``update``; skipped conflicts do not count): the
        statements' own row counts, which both drivers report exactly for one statement."""
        written = 0
        for result in self._run(conn, rows, ""):
            written += max(0, result.rowcount)
        return written

    def execute_returning(self, conn: Connection, rows: Sequence[Sequence[Any]] | Prepared,
                          columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """``execute``, returning ``columns`` of each row written, in no particular order
        (neither database promises one for RETURNING)."""
        for name in columns:
            if name not in self.table.c:
                raise ValueError(f"table {self.table.name} has no column {name!r}")
        quote = conn.dialect.identifier_preparer.quote
        returning = " RETURNING " + ", ".join(quote(c) for c in columns)
        return [tuple(row) for result in self._run(conn, rows, returning) for row in result]

    def _run(self, conn: Connection, rows: Sequence[Sequence[Any]] | Prepared,
             returning: str) -> Iterator[CursorResult[Any]]:
        dialect = conn.dialect
        if isinstance(rows, Prepared):
            converted = self._check(rows, dialect).rows
        else:
            converted = self.prepare(dialect, rows).rows
        if not converted:
            return
        if dialect.name == "postgresql":
            columns = tuple(list(values) for values in zip(*converted, strict=True))
            yield conn.exec_driver_sql(self._unnest(dialect) + returning, columns)
            return
        step = self.rows_per_statement
        for start in range(0, len(converted), step):
            chunk = converted[start:start + step]
            params = tuple(v for row in chunk for v in row)
            yield conn.exec_driver_sql(self._statement(dialect, len(chunk)) + returning, params)

    def _check(self, prepared: Prepared, dialect: Dialect) -> Prepared:
        if prepared.insert is not self or prepared.dialect != dialect.name:
            raise ValueError(f"rows prepared for {prepared.insert.table.name} on "
                             f"{prepared.dialect} cannot be written to {self.table.name} on "
                             f"{dialect.name}")
        return prepared

    def _processors_of(self, dialect: Dialect) -> list[Processor]:
        return [processor(dialect, self.table, name) for name in self.columns]

    def _statement(self, dialect: Dialect, count: int) -> str:
        key = (dialect.name, count)
        sql = self._sql.get(key)
        if sql is None:
            sql = self._render(dialect, count)
            self._sql[key] = sql
        return sql

    def _unnest(self, dialect: Dialect) -> str:
        key = (dialect.name, 0)
        sql = self._sql.get(key)
        if sql is None:
            arrays = ", ".join(
                f"%b::{self.table.c[c].type.compile(dialect=dialect)}[]" for c in self.columns)
            sql = self._render(dialect, 0, f"SELECT * FROM unnest({arrays})")
            self._sql[key] = sql
        return sql

    def _render(self, dialect: Dialect, count: int, rows: str | None = None) -> str:
        quote = dialect.identifier_preparer.quote
        row = f"({marks(dialect, len(self.columns))})"
        sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(self.table)} "
               f"({', '.join(quote(c) for c in self.columns)}) "
               + (rows if rows is not None else "VALUES " + ", ".join([row] * count)))
        if self.conflict:
            sql += f" ON CONFLICT ({', '.join(quote(c) for c in self.conflict)}) DO "
            if self.update:
                sql += "UPDATE SET " + ", ".join(
                    f"{quote(c)} = excluded.{quote(c)}" for c in self.update)
                if self.update_where:
                    sql += f" WHERE {self.update_where}"
            else:
                sql += "NOTHING"
        return sql
