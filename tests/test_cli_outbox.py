"""``lienthong outbox status``: the backlog of the outbox, read from the store (both databases),
run as the command an operator types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.broker.messages import Outgoing
from hub.store import Store
from hub.testing.store import scratch_url


@pytest.fixture
def own_store_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty store of the test's own: the session's PostgreSQL database holds other tests'
    outbox rows."""
    with scratch_url(store_url, tmp_path) as url:
        yield url


def _message() -> Outgoing:
    return Outgoing(body=b"{}", exchange="lt.events", routing_key="dossier.submitted.a.b",
                    message_id=str(uuid.uuid4()), type="vn.gov.dossier.submitted")


def _status(url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "from hub.cli import main; main()", "outbox", "status",
         "--store-url", url, *args],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_counts_pending_and_leased_rows_and_the_oldest(own_store_url: str) -> None:
    now = datetime.now(UTC)
    with Store.open(own_store_url) as store:
        assert json.loads(_status(own_store_url, "--json"))["pending"] == 0
        with store.begin() as tx:
            published = tx.outbox_add(_message(), at=now - timedelta(hours=1))
            tx.outbox_add(_message(), at=now - timedelta(seconds=120))
            tx.outbox_add(_message(), at=now - timedelta(seconds=10))
            tx.outbox_add(_message(), at=now - timedelta(seconds=5))
        # A relay takes the two oldest (a lease of a minute) and publishes the first.
        claimed = store.outbox_pending(2, lease=60.0)
        assert len(claimed) == 2 and claimed[0].id == published
        store.outbox_mark_published([published])

    found = json.loads(_status(own_store_url, "--json"))
    assert found["pending"] == 3
    assert found["leased"] == 1
    assert 120 <= found["oldest_age_seconds"] < 120 + 60
    oldest = datetime.fromisoformat(found["oldest_created_at"])
    assert abs((oldest - (now - timedelta(seconds=120))).total_seconds()) < 1
    assert "postgresql" in found["store"] or found["store"].startswith("sqlite")

    text = _status(own_store_url)
    assert "pending  3 (leased to a relay now: 1)" in text
    assert "min ago" in text or "s ago" in text


def test_status_of_an_empty_outbox(own_store_url: str) -> None:
    text = _status(own_store_url)
    assert "pending  0" in text and "nothing waits" in text
