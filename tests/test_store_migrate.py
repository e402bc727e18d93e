"""Opening a store: engines, migrations (idempotent, safe from several processes at once)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from hub.errors import ConfigError, RetryableError
from hub.store import Store, migrate
from hub.store.engine import make_engine, parse_url
from hub.store.tables import metadata
from hub.testing.store import scratch_url


@pytest.fixture
def url(store_url: str, tmp_path: Path) -> Iterator[str]:
    with scratch_url(store_url, tmp_path) as scratch:
        yield scratch


def counts(store: Store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        versions = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
        heads = conn.execute(text("SELECT count(*) FROM log_head")).scalar_one()
    return versions, heads


def test_opening_twice_migrates_once(url: str) -> None:
    with Store.open(url) as first:
        assert migrate.current(first.engine) == migrate.head() == "0010"
        with first.begin() as tx:
            tx.audit_add("op", "test", "store")
    with Store.open(url) as second:
        assert counts(second) == (1, 1)
        assert len(second.audit()) == 1  # the data survived the second upgrade


def test_migrated_schema_matches_the_tables_module(url: str) -> None:
    with Store.open(url) as store, store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_several_processes_opening_one_new_database_at_once(url: str) -> None:
    code = "import sys; from hub.store import Store; Store.open(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failures = [p.stderr.read() for p in procs if p.wait(timeout=60) != 0 and p.stderr]
    assert failures == []
    with Store.open(url) as store:
        assert counts(store) == (1, 1)


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'dir' / 'hub.db'}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}
    assert (tmp_path / "new" / "dir" / "hub.db").exists()


def test_memory_sqlite_is_one_database() -> None:
    with Store.open("sqlite://") as store:
        with store.begin() as tx:
            tx.audit_add("op", "test", "memory")
        assert [a.target for a in store.audit()] == ["memory"]


def test_urls() -> None:
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError, match="store_url"):
        parse_url("not a url")
    with pytest.raises(ConfigError, match="supports sqlite and postgresql"):
        parse_url("mysql://u@h/db")


def test_an_unreachable_database_is_a_retryable_error() -> None:
    with pytest.raises(RetryableError) as caught:
        Store.open("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    assert caught.value.code == "server.store_unavailable"


def test_intake_tables_made_before_their_migration_are_kept(url: str) -> None:
    """Until revision 0002 the intake created its two tables itself at start-up, outside the
    migrations; a database from then upgrades without losing their rows."""
    from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

    from hub.store.tables import UTCDateTime

    engine = make_engine(url)
    try:
        migrate.upgrade(engine, "0001")
        old = MetaData()
        Table("intake_idempotency", old,
              Column("client", String(200), primary_key=True),
              Column("key", String(255), primary_key=True),
              Column("message_id", String(255), nullable=False),
              Column("request_sha256", String(64), nullable=False),
              Column("created_at", UTCDateTime, nullable=False))
        Table("intake_dossiers", old,
              Column("dossier_code", String(100), primary_key=True),
              Column("sequence", BigInteger, nullable=False),
              Column("procedure_code", String(100)),
              Column("status", Integer),
              Column("updated_at", UTCDateTime, nullable=False))
        with engine.begin() as conn:
            old.create_all(conn)
            conn.execute(text("INSERT INTO intake_dossiers (dossier_code, sequence, updated_at)"
                              " VALUES ('000.00.00.H56-250101-0001', 3, '2025-01-01')"))
    finally:
        engine.dispose()
    with Store.open(url) as store, store.engine.connect() as conn:
        assert migrate.current(store.engine) == migrate.head()
        assert conn.execute(text("SELECT sequence FROM intake_dossiers")).scalar_one() == 3
