"""A pool of numbers a system allocated to the hub in advance (waybills, receipt numbers), by the
owner they were issued to: each number is given to at most one key, even with several workers
taking at once, and asked again for the same key (a redelivered message) the pool gives the same
number back. A number the system says is used elsewhere is burned: out of use for good, its key
free to take another.

``pool_table`` declares an adapter's table (its column names its own), ``SqlNumberPool`` keeps
it: taking a number is one UPDATE of the first free one (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so concurrent workers take different rows instead of queueing on one; SQLite
serialises writers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub.adaptertables import utc, writing
from hub.errors import RetryableError

FREE, TAKEN, BURNED = "free", "taken", "burned"


@dataclass(frozen=True)
class PoolCounts:
    free: int
    taken: int
    burned: int


def pool_table(metadata: sa.MetaData, name: str, *, number: str, owner: str, key: str,
               length: int = 20) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(number, sa.String(length), primary_key=True),
        sa.Column(owner, sa.String(50), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),  # free | taken | burned
        sa.Column(key, sa.String(120), unique=True),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("taken_at", sa.DateTime),
        sa.Column("note", sa.Text),
        sa.Index(f"ix_{name}_free", owner, "state", number),
    )


class SqlNumberPool:
    """The pool in ``table`` (``pool_table``): numbers checked by ``check``, ``empty(owner)``
    raised when none is free; ``what`` and ``field`` name a number in errors."""

    def __init__(self, engine: Engine, table: sa.Table, *, owner: str, key: str,
                 check: Callable[[str], str], empty: Callable[[str], Exception], what: str,
                 field: str) -> None:
        self.engine, self.table, self.check, self.empty = engine, table, check, empty
        (self.number,) = table.primary_key.columns
        self.owner, self.key = table.c[owner], table.c[key]
        self.what, self.field = what, field

    def add(self, owner: str, numbers: Iterable[str], now: datetime) -> int:
        """Put numbers in the pool; those already known, free, taken or burned, are left as
        they are. How many were new."""
        rows = [{self.number.name: self.check(n), self.owner.name: owner, "state": FREE,
                 "added_at": utc(now)} for n in numbers]
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = (dialect.insert(self.table)
                     .on_conflict_do_nothing(index_elements=[self.number.name])
                     .returning(self.number))
        added = 0
        for i in range(0, len(rows), 1000):
            with writing(self.engine) as conn:
                added += len(conn.execute(statement, rows[i: i + 1000]).all())
        return added

    def _assigned(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(self.number).where(
                self.key == key, self.table.c.state == TAKEN)).scalar()
        return None if value is None else str(value)

    def take(self, owner: str, key: str, now: datetime) -> str:
        """The number of ``key``: the one it has, or a free one."""
        known = self._assigned(key)
        if known is not None:
            return known
        state = self.table.c.state
        free = (sa.select(self.number).where(self.owner == owner, state == FREE)
                .order_by(self.number).limit(1).with_for_update(skip_locked=True)
                .scalar_subquery())
        claim = (sa.update(self.table)
                 # The state test is repeated outside: under READ COMMITTED a row another worker
                 # took between the subquery and the update is re-checked here and left alone.
                 .where(self.number == free, state == FREE)
                 .values({"state": TAKEN, self.key.name: key, "taken_at": utc(now)})
                 .returning(self.number))
        for _ in range(20):
            try:
                with writing(self.engine) as conn:
                    got = conn.execute(claim).scalar()
            except IntegrityError:
                # Another worker took a number for this very key first: use that one.
                got = self._assigned(key)
            if got is not None:
                return str(got)
            if self.counts(owner).free == 0:
                raise self.empty(owner)
        raise RetryableError(
            f"could not take a {self.what} of {owner!r} after 20 tries (heavy contention)",
            code=f"server.{self.what}_contention", field=self.field)

    def burn(self, number: str, reason: str, now: datetime) -> None:
        """Take a number out of use for good; its key is freed, to take a fresh number."""
        with writing(self.engine) as conn:
            conn.execute(sa.update(self.table).where(self.number == number).values(
                {"state": BURNED, self.key.name: None, "note": reason[:1000],
                 "taken_at": utc(now)}))

    def counts(self, owner: str) -> PoolCounts:
        query = (sa.select(self.table.c.state, sa.func.count())
                 .where(self.owner == owner).group_by(self.table.c.state))
        with self.engine.connect() as conn:
            found = {str(state): int(n) for state, n in conn.execute(query).all()}
        return PoolCounts(found.get(FREE, 0), found.get(TAKEN, 0), found.get(BURNED, 0))

    def taken_by(self, numbers: Sequence[str]) -> dict[str, str | None]:
        """The key holding each of these numbers (None: free or burned)."""
        query = sa.select(self.number, self.key).where(self.number.in_(list(numbers)))
        with self.engine.connect() as conn:
            return {str(n): k for n, k in conn.execute(query).all()}


class NumberPool(Protocol):
    """An adapter's pool (``SqlNumberPool``, or an in-memory fake in unit tests)."""

    def add(self, owner: str, numbers: Iterable[str], now: datetime) -> int: ...

    def take(self, owner: str, key: str, now: datetime) -> str: ...

    def burn(self, number: str, reason: str, now: datetime) -> None: ...

    def counts(self, owner: str) -> PoolCounts: ...

    def taken_by(self, numbers: Sequence[str]) -> dict[str, str | None]: ...
