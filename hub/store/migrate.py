"""Alembic, run from the package: no alembic.ini needed. ``upgrade(engine)`` brings a database
to the newest revision; it is idempotent and safe when several processes open one database at
once: the upgrade runs in one transaction that first takes a database-wide lock (PostgreSQL: an
advisory transaction lock; SQLite: ``BEGIN IMMEDIATE``), so the second process waits, then finds
the schema at head and does nothing.

New revision (developers)::

    from alembic import command
    from hub.store.migrate import config
    command.revision(config("sqlite:///var/dev.db"), "what changed", autogenerate=True)
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from hub.store.engine import SQLITE_BEGIN, is_sqlite, translate_errors

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key: any constant; "lt-migr" in ASCII.
_PG_LOCK_KEY = 0x6C742D6D69677200
# alembic's ``context`` is a module-level proxy: two threads of one process must not run
# migrations at the same time, whatever the database.
_local_lock = threading.Lock()


def config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head() -> str | None:
    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = config()
    with _local_lock, translate_errors("migrating the schema"), engine.connect() as conn:
        if is_sqlite(conn):
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            if not is_sqlite(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            # env.py runs on this connection, inside this transaction (alembic sees an
            # external transaction and leaves commit to us).
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
