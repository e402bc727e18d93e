"""hub.store.engine. PostgreSQL: a pooled connection the server dropped is replaced before use
when it sat idle; one used a moment ago is not pinged, and losing it is a retryable error.
SQLite: the database and its companion files are 0600 in directories made 0700, whatever the
umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text

from hub.errors import RetryableError
from hub.store import Store
from hub.store import engine as engine_module
from hub.store.engine import make_engine, translate_errors
from hub.store.health import probe


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = make_engine(pg_url)
    yield made
    made.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return pid


def _terminate(pg_url: str, pid: int) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def test_an_idle_connection_is_pinged_and_replaced(engine: Engine, pg_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = _backend(engine)
    _terminate(pg_url, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)  # every checkout is "idle"
    # The ping finds the connection dead; the pool hands out a new one, and the caller never
    # hears of it.
    assert _backend(engine) != first


def test_a_connection_used_a_moment_ago_is_not_pinged(engine: Engine, pg_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(conn: object) -> bool:
        pings.append(conn)
        return real_ping(conn)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)
    first = _backend(engine)  # a new connection: pinged once (no return time yet)
    assert len(pings) == 1
    for _ in range(5):
        assert _backend(engine) == first
    assert len(pings) == 1  # used again at once: no round trip spent on a ping
    _terminate(pg_url, first)
    # Lost since its last use: the statement fails, as a server lost mid-transaction would.
    with pytest.raises(RetryableError) as info, translate_errors("reading"):
        _backend(engine)
    assert info.value.code == "server.store_unavailable"
    # The pool was invalidated: the next use gets a live connection.
    assert _backend(engine) != first


# -- SQLite files: the store holds names and identity numbers --------------------------------

@pytest.fixture
def umask_000() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_a_new_sqlite_store_is_private_whatever_the_umask(tmp_path: Path, umask_000: None) -> None:
    database = tmp_path / "var" / "lienthong" / "hub.db"
    store = Store.open(f"sqlite:///{database}")
    try:
        with store.engine.connect() as conn:  # the write-ahead log and its index exist now
            conn.execute(text("SELECT 1"))
        files = {p.name: _mode(p) for p in database.parent.iterdir()}
        assert files == {"hub.db": "0o600", "hub.db-wal": "0o600", "hub.db-shm": "0o600"}
    finally:
        store.close()
    # Every directory the store made; the one that was there already is not the hub's.
    assert (_mode(tmp_path / "var"), _mode(database.parent)) == ("0o700", "0o700")
    assert _mode(tmp_path) == oct(stat.S_IMODE(tmp_path.stat().st_mode))


def test_an_older_store_left_readable_is_tightened(tmp_path: Path, umask_000: None) -> None:
    database = tmp_path / "hub.db"
    Store.open(f"sqlite:///{database}").close()
    wal = tmp_path / "hub.db-wal"
    wal.touch()
    for path in (database, wal):
        path.chmod(0o666)
    shared = stat.S_IMODE(tmp_path.stat().st_mode)
    tmp_path.chmod(0o755)
    try:
        # Checked while open: SQLite deletes its write-ahead log when the last connection
        # closes.
        with Store.open(f"sqlite:///{database}"):
            assert (_mode(database), _mode(wal)) == ("0o600", "0o600")
        assert _mode(tmp_path) == "0o755"  # a directory it did not make is left alone
    finally:
        tmp_path.chmod(shared)


def test_the_readiness_probe_is_not_fooled_by_a_connection_the_server_dropped(
        pg_url: str) -> None:
    # The pooled connection was used a moment ago, so it is not pinged: the probe's read meets
    # the dead connection first, and must try a fresh one before calling the store unreachable.
    with Store.open(pg_url) as store:
        assert probe(store.engine) == "ok"
        _terminate(pg_url, _backend(store.engine))
        assert probe(store.engine) == "ok"


def test_the_sqlite_write_lock_is_reentrant_in_a_thread_and_exclusive_across(
        tmp_path: Path) -> None:
    """Every write of the store takes it, so a write started inside a held lock (a caller's
    batch around a store call) must go ahead, while another thread waits its turn."""
    import threading

    from hub.store.writelock import SqliteWriteLock

    lock = SqliteWriteLock(tmp_path / "hub.db.write.lock")
    entered = threading.Event()

    def other() -> None:
        with lock:
            entered.set()

    with lock:
        with lock:  # the same thread again: no deadlock
            pass
        waiting = threading.Thread(target=other)
        waiting.start()
        assert not entered.wait(0.2)  # still held by the outer block
    waiting.join(5)
    assert entered.is_set()


def test_a_write_lock_that_cannot_be_taken_says_the_store_is_unavailable(
        tmp_path: Path) -> None:
    """A lock file that cannot be opened (its directory gone, read-only or full) is the store
    refusing writes, which a worker tells from a bug: it keeps the result and writes it
    again later rather than calling the system again."""
    from hub.errors import RetryableError
    from hub.store.health import is_store_failure
    from hub.store.writelock import SqliteWriteLock

    lock = SqliteWriteLock(tmp_path / "gone" / "hub.db.write.lock")
    with pytest.raises(RetryableError, match=r"write lock .* cannot be taken") as caught, lock:
        raise AssertionError("the lock was taken")
    assert caught.value.code == "server.store_unavailable"
    assert is_store_failure(caught.value)
    (tmp_path / "gone").mkdir()
    with lock:  # and once it can be opened, it is taken: the thread lock was released
        pass
