"""``lienthong log verify`` and ``lienthong log show`` through typer's runner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from hub.cli import app
from hub.cli import log as log_cli
from hub.store import LogFields, Store, UnitOfWork, sha256_hex
from hub.testing.store import scratch_url

runner = CliRunner()


@pytest.fixture
def url(store_url: str, tmp_path: Path) -> Iterator[str]:
    with scratch_url(store_url, tmp_path) as scratch:
        yield scratch


def fill(url: str, n: int, dossier: str = "D-1") -> None:
    with Store.open(url) as store, store.begin() as tx:
        for i in range(n):
            tx.log("in", LogFields(str(uuid.uuid4()), "vn.gov.dossier.submitted",
                                   "VN:GOV:000.00.00.H56:igate", dossier),
                   sha256_hex(str(i).encode()), "rest")


def test_verify_ok_then_tampered(url: str) -> None:
    fill(url, 4)
    ok = runner.invoke(app, ["log", "verify", "--store-url", url])
    assert ok.exit_code == 0, ok.output
    assert "OK: 4 rows checked" in ok.output

    with Store.open(url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE message_log SET subject = 'D-9' WHERE seq = 2"))
        conn.execute(text("DELETE FROM message_log WHERE seq = 4"))
    bad = runner.invoke(app, ["log", "verify", "--store-url", url])
    assert bad.exit_code == 1
    assert "PROBLEM edited: seq 2:" in bad.output
    assert "PROBLEM truncated: seq 4:" in bad.output
    assert "TAMPERED: 2 problem(s) in 3 rows checked" in bad.output


def test_verify_shows_a_progress_bar_on_long_chains(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(url, 30)
    monkeypatch.setattr(log_cli, "PROGRESS_THRESHOLD", 10)
    seen: list[tuple[int, int, bool]] = []
    original = log_cli._Bar.update

    def spy(self: log_cli._Bar, checked: int, total: int) -> None:
        original(self, checked, total)
        seen.append((checked, total, self._progress is not None))

    monkeypatch.setattr(log_cli._Bar, "update", spy)
    result = runner.invoke(app, ["log", "verify", "--store-url", url])
    assert result.exit_code == 0, result.output
    assert seen[-1] == (30, 30, True)


def test_default_store_is_sqlite_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "not" / "yet"
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(data_dir))
    monkeypatch.delenv("LIENTHONG_STORE_URL", raising=False)
    monkeypatch.delenv("LIENTHONG_CONFIG", raising=False)
    result = runner.invoke(app, ["log", "verify"])
    assert result.exit_code == 0, result.output
    assert "OK: 0 rows checked" in result.output
    assert (data_dir / "hub.db").exists()


def test_show_filters_by_dossier_and_limits(url: str) -> None:
    fill(url, 3, "D-A")
    fill(url, 2, "D-B")
    result = runner.invoke(app, ["log", "show", "--store-url", url, "--dossier", "D-A",
                                 "--limit", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["2", "3"]
    assert all("dossier=D-A" in line and "<- rest" in line for line in lines)
    empty = runner.invoke(app, ["log", "show", "--store-url", url, "--dossier", "D-none"])
    assert "no log rows for dossier D-none" in empty.output


def test_an_unusable_store_url_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["log", "verify", "--store-url", "mysql://x@y/z"])
    assert result.exit_code == 2
    assert "supports sqlite and postgresql" in result.output


def test_verify_link_chains_parked_rows_first(pg_url: str, tmp_path: Path) -> None:
    with scratch_url(pg_url, tmp_path) as url:
        # Parked by a hub process that died before its linker ran (no linker here either).
        with Store.open(url, deferred_log=False) as store, store.engine.connect() as conn:
            tx = UnitOfWork(conn, deferred_log=True)
            tx.log("in", LogFields("parked-1"), sha256_hex(b"x"), "rest")
            conn.begin()
            tx.flush_log()
            conn.commit()
        plain = runner.invoke(app, ["log", "verify", "--store-url", url])
        assert plain.exit_code == 0, plain.output
        assert "OK: 0 rows checked" in plain.output
        assert "1 newer rows not linked yet" in plain.output
        linked = runner.invoke(app, ["log", "verify", "--store-url", url, "--link"])
        assert linked.exit_code == 0, linked.output
        assert "linked 1 parked rows" in linked.output
        assert "OK: 1 rows checked" in linked.output
