"""What the operator console reads and writes: the dead letters mirrored from the broker's
terminal queues, and the audit trail of operators' actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, select, update

from hub.store.conflict import insert_ignore
from hub.store.tables import DEAD_LETTER_STATES, audit, dead_letters


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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def _check_state(state: str) -> str:
    if state not in DEAD_LETTER_STATES:
        raise ValueError(
            f"dead letter state must be one of {', '.join(DEAD_LETTER_STATES)}, got {state!r}"
        )
    return state


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
) -> int | None:
    """Mirror one parked message; None when this parking (message id, queue, parked_at) is
    already mirrored."""
    result = conn.execute(
        insert_ignore(conn, dead_letters, ["message_id", "queue", "parked_at"])
        .returning(dead_letters.c.id),
        {
            "message_id": message_id, "queue": queue, "reason_code": reason_code,
            "reason": reason, "source": source, "destination": destination, "type": type,
            "agency": agency, "attempts": attempts, "headers": dict(headers or {}),
            "body": bytes(body), "parked_at": parked_at, "state": _check_state(state),
            "updated_at": datetime.now(UTC),
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


def _dead_letter(r: RowMapping) -> DeadLetter:
    return DeadLetter(**{**r, "id": int(r["id"]), "body": bytes(r["body"]),
                         "headers": dict(r["headers"])})


def get_dead_letter(conn: Connection, dead_letter_id: int) -> DeadLetter | None:
    row = conn.execute(
        select(dead_letters).where(dead_letters.c.id == dead_letter_id)
    ).mappings().one_or_none()
    return None if row is None else _dead_letter(row)


def list_dead_letters(
    conn: Connection,
    *,
    state: str | None = None,
    reason_code: str | None = None,
    source: str | None = None,
    destination: str | None = None,
    type: str | None = None,
    agency: str | None = None,
    parked_after: datetime | None = None,
    parked_before: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DeadLetter]:
    """Newest first, filtered by whichever arguments are given."""
    query = select(dead_letters)
    equal = {"state": state, "reason_code": reason_code, "source": source,
             "destination": destination, "type": type, "agency": agency}
    for name, value in equal.items():
        if value is not None:
            query = query.where(dead_letters.c[name] == value)
    if parked_after is not None:
        query = query.where(dead_letters.c.parked_at >= parked_after)
    if parked_before is not None:
        query = query.where(dead_letters.c.parked_at < parked_before)
    query = query.order_by(dead_letters.c.parked_at.desc(), dead_letters.c.id.desc())
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return [_dead_letter(r) for r in rows]


def add_audit(
    conn: Connection,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    result = conn.execute(
        audit.insert().returning(audit.c.id),
        {"at": at or datetime.now(UTC), "actor": actor, "action": action, "target": target,
         "detail": dict(detail or {})},
    )
    return int(result.scalar_one())


def list_audit(
    conn: Connection,
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first."""
    query = select(audit)
    for name, value in {"target": target, "actor": actor, "action": action}.items():
        if value is not None:
            query = query.where(audit.c[name] == value)
    rows = conn.execute(query.order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit))
    return [
        AuditEntry(id=int(r["id"]), at=r["at"], actor=r["actor"], action=r["action"],
                   target=r["target"], detail=dict(r["detail"]))
        for r in rows.mappings()
    ]
