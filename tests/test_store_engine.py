"""hub.store.engine on PostgreSQL: a pooled connection the server dropped is replaced before use
when it sat idle; one used a moment ago is not pinged, and losing it is a retryable error."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from hub.errors import RetryableError
from hub.store import engine as engine_module
from hub.store.engine import make_engine, translate_errors


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
