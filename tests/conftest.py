"""Shared fixtures. RabbitMQ and PostgreSQL are real: a test run gets its own RabbitMQ vhost and
its own PostgreSQL database, so runs (and developers) sharing a machine never see each other's
queues or rows. If either service cannot be reached the run fails loudly: it never skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import psycopg
import pytest

from hub.settings import Settings
from hub.store import Store
from hub.testing.store import scratch_url

AMQP_HOST = os.environ.get("LIENTHONG_TEST_AMQP_HOST", "127.0.0.1")
PG_ADMIN_URL = os.environ.get("LIENTHONG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def open_store(request: pytest.FixtureRequest, directory: Path,
               stack: contextlib.ExitStack) -> Store:
    """A store of its own, closed (and on PostgreSQL its schema dropped) with ``stack``, on the
    database ``request.param`` names: a new SQLite file in ``directory``, or a new schema of
    the session's PostgreSQL database. For module-scoped fixtures parametrised by database."""
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'hub.db'}"
    else:
        url = stack.enter_context(scratch_url(request.getfixturevalue("pg_url"), directory))
    store = Store.open(url)
    stack.callback(store.close)
    return store


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is not on PATH; the broker tests need a local RabbitMQ")
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {out.stderr or out.stdout}")
    return out.stdout


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    vhost = f"lt-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield vhost
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def amqp_url(amqp_vhost: str) -> str:
    url = f"amqp://guest:guest@{AMQP_HOST}:5672/{quote(amqp_vhost, safe='')}"
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {AMQP_HOST}:5672 cannot be reached: {exc!r}")
    return url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"lt_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} cannot be reached: {exc!r}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test against both stores. PostgreSQL tests get a fresh schema-less database per
    session; tests must not assume an empty database (use unique ids)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on ``store_url`` (both databases), closed after the test. Modules that need
    more of it (a schema of their own, extra tables) define their own ``store``."""
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def prefix() -> str:
    """A unique name prefix for exchanges and queues of one test."""
    return f"lt{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(tmp_path: Path, amqp_url: str, prefix: str) -> Settings:
    """Settings for a broker test: own vhost, own names, short retry tiers."""
    return Settings(
        data_dir=tmp_path,
        amqp_url=amqp_url,
        name_prefix=prefix,
        retry_tiers=[0.2, 0.4, 0.6],
        reconnect_initial=0.05,
        reconnect_max=0.5,
    )
