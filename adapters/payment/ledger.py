"""The payment ledger's rules, pure, and its port, ``Ledger`` (``adapters.payment.store``, or an
in-memory fake in unit tests): every state change follows ``TRANSITIONS``
(``mappings/payment/transitions.toml``); a report of the gateway is judged by ``judge``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hub import reports
from hub.envelope import Envelope
from hub.errors import InvalidMessage
from hub.parked import Parked as Parked
from hub.reports import Disagreement, ReportBook, ReportWords, Settled, Verdict
from hub.settings import PROJECT_ROOT
from hub.stateful import Requested
from hub.statestore import Records
from hub.transitions import IllegalTransition as IllegalTransition
from hub.transitions import Transition as Transition
from hub.transitions import Transitions

PENDING, PAID, FAILED, REFUSED, MISMATCH = "pending", "paid", "failed", "refused", "mismatch"
STATES = (PENDING, PAID, FAILED, MISMATCH, REFUSED)

# What can happen to a payment (the outcomes of transitions.toml).
REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH = PAID, FAILED, MISMATCH
INIT_REFUSED, INIT_RETRIED = "init-refused", "init-retried"
OUTCOMES = (REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH, INIT_REFUSED, INIT_RETRIED)
REPORTS = (REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH)

# Codes a parked report is answered and kept with.
CODE_UNKNOWN_REFERENCE = "client.unknown_reference"
CODE_UNKNOWN_PARTNER = "client.unknown_partner"


TRANSITIONS = Transitions.load(PROJECT_ROOT / "mappings" / "payment" / "transitions.toml",
                               "a payment")
transition, stepped = TRANSITIONS.step, TRANSITIONS.stepped
WORDS = ReportWords.load(PROJECT_ROOT / "mappings" / "payment" / "reports.toml")


@dataclass(frozen=True, kw_only=True)
class Transaction(Requested):
    reference: str
    partner: str
    amount: int
    status: str = PENDING
    payment_url: str | None = None
    initiated_event: str | None = None
    checked_at: datetime | None = None


def same_payment(found: Transaction, asked: Transaction) -> Transaction:
    """``found``, the payment recorded under ``asked``'s reference, unless it is another
    dossier's or amount's: the gateway would tie both to one payment."""
    if (found.dossier_code, found.amount) != (asked.dossier_code, asked.amount):
        raise InvalidMessage(
            f"reference {asked.reference!r} is already used by dossier {found.dossier_code} for "
            f"{found.amount} VND; every payment request needs its own reference",
            code="client.duplicate_reference", field="reference")
    return found


# -- the gateway's reports ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Report(reports.Report):
    """What the gateway says about one transaction of a payment (``reported``); ``outcome_field``:
    the field that says paid or failed (MaLoi, TrangThaiGD)."""

    paid: bool
    amount: int | None
    currency: str | None
    partner: str | None
    outcome_field: str


def reported(doc: Mapping[str, Any], *, paid: bool, digest: str, source: str,
             outcome_field: str, peer: str | None = None) -> Report:
    """The report a gateway's message makes, its facts read by reports.toml: a callback, whose
    contract requires every fact, or a QUERY reply, which may lack SoTien and MaTienTe."""
    return Report(**WORDS.said(doc), paid=paid, facts=doc, digest=digest, source=source,
                  outcome_field=outcome_field, peer=peer)


def disagreement(payment: Transaction, report: Report, currency: str) -> Disagreement | None:
    """The first fact of ``report`` that differs from ``payment`` (``currency``: the one its
    INIT asked for), by reports.toml [[facts]], or None. Pure."""
    return WORDS.disagreement(report, WORDS.expected(payment, currency=currency))


@dataclass(frozen=True)
class Settlement:
    """The event recorded for one transaction of a payment, and whether it said paid."""

    event_id: str
    event: str
    paid: bool


def judge(payment: Transaction, before: Settlement | None, report: Report,
          event: Envelope | None, currency: str) -> Verdict:
    """The verdict on ``report`` about ``payment`` (``before``: what was recorded for the same
    transaction; ``event``: the report's event, built by the caller when its facts agree;
    ``currency``: the one the INIT asked for), by the table of transitions. Pure."""
    expected = WORDS.expected(payment, currency=currency)
    problem = WORDS.disagreement(report, expected)
    said = REPORTED_PAID if report.paid else REPORTED_FAILED
    if before is not None and problem is None:
        if before.paid != report.paid:
            # One transaction reported first one way, now the other: its event went out under
            # an id derived from the transaction, so no second event can tell it.
            problem = Disagreement(
                report.outcome_field,
                f"transaction {report.transaction_id!r} of payment {report.reference} was "
                f"reported {'paid' if before.paid else 'failed'} before and is now reported "
                f"{said}")
        elif payment.status == PAID and not before.paid:
            # A resend of an attempt that failed before the payment was paid: true, known, and
            # published long ago; published again it would follow the payment.
            return Verdict(payment.status, note="a resend of an earlier failed attempt")
        else:
            return Verdict(payment.status, again=before)
    return WORDS.verdict(TRANSITIONS, payment, said, REPORTED_MISMATCH, event, expected, problem,
                         report.outcome_field, reference=payment.reference,
                         transaction=report.transaction_id, said=said)


class Ledger(Records[Transaction], ReportBook[Transaction], Protocol):
    """The payment adapter's state."""

    def initiated(self, reference: str, payment_url: str, event: Envelope, now: datetime) -> str:
        """Keep the payment URL and the ``initiated`` event (``StateStore.keep_first``)."""

    def settle(self, report: Report, *, event: Envelope | None, currency: str, now: datetime,
               emitted: bool) -> Settled:
        """Judge ``report`` (``judge``) and apply the verdict (``ReportStore.judged``);
        ``emitted``: the event is published by the caller's door (a callback)."""

    def pending(self, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
        """Payments initiated before ``cutoff`` and still pending, oldest first."""

    def checked(self, reference: str, now: datetime) -> None: ...

    def unemitted(self, partner: str, limit: int) -> list[str]:
        """Events of settlements whose publication was not confirmed yet."""
