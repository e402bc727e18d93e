"""The payment adapter's own tables, on the hub store's engine (SQLite or PostgreSQL):

- ``payment_transactions``: every payment the hub initiated, with its state (pending, paid,
  failed), so a callback can be tied to its dossier and reconciliation knows what is pending;
- ``payment_settlements``: one row per (reference, gateway transaction id) with the exact
  event emitted for it, so a repeated report of the same payment yields byte-identical
  messages that the hub's idempotent receivers absorb;
- ``payment_callbacks``: every callback received, accepted or refused, with the reason.

Created and written through ``hub.adaptertables``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hub import adaptertables
from hub.adaptertables import aware, utc, writing
from hub.envelope import Envelope
from hub.errors import InvalidMessage

metadata = sa.MetaData()

transactions = sa.Table(
    "payment_transactions",
    metadata,
    sa.Column("reference", sa.String(50), primary_key=True),
    sa.Column("partner", sa.String(50), nullable=False),
    sa.Column("dossier_code", sa.String(64), nullable=False),
    sa.Column("agency", sa.String(64)),
    sa.Column("procedure", sa.String(100)),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("correlation_id", sa.String(64)),
    # pending | paid | failed | refused (INIT refused: no payment exists at the gateway)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payment_url", sa.Text),
    sa.Column("initiated_event", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("checked_at", sa.DateTime),
    sa.Index("ix_payment_transactions_status_created", "status", "created_at"),
)

settlements = sa.Table(
    "payment_settlements",
    metadata,
    sa.Column("reference", sa.String(50), primary_key=True),
    sa.Column("transaction_id", sa.String(64), primary_key=True),
    sa.Column("paid", sa.Boolean, nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("settled_by", sa.String(16), nullable=False),  # callback | query
    sa.Column("settled_at", sa.DateTime, nullable=False),
    sa.Column("emitted_at", sa.DateTime),
    sa.Index("ix_payment_settlements_unemitted", "emitted_at"),
)

callbacks = sa.Table(
    "payment_callbacks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("reference", sa.String(50)),
    sa.Column("transaction_id", sa.String(64)),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("event_id", sa.String(36)),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("body", sa.Text),  # kept for refused callbacks only: what was refused
    sa.Column("peer", sa.String(200)),
    sa.Index("ix_payment_callbacks_reference", "reference"),
)

MAX_STORED_BODY = 65_536

PENDING, PAID, FAILED, REFUSED = "pending", "paid", "failed", "refused"


def ensure_schema(engine: Engine, meta: sa.MetaData = metadata) -> None:
    adaptertables.ensure_schema(engine, meta)


@dataclass(frozen=True)
class Transaction:
    reference: str
    partner: str
    dossier_code: str
    agency: str | None
    procedure: str | None
    amount: int
    request_id: str
    correlation_id: str | None
    status: str
    payment_url: str | None
    initiated_event: str | None
    created_at: datetime
    checked_at: datetime | None


def _transaction(row: sa.Row[Any]) -> Transaction:
    m = row._mapping
    return Transaction(
        reference=m["reference"],
        partner=m["partner"],
        dossier_code=m["dossier_code"],
        agency=m["agency"],
        procedure=m["procedure"],
        amount=int(m["amount"]),
        request_id=m["request_id"],
        correlation_id=m["correlation_id"],
        status=m["status"],
        payment_url=m["payment_url"],
        initiated_event=m["initiated_event"],
        created_at=aware(m["created_at"]) or datetime.now(UTC),
        checked_at=aware(m["checked_at"]),
    )


def get(engine: Engine, reference: str) -> Transaction | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(transactions).where(transactions.c.reference == reference)
        ).first()
    return _transaction(row) if row is not None else None


def open_transaction(
    engine: Engine,
    *,
    reference: str,
    partner: str,
    dossier_code: str,
    agency: str | None,
    procedure: str | None,
    amount: int,
    request_id: str,
    correlation_id: str | None,
    now: datetime,
) -> Transaction:
    """Record a payment about to be initiated, or return the one already recorded under this
    reference (a redelivered request). A reference reused for another dossier or amount is
    refused: the gateway would tie both to one payment."""
    values = {
        "reference": reference,
        "partner": partner,
        "dossier_code": dossier_code,
        "agency": agency,
        "procedure": procedure,
        "amount": amount,
        "request_id": request_id,
        "correlation_id": correlation_id,
        "status": PENDING,
        "created_at": utc(now),
        "updated_at": utc(now),
    }
    try:
        with writing(engine) as conn:
            conn.execute(sa.insert(transactions).values(**values))
    except IntegrityError:
        pass
    found = get(engine, reference)
    if found is None:  # pragma: no cover - the row was just written or already there
        raise RuntimeError(f"payment transaction {reference} vanished after insert")
    if found.dossier_code != dossier_code or found.amount != amount:
        raise InvalidMessage(
            f"reference {reference!r} is already used by dossier {found.dossier_code} for "
            f"{found.amount} VND; every payment request needs its own reference",
            code="client.duplicate_reference",
            field="reference",
        )
    return found


def set_initiated(
    engine: Engine, reference: str, payment_url: str, event: Envelope, now: datetime
) -> str:
    """Keep the payment URL and the exact ``initiated`` event; first writer wins. Returns the
    stored event's JSON (re-emitted verbatim on a redelivery)."""
    with writing(engine) as conn:
        conn.execute(
            sa.update(transactions)
            .where(transactions.c.reference == reference, transactions.c.initiated_event.is_(None))
            .values(
                payment_url=payment_url,
                initiated_event=json.dumps(event.to_dict(), ensure_ascii=False, default=str),
                updated_at=utc(now),
            )
        )
        stored = conn.execute(
            sa.select(transactions.c.initiated_event).where(transactions.c.reference == reference)
        ).scalar_one()
    return str(stored)


def settle(
    engine: Engine,
    *,
    reference: str,
    transaction_id: str,
    paid: bool,
    event: Envelope,
    settled_by: str,
    now: datetime,
    emitted: bool,
) -> str:
    """Record the outcome of one gateway transaction with the event that reports it, or
    return the event already recorded for it. Also moves the payment to paid or failed (a
    paid payment never goes back)."""
    body = json.dumps(event.to_dict(), ensure_ascii=False, default=str)
    try:
        with writing(engine) as conn:
            conn.execute(
                sa.insert(settlements).values(
                    reference=reference,
                    transaction_id=transaction_id,
                    paid=paid,
                    event_id=event.id,
                    event=body,
                    settled_by=settled_by,
                    settled_at=utc(now),
                    emitted_at=utc(now) if emitted else None,
                )
            )
            conn.execute(
                sa.update(transactions)
                .where(transactions.c.reference == reference, transactions.c.status != PAID)
                .values(status=PAID if paid else FAILED, updated_at=utc(now))
            )
    except IntegrityError:
        pass
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(settlements.c.event).where(
                settlements.c.reference == reference,
                settlements.c.transaction_id == transaction_id,
            )
        ).scalar_one()
    return str(stored)


def pending_before(engine: Engine, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
    """Payments of ``partner`` initiated before ``cutoff`` and still pending, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(transactions)
            .where(
                transactions.c.partner == partner,
                transactions.c.status == PENDING,
                transactions.c.created_at <= utc(cutoff),
            )
            .order_by(transactions.c.created_at)
            .limit(limit)
        ).all()
    return [_transaction(r) for r in rows]


def set_status(engine: Engine, reference: str, status: str, now: datetime, *, only_if: str) -> bool:
    """Move a payment from ``only_if`` to ``status``; False when it was in another state."""
    with writing(engine) as conn:
        result = conn.execute(
            sa.update(transactions)
            .where(transactions.c.reference == reference, transactions.c.status == only_if)
            .values(status=status, updated_at=utc(now))
        )
    return bool(result.rowcount)


def mark_checked(engine: Engine, reference: str, now: datetime) -> None:
    with writing(engine) as conn:
        conn.execute(
            sa.update(transactions)
            .where(transactions.c.reference == reference)
            .values(checked_at=utc(now))
        )


def unemitted(engine: Engine, partner: str, limit: int) -> list[str]:
    """Events of ``partner``'s settlements found by reconciliation and not yet confirmed
    published."""
    mine = sa.select(transactions.c.reference).where(transactions.c.partner == partner)
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(settlements.c.event)
                .where(settlements.c.emitted_at.is_(None), settlements.c.reference.in_(mine))
                .order_by(settlements.c.settled_at)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    return [str(r) for r in rows]


def mark_emitted(engine: Engine, event_ids: Iterable[str], now: datetime) -> int:
    return adaptertables.mark_emitted(engine, settlements, event_ids, now)


def record_callback(
    engine: Engine,
    *,
    body: bytes,
    body_sha256: str,
    reference: str | None,
    transaction_id: str | None,
    accepted: bool,
    reason_code: str | None,
    reason: str | None,
    event_id: str | None,
    peer: str | None,
    now: datetime,
) -> None:
    text = None if accepted else body[:MAX_STORED_BODY].decode("utf-8", errors="replace")
    with writing(engine) as conn:
        conn.execute(
            sa.insert(callbacks).values(
                received_at=utc(now),
                reference=(reference or "")[:50] or None,
                transaction_id=(transaction_id or "")[:64] or None,
                accepted=accepted,
                reason_code=reason_code,
                reason=reason,
                event_id=event_id,
                body_sha256=body_sha256,
                body=text,
                peer=(peer or "")[:200] or None,
            )
        )


def callbacks_for(engine: Engine, reference: str) -> Sequence[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(callbacks).where(callbacks.c.reference == reference).order_by(callbacks.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]
