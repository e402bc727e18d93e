"""The hash chain as plain functions (no database): hashing and verification."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hub.store import chain
from hub.store.chain import GENESIS, LogRow

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def build(n: int) -> list[LogRow]:
    rows: list[LogRow] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        fields = dict(
            seq=seq, at=T0 + timedelta(seconds=seq), direction="in" if seq % 2 else "out",
            message_id=f"m{seq}", type="vn.gov.dossier.submitted", source="VN:GOV:X:s",
            subject="D-1", peer="q", body_sha256="ab" * 32,
        )
        digest = chain.row_hash(prev, **fields)  # type: ignore[arg-type]
        rows.append(LogRow(**fields, prev_hash=prev, row_hash=digest))  # type: ignore[arg-type]
        prev = digest
    return rows


def head(rows: list[LogRow]) -> tuple[int, str]:
    return rows[-1].seq, rows[-1].row_hash


def kinds(report: chain.LogReport) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in report.problems]


def test_hash_depends_on_every_field_and_on_the_previous_hash() -> None:
    row = build(1)[0]
    base = chain.expected_hash(row)
    assert base == row.row_hash
    changes: dict[str, Any] = dict(
        seq=2, at=row.at + timedelta(microseconds=1), direction="out", message_id="x",
        type=None, source="other", subject="D-2", peer=None, body_sha256="cd" * 32,
        prev_hash="1" * 64,
    )
    for name, value in changes.items():
        assert chain.expected_hash(replace(row, **{name: value})) != base, name


def test_time_is_hashed_in_utc_whatever_the_zone_given() -> None:
    row = build(1)[0]
    hanoi = row.at.astimezone(timezone(timedelta(hours=7)))
    assert chain.expected_hash(replace(row, at=hanoi)) == row.row_hash
    with pytest.raises(ValueError, match="no time zone"):
        chain.expected_hash(replace(row, at=row.at.replace(tzinfo=None)))


def test_intact_chain_verifies() -> None:
    rows = build(5)
    seen: list[int] = []
    report = chain.verify(rows, head(rows), progress=seen.append, progress_every=2)
    assert report.ok and report.checked == 5 and report.problems == []
    assert seen == [2, 4, 5]
    assert chain.verify([], (0, GENESIS)).ok


def test_edited_deleted_inserted_and_truncated_rows_are_named() -> None:
    rows = build(6)
    edited = [*rows[:2], replace(rows[2], peer="elsewhere"), *rows[3:]]
    assert kinds(chain.verify(edited, head(rows))) == [(3, "edited")]

    deleted = rows[:2] + rows[4:]
    assert kinds(chain.verify(deleted, head(rows))) == [(5, "missing"), (5, "broken_link")]
    assert "seq 3..4 missing" in str(chain.verify(deleted, head(rows)).problems[0])

    assert kinds(chain.verify(rows[:4], head(rows))) == [(6, "truncated")]
    extra = replace(rows[0], seq=7)
    assert kinds(chain.verify([*rows, extra], head(rows))) == [
        (7, "broken_link"), (7, "edited"), (7, "beyond_head"),
    ]
    early = replace(rows[0], seq=0)
    assert kinds(chain.verify([early, *rows], head(rows))) == [
        (0, "unexpected"), (0, "edited"), (1, "broken_link"),
    ]
    assert kinds(chain.verify(rows, None)) == [(6, "head_missing")]
    assert kinds(chain.verify(rows, (6, "f" * 64))) == [(6, "head_mismatch")]
