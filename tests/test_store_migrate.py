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
from hub.store.testing import scratch_url


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
        assert migrate.current(first.engine) == migrate.head() == "0001"
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
