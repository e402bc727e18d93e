"""What the operator console reads and writes: the dead letters mirrored from the broker's
terminal queues (hub.console.keeper), and the audit trail of operators' actions.

The audit trail is append-only (triggers refuse UPDATE and DELETE, migration 0005) and
hash-chained: each row's ``row_hash`` is the SHA-256 of the previous row's hash and the row's
canonical JSON, so a changed, removed or inserted row breaks the chain at that point
(``verify_audit``). Appends are serialised (SQLite: one writer; PostgreSQL: a transaction
advisory lock), so the chain has one order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, Select, func, select, text, update

from hub.store.conflict import insert_ignore
from hub.store.tables import DEAD_LETTER_STATES, audit, dead_letters

GENESIS = "0" * 64
# Any constant: the advisory lock that serialises audit appends on PostgreSQL.
_AUDIT_LOCK = 0x6C74_6175


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    message_id: str
    queue: str
    reason_code: str
    reason: str
    source: str | None
    destination: str | None
    type: str | None
    agency: str | None
    attempts: int
    headers: dict[str, Any]
    body: bytes
    parked_at: datetime
    state: str
    updated_at: datetime
    digest: str | None = None
    kind: str | None = None
    dossier_code: str | None = None
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None
    history: list[dict[str, Any]] | None = None
    replay_of: int | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    why: str | None = None
    prev_hash: str | None = None
    row_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor,
                "action": self.action, "target": self.target, "why": self.why,
                "detail": self.detail, "prev_hash": self.prev_hash, "row_hash": self.row_hash}


@dataclass(frozen=True, slots=True)
class AuditReport:
    checked: int
    ok: bool
    problem: str | None = None  # the first break: which row, and what is wrong with it


def _check_state(state: str) -> str:
    if state not in DEAD_LETTER_STATES:
        raise ValueError(
            f"dead letter state must be one of {', '.join(DEAD_LETTER_STATES)}, got {state!r}"
        )
    return state


def digest_of(body: bytes, headers: Mapping[str, Any], queue: str = "") -> str:
    """What makes two copies of a parked message the same: its bytes, its headers and its
    queue. A redelivery has them all; a message parked again after a replay has new headers."""
    canon = json.dumps(headers, sort_keys=True, separators=(",", ":"), default=str)
    h = hashlib.sha256(bytes(body))
    h.update(b"\0" + canon.encode() + b"\0" + queue.encode())
    return h.hexdigest()


def add_dead_letter(
    conn: Connection,
    *,
    message_id: str,
    queue: str,
    reason_code: str,
    reason: str,
    body: bytes,
    parked_at: datetime,
    attempts: int = 0,
    headers: Mapping[str, Any] | None = None,
    source: str | None = None,
    destination: str | None = None,
    type: str | None = None,
    agency: str | None = None,
    state: str = "parked",
    digest: str | None = None,
    kind: str | None = None,
    dossier_code: str | None = None,
    first_failure_at: datetime | None = None,
    last_failure_at: datetime | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    replay_of: int | None = None,
) -> int | None:
    """Mirror one parked message; None when this copy (message id and digest) is already
    mirrored."""
    headers = dict(headers or {})
    if digest is None:
        digest = digest_of(body, {**headers, "_parked_at": parked_at.isoformat()}, queue)
    result = conn.execute(
        insert_ignore(conn, dead_letters, ["message_id", "digest"])
        .returning(dead_letters.c.id),
        {
            "message_id": message_id, "queue": queue, "reason_code": reason_code,
            "reason": reason, "source": source, "destination": destination, "type": type,
            "agency": agency, "attempts": attempts, "headers": headers,
            "body": bytes(body), "parked_at": parked_at, "state": _check_state(state),
            "updated_at": datetime.now(UTC), "digest": digest, "kind": kind,
            "dossier_code": dossier_code, "first_failure_at": first_failure_at,
            "last_failure_at": last_failure_at,
            "history": [dict(e) for e in history] if history is not None else None,
            "replay_of": replay_of,
        },
    )
    found = result.scalar_one_or_none()
    return None if found is None else int(found)


def set_dead_letter_state(conn: Connection, dead_letter_id: int, state: str) -> bool:
    result = conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id)
        .values(state=_check_state(state), updated_at=datetime.now(UTC))
    )
    return bool(result.rowcount)


def resolve_dead_letter(
    conn: Connection, dead_letter_id: int, state: str, *, by: str,
    resolution: Mapping[str, Any], from_state: str = "parked",
) -> bool:
    """Move a dead letter from ``from_state`` to ``state``, saying who did it and how. False
    when it is not (or no longer) in ``from_state``: two operators, or one clicking twice,
    resolve it once."""
    now = datetime.now(UTC)
    result = conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == dead_letter_id, dead_letters.c.state == from_state)
        .values(state=_check_state(state), updated_at=now, resolved_by=by, resolved_at=now,
                resolution=dict(resolution))
    )
    return bool(result.rowcount)


def _dead_letter(r: RowMapping) -> DeadLetter:
    fields = dict(r)
    fields["id"] = int(r["id"])
    fields["body"] = bytes(r["body"])
    fields["headers"] = dict(r["headers"])
    return DeadLetter(**fields)


def get_dead_letter(conn: Connection, dead_letter_id: int) -> DeadLetter | None:
    row = conn.execute(
        select(dead_letters).where(dead_letters.c.id == dead_letter_id)
    ).mappings().one_or_none()
    return None if row is None else _dead_letter(row)


def latest_of_message(conn: Connection, message_id: str) -> int | None:
    """The newest dead letter of a message id: what a copy parked again after a replay that
    carried no lt-replay-of is linked to."""
    found = conn.execute(
        select(dead_letters.c.id).where(dead_letters.c.message_id == message_id)
        .order_by(dead_letters.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    return None if found is None else int(found)


FILTERS = ("state", "reason_code", "kind", "source", "destination", "type", "agency",
           "dossier_code", "queue")


def _filtered(query: Select[Any], filters: Mapping[str, Any]) -> Select[Any]:
    for name in FILTERS:
        value = filters.get(name)
        if value is not None:
            query = query.where(dead_letters.c[name] == value)
    if filters.get("ids") is not None:
        query = query.where(dead_letters.c.id.in_(list(filters["ids"])))
    if filters.get("parked_after") is not None:
        query = query.where(dead_letters.c.parked_at >= filters["parked_after"])
    if filters.get("parked_before") is not None:
        query = query.where(dead_letters.c.parked_at < filters["parked_before"])
    return query


def list_dead_letters(
    conn: Connection, *, limit: int = 100, offset: int = 0, **filters: Any
) -> list[DeadLetter]:
    """Newest first, filtered by whichever of ``FILTERS`` (equal), ``ids``, ``parked_after``
    and ``parked_before`` are given."""
    unknown = set(filters) - {*FILTERS, "ids", "parked_after", "parked_before"}
    if unknown:
        raise TypeError(f"unknown dead letter filter(s): {', '.join(sorted(unknown))}")
    query = _filtered(select(dead_letters), filters)
    query = query.order_by(dead_letters.c.parked_at.desc(), dead_letters.c.id.desc())
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return [_dead_letter(r) for r in rows]


def count_dead_letters(conn: Connection, **filters: Any) -> int:
    query = _filtered(cast(Select[Any], select(func.count()).select_from(dead_letters)),
                      filters)
    return int(conn.execute(query).scalar_one())


def counts_by_kind(conn: Connection, **filters: Any) -> dict[str, int]:
    """How many dead letters match ``filters``, per kind (reason)."""
    kind = func.coalesce(dead_letters.c.kind, dead_letters.c.reason_code)
    query = _filtered(cast(Select[Any], select(kind, func.count()).select_from(dead_letters)),
                      filters)
    return {str(k): int(n) for k, n in conn.execute(query.group_by(kind))}


# -- the audit trail ------------------------------------------------------------------------------

def _audit_hash(prev: str, at: datetime, actor: str, action: str, target: str,
                detail: Mapping[str, Any], why: str | None) -> str:
    doc = {"at": at.astimezone(UTC).isoformat(), "actor": actor, "action": action,
           "target": target, "detail": detail, "why": why}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       default=str)
    return hashlib.sha256((prev + "\n" + canon).encode()).hexdigest()


def add_audit(
    conn: Connection,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    why: str | None = None,
) -> int:
    """Append one entry to the chain (in the caller's transaction: the action and its audit
    entry commit together)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
    prev = conn.execute(
        select(audit.c.row_hash).order_by(audit.c.id.desc()).limit(1)
    ).scalar_one_or_none() or GENESIS
    # Microseconds are kept by both dialects; the hash is over what is read back.
    when = (at or datetime.now(UTC)).astimezone(UTC)
    body = json.loads(json.dumps(dict(detail or {}), default=str))
    row_hash = _audit_hash(prev, when, actor, action, target, body, why)
    result = conn.execute(
        audit.insert().returning(audit.c.id),
        {"at": when, "actor": actor, "action": action, "target": target, "detail": body,
         "why": why, "prev_hash": prev, "row_hash": row_hash},
    )
    return int(result.scalar_one())


def _entry(r: RowMapping) -> AuditEntry:
    return AuditEntry(id=int(r["id"]), at=r["at"], actor=r["actor"], action=r["action"],
                      target=r["target"], detail=dict(r["detail"]), why=r["why"],
                      prev_hash=r["prev_hash"], row_hash=r["row_hash"])


def list_audit(
    conn: Connection,
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Newest first."""
    query = select(audit)
    for name, value in {"target": target, "actor": actor, "action": action}.items():
        if value is not None:
            query = query.where(audit.c[name] == value)
    rows = conn.execute(query.order_by(audit.c.id.desc()).limit(limit).offset(offset))
    return [_entry(r) for r in rows.mappings()]


def iter_audit(conn: Connection, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every entry, oldest first (the chain's order)."""
    last = 0
    while True:
        rows = conn.execute(select(audit).where(audit.c.id > last)
                            .order_by(audit.c.id).limit(batch)).mappings().all()
        if not rows:
            return
        for r in rows:
            yield _entry(r)
        last = int(rows[-1]["id"])


def verify_audit(conn: Connection) -> AuditReport:
    prev = GENESIS
    checked = 0
    for e in iter_audit(conn):
        if e.prev_hash != prev:
            return AuditReport(checked, False,
                               f"entry {e.id} follows {e.prev_hash!r}, but the entry before it "
                               f"hashes to {prev!r}: an entry was removed or inserted")
        expected = _audit_hash(prev, e.at, e.actor, e.action, e.target, e.detail, e.why)
        if e.row_hash != expected:
            return AuditReport(checked, False,
                               f"entry {e.id} does not hash to its row_hash: it was changed")
        prev = e.row_hash
        checked += 1
    return AuditReport(checked, True)
