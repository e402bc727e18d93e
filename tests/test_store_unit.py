"""A unit of work commits everything it holds, or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hub.envelope import Envelope
from hub.errors import RetryableError
from hub.store import Store, sha256_hex
from hub.testing.store import scratch_url

SRC = "VN:GOV:000.00.00.H56:igate"


@dataclass(frozen=True)
class Message:
    body: bytes
    message_id: str
    exchange: str = "lienthong.events"
    routing_key: str = "dossier.submitted.none.none"
    type: str = "vn.gov.dossier.submitted"
    headers: dict[str, Any] = field(default_factory=dict)
    app_id: str = SRC
    subject: str | None = None


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    with scratch_url(store_url, tmp_path) as url:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()


def accept(store: Store, fail: bool) -> tuple[Envelope, str]:
    """What an entry point does: log, record, keep for publishing, add to the timeline."""
    dossier = f"000.00.00.H56-250101-{uuid.uuid4().hex[:6]}"
    env = Envelope.new(source=SRC, type="vn.gov.dossier.submitted", subject=dossier, data={})
    body = env.to_bytes()
    with store.begin() as tx:
        tx.log("in", env, sha256_hex(body), "rest")
        tx.record_processed("intake", [(env.id, sha256_hex(body))])
        tx.outbox_add(Message(body, env.id))
        tx.timeline_add(dossier, env.type, env.id, env.time, source=SRC, summary={})
        tx.audit_add("system", "accept", dossier)
        tx.set_sequence("intake", dossier, 1)
        if fail:
            raise RuntimeError("publishing refused after storing")
    return env, dossier


def test_everything_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError, match="publishing refused"):
        accept(store, fail=True)
    assert store.verify_log().checked == 0
    assert store.outbox_pending(10, lease=None) == []
    assert store.audit() == []
    with store.engine.connect() as conn:
        for table in ("processed_ids", "timeline", "dossier_sequences", "message_log",
                      "log_pending"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0, table

    env, dossier = accept(store, fail=False)
    store.link_log()
    report = store.verify_log()
    assert report.ok and report.checked == 1
    assert [m.message_id for m in store.outbox_pending(10, lease=None)] == [env.id]
    assert [e.message_id for e in store.timeline(dossier)] == [env.id]
    assert store.processed.lookup("intake", env.id) == sha256_hex(env.to_bytes())
    assert store.last_sequence("intake", dossier) == 1
    assert store.log_rows()[0].at <= datetime.now(UTC)


def test_a_connection_lost_inside_a_unit_of_work_is_retryable(
    pg_url: str, tmp_path: Path
) -> None:
    with scratch_url(pg_url, tmp_path) as url, Store.open(url) as store:
        with pytest.raises(RetryableError) as caught, store.begin() as tx:
            pid = tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            tx.audit_add("op", "lost", "connection")
        assert caught.value.code == "server.store_unavailable"
        # The pool replaces the dead connection: the next unit of work succeeds.
        with store.begin() as tx:
            tx.audit_add("op", "after", "connection")
        assert [a.action for a in store.audit()] == ["after"]
