"""The payment ledger on SQLAlchemy (``ledger.Ledger``, a ``hub.reports.ReportStore``: one write
transaction per report, the payment's row locked); ``payment_settlements`` keeps the exact
event of each gateway transaction, re-emitted byte for byte."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from adapters.payment import ledger
from adapters.payment.ledger import Report, Settlement, Transaction
from hub.adaptertables import utc
from hub.calllog import call_log_table
from hub.envelope import Envelope
from hub.parked import parked_table
from hub.reports import ReportStore, Settled
from hub.statestore import event_columns, request_columns

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


class SqlLedger(ReportStore[Transaction, Settlement]):
    records = transactions
    record_type = Transaction
    events = settlements
    before_type = Settlement
    parked_reports_table = mismatches
    calls = callbacks
    transitions = ledger.TRANSITIONS

    def initiated(self, reference: str, payment_url: str, event: Envelope, now: datetime) -> str:
        return self.keep_first(transactions, transactions.c.reference == reference,
                               "initiated_event", event, now, payment_url=payment_url)

    def settle(self, report: Report, *, event: Envelope | None, currency: str, now: datetime,
               emitted: bool) -> Settled:
        return self.judged(report, lambda payment, before: ledger.judge(
            payment, before, report, event, currency), now, emitted=emitted, paid=report.paid)

    def pending(self, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
        return self.chosen(transactions.c.partner == partner,
                           transactions.c.status == ledger.PENDING,
                           transactions.c.created_at <= utc(cutoff), oldest=limit)

    def checked(self, reference: str, now: datetime) -> None:
        self.update(transactions, transactions.c.reference == reference, None,
                    checked_at=utc(now))

    def unemitted(self, partner: str, limit: int) -> list[str]:
        return self.unemitted_of(transactions.c.partner == partner, limit,
                                 settlements.c.settled_at)
