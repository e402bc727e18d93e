"""Forgetting what no longer needs remembering, on both databases: Idempotency-Keys, processed
ids and published outbox messages by age, through the store and ``lienthong store prune``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from hub.cli.store import app, parse_duration, processed_ids_window
from hub.settings import Settings
from hub.store import Store
from hub.store.tables import event_sequences, intake_idempotency, processed_ids
from hub.testing.store import scratch_url

NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Message:
    body: bytes
    exchange: str = "lienthong.events"
    routing_key: str = "dossier.submitted.000_00_00_H56.1_000001"
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    type: str = "vn.gov.dossier.submitted"
    headers: dict[str, Any] = field(default_factory=dict)
    app_id: str | None = None
    subject: str | None = None


@pytest.fixture
def url(store_url: str, tmp_path: Path) -> Iterator[str]:
    with scratch_url(store_url, tmp_path) as scratch:
        yield scratch


def fill(store: Store) -> None:
    """Of each kind, one row 10 days old and one 1 hour old; two outbox rows published at those
    ages and one unpublished from 10 days ago."""
    old, new = NOW - timedelta(days=10), NOW - timedelta(hours=1)
    with store.begin() as tx:
        conn = tx.connection
        conn.execute(insert(intake_idempotency), [
            {"client": "c", "key": f"k-{age}", "message_id": str(uuid.uuid4()),
             "request_sha256": "0" * 64, "created_at": at}
            for age, at in (("old", old), ("new", new))])
        conn.execute(insert(processed_ids), [
            {"consumer": "w", "message_id": f"m-{age}", "digest": "0" * 64, "recorded_at": at}
            for age, at in (("old", old), ("new", new))])
        for at in (old, new, old):
            tx.outbox_add(Message(b"{}"), at=at)
    published = [i.id for i in store.outbox_pending(10, lease=None)][:2]
    with store.engine.begin() as conn:
        from hub.store import outbox

        outbox.mark_published(conn, published[:1], at=old)
        outbox.mark_published(conn, published[1:], at=new)


def counts(store: Store) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        keys = conn.execute(select(func.count()).select_from(intake_idempotency)).scalar_one()
        ids = conn.execute(select(func.count()).select_from(processed_ids)).scalar_one()
    return keys, ids, len(store.outbox_pending(10, lease=None))


def test_store_prunes_by_age(url: str) -> None:
    with Store.open(url) as store:
        fill(store)
        assert store.idempotency_prune(timedelta(days=7)) == 1
        assert store.idempotency_prune(timedelta(days=7)) == 0
        assert store.processed.prune(timedelta(days=7)) == 1
        assert store.outbox_prune(timedelta(days=7)) == 1
        keys, ids, unpublished = counts(store)
        assert (keys, ids, unpublished) == (1, 1, 1)  # the unpublished old row stays
        assert store.idempotency_prune(NOW) == 1


def test_cli_prune(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(tmp_path))
    with Store.open(url) as store:
        fill(store)
    result = CliRunner().invoke(app, ["prune", "--store-url", url,
                                      "--processed-older-than", "2d",
                                      "--idempotency-older-than", "36h"])
    assert result.exit_code == 0, result.output
    assert "pruned 1 processed ids" in result.output
    assert "1 idempotency keys" in result.output and "1 published outbox" in result.output
    with Store.open(url) as store:
        assert counts(store) == (1, 1, 1)
    again = CliRunner().invoke(app, ["prune", "--store-url", url, "--outbox-older-than", "30m"])
    assert again.exit_code == 0, again.output
    assert "1 published outbox messages" in again.output
    # Processed ids default to the longest a message can come back: the 1 hour old one stays.
    assert "pruned 0 processed ids" in again.output


def test_event_numbers_go_with_the_processed_ids(url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The numbers adapters' events took (hub.intake.sequencing) are kept as long as processed ids:
    the CLI prunes them with the same age."""
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(tmp_path))
    with Store.open(url) as store, store.begin() as tx:
        tx.connection.execute(insert(event_sequences), [
            {"message_id": f"m-{age}", "dossier_code": "000.00.00.H56-250101-0001",
             "sequence": n, "assigned_at": NOW - ago}
            for n, (age, ago) in enumerate((("old", timedelta(days=3)),
                                            ("new", timedelta(hours=1))), 1)])
    result = CliRunner().invoke(app, ["prune", "--store-url", url,
                                      "--processed-older-than", "2d"])
    assert result.exit_code == 0, result.output
    assert "1 sequence numbers of adapters' events" in result.output
    with Store.open(url) as store, store.engine.connect() as conn:
        assert conn.execute(select(event_sequences.c.message_id)).scalars().all() == ["m-new"]


def test_cli_prune_as_a_group_of_lienthong(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """As the lead registers it: ``lienthong store prune``."""
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(tmp_path))
    main = typer.Typer()
    main.add_typer(app, name="store")
    result = CliRunner().invoke(main, ["store", "prune", "--store-url",
                                       f"sqlite:///{tmp_path}/hub.db"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pruned 0 processed ids")
    assert "prune" in CliRunner().invoke(main, ["store", "--help"]).output


def test_cli_prune_refuses_bad_durations(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["prune", "--store-url", f"sqlite:///{tmp_path}/x.db",
                                      "--idempotency-older-than", "a week"])
    assert result.exit_code == 2
    assert "--idempotency-older-than" in result.output and "like 90s, 30m" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before opening anything


def test_durations() -> None:
    assert parse_duration("90s", "-x") == timedelta(seconds=90)
    assert parse_duration("30m", "-x") == timedelta(minutes=30)
    assert parse_duration("1.5h", "-x") == timedelta(minutes=90)
    assert parse_duration("7d", "-x") == timedelta(days=7)
    assert parse_duration("120", "-x") == timedelta(seconds=120)
    for bad in ("0s", "-1d", "7 days", ""):
        with pytest.raises(typer.BadParameter):
            parse_duration(bad, "-x")
    settings = Settings(retry_tiers=[5.0, 30.0], queued_max_age=3600.0, clock_skew=60.0)
    assert processed_ids_window(settings) == timedelta(seconds=3695)
