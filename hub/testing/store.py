"""Empty stores of their own for tests and benchmarks that need exact counts on a database
others share: a fresh SQLite file, or a fresh PostgreSQL schema (selected through
``search_path``) in the same database, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from hub.store.engine import parse_url


@contextmanager
def scratch_url(url: str, directory: Path) -> Iterator[str]:
    """A URL to an empty database beside ``url``: a new file in ``directory`` for SQLite, a
    new schema of ``url``'s database for PostgreSQL."""
    parsed = parse_url(url)
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    if parsed.get_backend_name() == "sqlite":
        yield f"sqlite:///{directory / (name + '.db')}"
        return
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        scoped = parsed.update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
