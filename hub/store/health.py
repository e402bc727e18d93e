"""Whether the store takes writes, and which failures mean that it does not.

A worker must stop taking deliveries before it calls anyone when it could not record the
result (hub.broker.consumer): it needs to tell a store that cannot write (unreachable, locked,
read-only, disk full) from a bug, and to probe until the store writes again. ``/readyz`` of
the server and of the workers report the same probe: a store that answers reads but refuses a
write is not ready.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from sqlalchemy import Engine, exc, select

from hub.errors import HubError
from hub.store.conflict import dialect_insert
from hub.store.engine import SQLITE_BEGIN, is_sqlite
from hub.store.tables import store_probes

STORE_UNAVAILABLE = "server.store_unavailable"
# SQLSTATE classes and codes of PostgreSQL that say "this server cannot take your write now":
# connection exceptions (08), insufficient resources such as a full disk (53), operator
# intervention such as a shutdown (57), a read-only transaction (25006).
_PG_CLASSES = ("08", "53", "57")
_PG_CODES = ("25006",)

PROBER = f"{socket.gethostname()}:{os.getpid()}"


def is_store_failure(error: BaseException | None) -> bool:
    """True when ``error`` (or what caused it) says the store cannot be written now, as
    opposed to a bug or a broken invariant: retrying the same write later can succeed."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, HubError) and error.code == STORE_UNAVAILABLE:
            return True
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        if isinstance(error, exc.DBAPIError):
            if error.connection_invalidated:
                return True
            state = getattr(error.orig, "sqlstate", None)
            if isinstance(state, str) and (state in _PG_CODES or state[:2] in _PG_CLASSES):
                return True
        if isinstance(error, exc.DisconnectionError):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _reason(error: BaseException) -> str:
    # SQLAlchemy's text repeats the statement and its parameters; the driver's first line is
    # what an operator needs.
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def _read(engine: Engine) -> None:
    """One short read. A pooled connection the server closed since it was last used (a
    restart, pg_terminate_backend) fails once and is discarded by the pool: the read is made
    again on a fresh one, so a store that is back is not reported unreachable for it."""
    for last in (False, True):
        try:
            with engine.connect() as conn:
                conn.execute(select(1))
            return
        except exc.DBAPIError as error:
            if last or not error.connection_invalidated:
                raise


def probe(engine: Engine) -> str:
    """"ok", ``unreachable: ...`` (a read fails) or ``not writable: ...`` (reads work, the
    smallest write does not: read-only, disk full, locked beyond the busy timeout). Blocking:
    one short read and one upsert of this process's row in ``store_probes``."""
    try:
        _read(engine)
    except Exception as error:  # any failure of a read means unreachable
        return f"unreachable: {_reason(error)}"
    try:
        with engine.connect() as conn:
            if is_sqlite(conn):
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                now = datetime.now(UTC)
                conn.execute(
                    dialect_insert(conn, store_probes)
                    .values(prober=PROBER, probed_at=now)
                    .on_conflict_do_update(index_elements=["prober"], set_={"probed_at": now})
                )
    except Exception as error:  # any failure of the write means not writable
        return f"not writable: {_reason(error)}"
    return "ok"
