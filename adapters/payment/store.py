"""The payment ledger on SQLAlchemy (``ledger.Ledger``), one write transaction per report with
the payment's row locked. Tables: ``payment_transactions`` (the payments), ``payment_settlements``
(the exact event of each gateway transaction, re-emitted byte for byte), ``payment_callbacks``
(``hub.calllog``), ``payment_mismatches`` (``hub.parked``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from adapters.payment.ledger import (
    PENDING,
    Report,
    Settled,
    Settlement,
    Transaction,
    judge,
    stepped,
)
from hub import parked as parking
from hub.adaptertables import utc, writing
from hub.calllog import call_log_table, note_call
from hub.envelope import Envelope
from hub.parked import Parked, ParkedReport, parked_table
from hub.stateful import event_json
from hub.statestore import StateStore, event_columns, request_columns

metadata = sa.MetaData()

transactions = sa.Table(
    "payment_transactions",
    metadata,
    sa.Column("reference", sa.String(50), primary_key=True),
    sa.Column("partner", sa.String(50), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    *request_columns(),
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
    *event_columns(source="settled_by", at="settled_at"),  # callback | query
    sa.Index("ix_payment_settlements_unemitted", "emitted_at"),
)

callbacks = call_log_table(metadata, "payment_callbacks")
mismatches = parked_table(metadata, "payment_mismatches")


class SqlLedger(StateStore):
    events = settlements

    def _payment(self, reference: str, conn: Connection | None = None) -> Transaction | None:
        query = sa.select(transactions).where(transactions.c.reference == reference)
        return self.first(Transaction, query.with_for_update() if conn else query, conn)

    def add(self, payment: Transaction) -> Transaction:
        return self.add_once(transactions, payment, lambda: self.get(payment.reference))

    def get(self, reference: str) -> Transaction | None:
        return self._payment(reference)

    def initiated(self, reference: str, payment_url: str, event: Envelope, now: datetime) -> str:
        with writing(self.engine) as conn:
            self.update(transactions, (transactions.c.reference == reference)
                        & transactions.c.initiated_event.is_(None), now, conn,
                        payment_url=payment_url, initiated_event=event_json(event))
            return str(conn.execute(sa.select(transactions.c.initiated_event)
                                    .where(transactions.c.reference == reference)).scalar_one())

    def step(self, reference: str, outcome: str, now: datetime) -> str | None:
        with writing(self.engine) as conn:
            payment = self._payment(reference, conn)
            state = stepped(payment.status, outcome) if payment is not None else None
            if state is not None:
                self.update(transactions, transactions.c.reference == reference, now, conn,
                            status=state)
        return state

    def settle(self, report: Report, *, event: Envelope | None, currency: str, now: datetime,
               emitted: bool) -> Settled:
        with writing(self.engine) as conn:
            payment = self._payment(report.reference, conn)
            if payment is None:
                raise LookupError(f"no payment {report.reference!r} in the ledger; park the "
                                  "report instead")
            before = self.first(Settlement, sa.select(settlements).where(
                settlements.c.reference == report.reference,
                settlements.c.transaction_id == report.transaction_id), conn)
            verdict = judge(payment, before, report, event, currency)
            if verdict.state != payment.status:
                self.update(transactions, transactions.c.reference == report.reference, now,
                            conn, status=verdict.state)
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
                _park(conn, report, verdict.parked, now, payment, verdict.state, verdict.expected)
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
                    _park(conn, report, parked, now, None, None, expected)
                return
            except IntegrityError:
                # No payment row to lock: the same report, resent at once, may have been parked
                # between this one's look and its insert. Counted on the second go.
                if attempt == 2:
                    raise

    def pending(self, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
        return self.rows(Transaction, sa.select(transactions).where(
            transactions.c.partner == partner, transactions.c.status == PENDING,
            transactions.c.created_at <= utc(cutoff))
            .order_by(transactions.c.created_at).limit(limit))

    def checked(self, reference: str, now: datetime) -> None:
        self.update(transactions, transactions.c.reference == reference, None,
                    checked_at=utc(now))

    def unemitted(self, partner: str, limit: int) -> list[str]:
        mine = sa.select(transactions.c.reference).where(transactions.c.partner == partner)
        return self.unemitted_events(settlements.c.reference.in_(mine), limit,
                                     settlements.c.settled_at)

    def parked_reports(self, *, reference: str | None = None,
                       limit: int = 100) -> list[ParkedReport]:
        return parking.parked_reports(self.engine, mismatches, reference=reference, limit=limit)


def _park(conn: Connection, report: Report, parked: Parked, now: datetime,
          payment: Transaction | None, state_after: str | None,
          expected: Mapping[str, Any]) -> None:
    parking.park(
        conn, mismatches, now, source=report.source, digest=report.digest, expected=expected,
        reported=report.facts, reference=report.reference[:50] or None,
        transaction_id=report.transaction_id[:64] or None, reason_code=parked.code,
        reason=parked.reason, field=parked.field, state_after=state_after,
        state_before=payment.status if payment else None,
        dossier_code=payment.dossier_code if payment else None,
        agency=payment.agency if payment else None, peer=(report.peer or "")[:200] or None)
    _note(conn, report, now, parked=parked)


def _note(conn: Connection, report: Report, now: datetime, *, event_id: str | None = None,
          parked: Parked | None = None, reason: str | None = None) -> None:
    if report.source == "callback":  # a QUERY reply answers the hub's own call: not logged
        note_call(conn, callbacks, now, reference=report.reference,
                  transaction_id=report.transaction_id, digest=report.digest, peer=report.peer,
                  event_id=event_id, parked=parked, reason=reason)
