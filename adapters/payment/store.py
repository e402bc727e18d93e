"""The payment ledger on SQLAlchemy (``adapters.payment.ledger.Ledger``), in the adapter's own
tables on the hub store's engine (SQLite or PostgreSQL), written through
``hub.adaptertables`` (one write transaction, the payment's row locked, per report):

- ``payment_transactions``: every payment the hub initiated, with its state;
- ``payment_settlements``: one row per (reference, gateway transaction id) with the exact event
  emitted for it, so a repeated report yields byte-identical messages that the hub's idempotent
  receivers absorb;
- ``payment_callbacks``: every callback whose checksum was valid (the gateway's), applied or
  parked, with the reason; never the body. A callback the hub cannot authenticate is refused
  before anything is written (a log line and a metric, see ``adapters.payment.callback``);
- ``payment_mismatches``: the gateway's reports the ledger could not apply, parked for an
  operator with the reason and the report's facts (``lienthong payment mismatches``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.payment.ledger import (
    PENDING,
    Mismatch,
    Parked,
    Report,
    Settled,
    Settlement,
    Transaction,
    judge,
    stepped,
)
from hub import adaptertables
from hub.adaptertables import utc, writing
from hub.envelope import Envelope
from hub.stateful import event_json, insert_once, record

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
    # pending | paid | failed | mismatch | refused (INIT refused: no payment at the gateway)
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
    # No longer written (always NULL): a caller's body is never kept for a refusal, and a
    # parked report keeps its facts in payment_mismatches. Left for databases made before.
    sa.Column("body", sa.Text),
    sa.Column("peer", sa.String(200)),
    sa.Index("ix_payment_callbacks_reference", "reference"),
)

mismatches = sa.Table(
    "payment_mismatches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(50)),
    sa.Column("transaction_id", sa.String(64)),
    sa.Column("source", sa.String(16), nullable=False),  # callback | query
    sa.Column("reason_code", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("field", sa.String(32)),
    # The payment's state before and after (NULL: no payment of the ledger has the reference).
    sa.Column("state_before", sa.String(16)),
    sa.Column("state_after", sa.String(16)),
    sa.Column("dossier_code", sa.String(64)),
    sa.Column("agency", sa.String(64)),
    sa.Column("expected", sa.Text, nullable=False),  # JSON: the ledger's facts
    sa.Column("reported", sa.Text, nullable=False),  # JSON: the gateway's message as received
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("peer", sa.String(200)),
    sa.Column("first_seen_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Column("times", sa.Integer, nullable=False),
    # The gateway resends what it was not thanked for: the same report is one row, counted.
    sa.UniqueConstraint("source", "body_sha256", name="uq_payment_mismatches_report"),
    sa.Index("ix_payment_mismatches_reference", "reference"),
    sa.Index("ix_payment_mismatches_last_seen", "last_seen_at"),
)


class SqlLedger:
    """``Ledger`` on ``engine`` (its tables created by ``hub.stateful.state_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _payment(self, conn: Connection, reference: str, *, lock: bool = False
                 ) -> Transaction | None:
        query = sa.select(transactions).where(transactions.c.reference == reference)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        return record(Transaction, row) if row is not None else None

    def _move(self, conn: Connection, reference: str, state: str, now: datetime) -> None:
        conn.execute(sa.update(transactions).where(transactions.c.reference == reference)
                     .values(status=state, updated_at=utc(now)))

    def add(self, payment: Transaction) -> Transaction:
        insert_once(self.engine, transactions, {**asdict(payment), "updated_at": utc(
            payment.created_at), "created_at": utc(payment.created_at)})
        found = self.get(payment.reference)
        assert found is not None  # written just now, or there before
        return found

    def get(self, reference: str) -> Transaction | None:
        with self.engine.connect() as conn:
            return self._payment(conn, reference)

    def initiated(self, reference: str, payment_url: str, event: Envelope, now: datetime) -> str:
        with writing(self.engine) as conn:
            conn.execute(
                sa.update(transactions)
                .where(transactions.c.reference == reference,
                       transactions.c.initiated_event.is_(None))
                .values(payment_url=payment_url, initiated_event=event_json(event),
                        updated_at=utc(now)))
            return str(conn.execute(sa.select(transactions.c.initiated_event)
                                    .where(transactions.c.reference == reference)).scalar_one())

    def step(self, reference: str, outcome: str, now: datetime) -> str | None:
        with writing(self.engine) as conn:
            payment = self._payment(conn, reference, lock=True)
            state = stepped(payment.status, outcome) if payment is not None else None
            if state is not None:
                self._move(conn, reference, state, now)
        return state

    def settle(self, report: Report, *, event: Envelope | None, currency: str, now: datetime,
               emitted: bool) -> Settled:
        with writing(self.engine) as conn:
            payment = self._payment(conn, report.reference, lock=True)
            if payment is None:
                raise LookupError(f"no payment {report.reference!r} in the ledger; park the "
                                  "report instead")
            row = conn.execute(sa.select(settlements).where(
                settlements.c.reference == report.reference,
                settlements.c.transaction_id == report.transaction_id)).mappings().first()
            verdict = judge(payment, record(Settlement, row) if row else None, report, event,
                            currency)
            if verdict.state != payment.status:
                self._move(conn, report.reference, verdict.state, now)
            if verdict.record is not None:
                body = event_json(verdict.record)
                conn.execute(sa.insert(settlements).values(
                    reference=report.reference, transaction_id=report.transaction_id,
                    paid=report.paid, event_id=verdict.record.id, event=body,
                    settled_by=report.source, settled_at=utc(now),
                    emitted_at=utc(now) if emitted else None))
                _note(conn, report, now, event_id=verdict.record.id)
                return Settled(body, verdict.state)
            if verdict.parked is not None:
                _park(conn, report, verdict.parked, now, payment=payment,
                      state_after=verdict.state, expected=verdict.expected)
                _note(conn, report, now, parked=verdict.parked)
                return Settled(None, verdict.state, verdict.parked)
            again = verdict.again
            _note(conn, report, now, event_id=again.event_id if again else None,
                  reason=verdict.note)
            return Settled(again.event if again else None, verdict.state, repeat=True)

    def park(self, report: Report, parked: Parked, now: datetime, *,
             expected: Mapping[str, Any]) -> None:
        for attempt in (1, 2):
            try:
                with writing(self.engine) as conn:
                    _park(conn, report, parked, now, payment=None, state_after=None,
                          expected=expected)
                    _note(conn, report, now, parked=parked)
                return
            except IntegrityError:
                # No payment row to lock: the same report, resent at once, may have been parked
                # between this one's look and its insert. Counted on the second go.
                if attempt == 2:
                    raise

    def pending(self, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
        query = (sa.select(transactions)
                 .where(transactions.c.partner == partner, transactions.c.status == PENDING,
                        transactions.c.created_at <= utc(cutoff))
                 .order_by(transactions.c.created_at).limit(limit))
        with self.engine.connect() as conn:
            return [record(Transaction, r) for r in conn.execute(query).mappings()]

    def checked(self, reference: str, now: datetime) -> None:
        with writing(self.engine) as conn:
            conn.execute(sa.update(transactions).where(transactions.c.reference == reference)
                         .values(checked_at=utc(now)))

    def unemitted(self, partner: str, limit: int) -> list[str]:
        mine = sa.select(transactions.c.reference).where(transactions.c.partner == partner)
        query = (sa.select(settlements.c.event)
                 .where(settlements.c.emitted_at.is_(None), settlements.c.reference.in_(mine))
                 .order_by(settlements.c.settled_at).limit(limit))
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(query).scalars()]

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        return adaptertables.mark_emitted(self.engine, settlements, event_ids, now)

    def parked_reports(self, *, reference: str | None = None,
                       limit: int = 100) -> list[Mismatch]:
        query = sa.select(mismatches)
        if reference is not None:
            query = query.where(mismatches.c.reference == reference)
        query = query.order_by(mismatches.c.last_seen_at.desc(), mismatches.c.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [record(Mismatch, {**r, "expected": json.loads(r["expected"]),
                                  "reported": json.loads(r["reported"])}) for r in rows]

    def callbacks(self, reference: str) -> Sequence[dict[str, Any]]:
        query = sa.select(callbacks).where(callbacks.c.reference == reference)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(callbacks.c.id)).mappings()]


def _park(conn: Connection, report: Report, parked: Parked, now: datetime, *,
          payment: Transaction | None, state_after: str | None,
          expected: Mapping[str, Any]) -> None:
    seen = conn.execute(
        sa.update(mismatches)
        .where(mismatches.c.source == report.source, mismatches.c.body_sha256 == report.digest)
        .values(last_seen_at=utc(now), times=mismatches.c.times + 1))
    if seen.rowcount:
        return
    conn.execute(sa.insert(mismatches).values(
        reference=report.reference[:50] or None,
        transaction_id=report.transaction_id[:64] or None,
        source=report.source, reason_code=parked.code, reason=parked.reason, field=parked.field,
        state_before=payment.status if payment else None, state_after=state_after,
        dossier_code=payment.dossier_code if payment else None,
        agency=payment.agency if payment else None,
        expected=json.dumps(dict(expected), ensure_ascii=False, default=str),
        reported=json.dumps(dict(report.facts), ensure_ascii=False, default=str),
        body_sha256=report.digest, peer=(report.peer or "")[:200] or None,
        first_seen_at=utc(now), last_seen_at=utc(now), times=1))


def _note(conn: Connection, report: Report, now: datetime, *, event_id: str | None = None,
          parked: Parked | None = None, reason: str | None = None) -> None:
    """A callback's report, whatever became of it (never its body)."""
    if report.source != "callback":
        return
    conn.execute(sa.insert(callbacks).values(
        received_at=utc(now), reference=report.reference[:50] or None,
        transaction_id=report.transaction_id[:64] or None, accepted=parked is None,
        reason_code=parked.code if parked else None,
        reason=parked.reason if parked else reason, event_id=event_id,
        body_sha256=report.digest, body=None, peer=(report.peer or "")[:200] or None))
