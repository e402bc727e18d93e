"""Engines for the two supported databases, and the translation of their failures into the
hub's errors.

SQLite: WAL (readers never block the writer), foreign keys on, a busy timeout so writers queue
instead of failing, and transactions begun by us rather than by the sqlite3 module, so that a
writing unit of work starts with ``BEGIN IMMEDIATE`` (takes the write lock up front: no
deadlock between two deferred transactions upgrading, and the hash chain stays linear) and DDL
is transactional. The SQLite files hold citizens' names and identity numbers: the database is
created 0600 (in a directory created 0700) before SQLite opens it, whatever the umask, and
SQLite gives its -wal, -shm and -journal files the database's own mode. PostgreSQL: psycopg 3,
pre-ping so a restarted server costs one retry, not an error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

from hub.errors import ConfigError, RetryableError
from hub.files import private_dir, private_file, tighten

BUSY_TIMEOUT_S = 30.0
# Execution option read by the SQLite "begin" hook: IMMEDIATE for writers, DEFERRED for readers.
SQLITE_BEGIN = "lienthong_sqlite_begin"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            f"store_url {url!r} is not a database URL; use 'sqlite:///path/hub.db' or "
            "'postgresql+psycopg://user@host:5432/db'",
            code="server.config_invalid",
            field="store_url",
        ) from None
    backend = parsed.get_backend_name()
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver the hub ships with; plain postgresql:// means it too.
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"store_url uses {backend!r}; the store supports sqlite and postgresql "
            "(postgresql+psycopg://...)",
            field="store_url",
        )
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


# Files SQLite keeps beside a database (rollback journal, write-ahead log, its shared index).
SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


def _private_database(path: Path) -> None:
    """The database file made 0600 before SQLite first opens it: SQLite creates a missing one
    0644 minus the umask, and its companions copy the database's mode, so this one mode covers
    them all. A database (or companion) left wider by an older hub is tightened."""
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        tighten(path.with_name(path.name + suffix))


# A pooled PostgreSQL connection idle for longer than this is pinged before use.
PING_AFTER_IDLE_S = 1.0


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(parsed, pool_size=10, max_overflow=20)
        _ping_when_idle(engine)
        return engine

    path = _sqlite_file(parsed)
    # A batch writer's multi-row statements differ by row count (hub.store.bulk): keep more of
    # them prepared than the sqlite3 module's default 128.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S,
                                               "cached_statements": 512}}
    if path is None:
        # One shared connection, or every connection would see its own empty memory database.
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        _private_database(path)
    engine = create_engine(parsed, **kwargs)
    memory = path is None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see "begin" below)
        cursor = dbapi_conn.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit survives power loss; the outbox promises "never lost".
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, but only for a connection that sat in the pool for a while: the
    intake writer, the log linker and the relay each check a connection out for every
    transaction, many a second, and a ping is a round trip each time. A connection used a
    moment ago is as alive as a ping would show; if the server went away since, the statement
    fails, SQLAlchemy invalidates the pool, and the caller gets ``server.store_unavailable``
    (retryable, nothing kept) as it would for a server lost mid-transaction."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            # The pool throws the connection away and checks out another (three tries).
            raise exc.DisconnectionError(f"stale connection: {error}") from error
        if not alive:
            raise exc.DisconnectionError("stale connection")


def walk_index_in_order(conn: Connection) -> None:
    """For the rest of ``conn``'s transaction on PostgreSQL, plan with plain index scans only:
    for a queue-like table's "oldest rows first" queries (the outbox's claim, the message
    log's parked rows). Their rows are updated or deleted soon after they are written, and
    until a vacuum their old versions' index entries stay. A plain index scan marks the entries
    it finds dead so that the next scan skips them; a bitmap scan (what the planner picks for a
    few rows expected) and a sequential scan never do, and read every dead row's page each
    time: 4,000 pages and 5 ms a claim after 20,000 published rows
    (docs/performance.md#queue-tables-walked-by-index). No effect on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT set_config('enable_bitmapscan', 'off', true), "
                             "set_config('enable_seqscan', 'off', true)")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Database unreachable, locked or gone: ``RetryableError`` (the consumer retries the
    message later). Other database errors are bugs or broken invariants and pass through."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise RetryableError(
            f"the store is unavailable while {what}: {error.orig or error}; "
            "check that the database is reachable and not locked",
            code="server.store_unavailable",
        ) from error
    except exc.DBAPIError as error:
        if error.connection_invalidated:
            raise RetryableError(
                f"the store connection was lost while {what}; it will be retried",
                code="server.store_unavailable",
            ) from error
        raise
