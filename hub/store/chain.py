"""The message log's hash chain, as plain functions: how a row's hash is made and how a chain
is checked. No database here; ``hub.store.messagelog`` feeds rows in and out.

``row_hash = SHA-256(prev_hash || "\\n" || canonical(row))`` where ``canonical`` is compact JSON
of the row's fields in a fixed order, the seq included (so rows cannot be reordered or
renumbered) and the time as UTC with microseconds (what both databases give back exactly).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

GENESIS = "0" * 64  # prev_hash of the first row


@dataclass(frozen=True, slots=True)
class LogRow:
    """One message log row. No body: only its digest (the log holds no personal data)."""

    seq: int
    at: datetime
    direction: str
    message_id: str
    type: str | None
    source: str | None
    subject: str | None
    peer: str | None
    body_sha256: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True, slots=True)
class LogProblem:
    """What is wrong at one place in the chain. ``kind`` is one of: ``edited``, ``missing``,
    ``broken_link``, ``unexpected``, ``truncated``, ``beyond_head``, ``head_missing``,
    ``head_mismatch``."""

    seq: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.detail}"


@dataclass(frozen=True, slots=True)
class LogReport:
    ok: bool
    checked: int
    problems: list[LogProblem] = field(default_factory=list)
    head_seq: int | None = None
    head_hash: str | None = None
    pending: int = 0  # rows written but not linked into the chain yet (not checked)


def _time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"log time {at.isoformat()} has no time zone; pass an aware datetime")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    seq: int,
    at: datetime,
    direction: str,
    message_id: str,
    type: str | None,
    source: str | None,
    subject: str | None,
    peer: str | None,
    body_sha256: str,
) -> bytes:
    fields = [seq, _time(at), direction, message_id, type, source, subject, peer, body_sha256]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def row_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    direction: str,
    message_id: str,
    type: str | None,
    source: str | None,
    subject: str | None,
    peer: str | None,
    body_sha256: str,
) -> str:
    content = canonical(seq, at, direction, message_id, type, source, subject, peer, body_sha256)
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


def expected_hash(row: LogRow) -> str:
    return row_hash(
        row.prev_hash, row.seq, row.at, row.direction, row.message_id, row.type, row.source,
        row.subject, row.peer, row.body_sha256,
    )


def verify(
    rows: Iterable[LogRow],
    head: tuple[int, str] | None,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> LogReport:
    """Check rows given in seq order against each other and against the chain head
    ``(seq, row_hash)`` (None when the head row is gone). Every problem is reported, and the
    check goes on from the row as stored, so one tampered row yields one or two problems, not
    one per following row."""
    problems: list[LogProblem] = []
    expected_seq = 1
    prev_hash = GENESIS
    checked = 0
    for row in rows:
        checked += 1
        if row.seq < expected_seq:
            problems.append(LogProblem(
                row.seq, "unexpected",
                f"row before seq {expected_seq}, where the chain has none (inserted row)",
            ))
        elif row.seq > expected_seq:
            missing = (
                f"seq {expected_seq}" if row.seq == expected_seq + 1
                else f"seq {expected_seq}..{row.seq - 1}"
            )
            problems.append(LogProblem(
                row.seq, "missing", f"{missing} missing before this row (deleted rows)",
            ))
        if row.prev_hash != prev_hash:
            problems.append(LogProblem(
                row.seq, "broken_link",
                f"prev_hash {row.prev_hash[:12]}... is not the hash of the row before it "
                f"({prev_hash[:12]}...): a row before it was deleted, inserted or re-hashed",
            ))
        if expected_hash(row) != row.row_hash:
            problems.append(LogProblem(
                row.seq, "edited",
                "fields do not match row_hash (the row was edited after it was written)",
            ))
        expected_seq = max(expected_seq, row.seq + 1)
        prev_hash = row.row_hash
        if progress is not None and checked % progress_every == 0:
            progress(checked)
    if progress is not None:
        progress(checked)

    last_seq = expected_seq - 1
    if head is None:
        problems.append(LogProblem(
            last_seq, "head_missing",
            "the chain head row (log_head id 1) is missing; deleted rows at the end cannot be "
            "ruled out",
        ))
    else:
        head_seq, head_hash = head
        if head_seq > last_seq:
            problems.append(LogProblem(
                head_seq, "truncated",
                f"the chain head records seq {head_seq} but the log ends at seq {last_seq} "
                "(rows deleted from the end)",
            ))
        elif head_seq < last_seq:
            problems.append(LogProblem(
                head_seq + 1, "beyond_head",
                f"rows after the chain head (seq {head_seq}) up to seq {last_seq} (inserted rows)",
            ))
        elif head_hash != prev_hash:
            problems.append(LogProblem(
                head_seq, "head_mismatch",
                f"the chain head hash {head_hash[:12]}... differs from the last row's "
                f"{prev_hash[:12]}... (the last row was replaced)",
            ))
    return LogReport(
        ok=not problems,
        checked=checked,
        problems=problems,
        head_seq=head[0] if head else None,
        head_hash=head[1] if head else None,
    )
