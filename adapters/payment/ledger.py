"""The payment adapter's own tables, on the hub store's engine (SQLite or PostgreSQL):

- ``payment_transactions``: every payment the hub initiated, with its state, so a report of the
  gateway (callback or QUERY reply) can be tied to its dossier and checked against what was
  asked, and reconciliation knows what is pending;
- ``payment_settlements``: one row per (reference, gateway transaction id) with the exact
  event emitted for it, so a repeated report of the same payment yields byte-identical
  messages that the hub's idempotent receivers absorb;
- ``payment_callbacks``: every callback whose checksum was valid (the gateway's), applied or
  parked, with the reason; never the body. A callback the hub cannot authenticate is refused
  before anything is written (a log line and a metric, see ``adapters.payment.callback``);
- ``payment_mismatches``: the gateway's reports the ledger could not apply (amount, currency,
  partner or reference other than the ledger's, a second payment of a paid reference, a report
  about a payment the gateway refused), parked for an operator with the reason and the report's
  facts (``lienthong payment mismatches``).

State changes follow one table, ``TRANSITIONS``; ``transition`` is its pure reading and every
write of a state goes through it.

Created and written through ``hub.adaptertables``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
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

PENDING, PAID, FAILED, REFUSED, MISMATCH = "pending", "paid", "failed", "refused", "mismatch"
STATES = (PENDING, PAID, FAILED, MISMATCH, REFUSED)

# What can happen to a payment: the gateway reports a transaction paid or failed with facts
# that agree with the ledger, or with facts that do not (MISMATCH); the gateway refuses the INIT,
# or an operator replays a refused request.
REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH = PAID, FAILED, MISMATCH
INIT_REFUSED, INIT_RETRIED = "init-refused", "init-retried"
OUTCOMES = (REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH, INIT_REFUSED, INIT_RETRIED)
REPORTS = (REPORTED_PAID, REPORTED_FAILED, REPORTED_MISMATCH)

# Codes a parked report is answered and kept with.
CODE_MISMATCH = "client.payment_mismatch"
CODE_ALREADY_PAID = "client.already_paid"
CODE_REFUSED = "client.payment_refused"
CODE_UNKNOWN_REFERENCE = "client.unknown_reference"
CODE_UNKNOWN_PARTNER = "client.unknown_partner"


@dataclass(frozen=True)
class Transition:
    """Where an outcome takes a payment: its next state, whether the report's
    ``vn.gov.payment.completed`` is published, and, when the report is not applied, the code it
    is parked with for an operator."""

    to: str
    publish: bool = False
    park: str | None = None


TRANSITIONS: Mapping[tuple[str, str], Transition] = {
    (PENDING, REPORTED_PAID): Transition(PAID, publish=True),
    (PENDING, REPORTED_FAILED): Transition(FAILED, publish=True),
    (PENDING, REPORTED_MISMATCH): Transition(MISMATCH, park=CODE_MISMATCH),
    (PENDING, INIT_REFUSED): Transition(REFUSED),
    # A failed attempt leaves the citizen free to pay again: a later success (another
    # MaGiaoDich) pays, and the portal hears of both, in that order.
    (FAILED, REPORTED_PAID): Transition(PAID, publish=True),
    (FAILED, REPORTED_FAILED): Transition(FAILED, publish=True),
    (FAILED, REPORTED_MISMATCH): Transition(MISMATCH, park=CODE_MISMATCH),
    # The parked report stays with the operator; a later one that agrees with the ledger is a
    # payment as asked for (the citizen paid again, correctly) and settles it as usual. A failed
    # attempt is published (it is true) but leaves the payment marked for the operator.
    (MISMATCH, REPORTED_PAID): Transition(PAID, publish=True),
    (MISMATCH, REPORTED_FAILED): Transition(MISMATCH, publish=True),
    (MISMATCH, REPORTED_MISMATCH): Transition(MISMATCH, park=CODE_MISMATCH),
    # Paid is final: nothing the gateway says afterwards is published. A second success is a
    # second charge (a refund is an operator's call), a late failure would contradict the
    # payment the portal was told of.
    (PAID, REPORTED_PAID): Transition(PAID, park=CODE_ALREADY_PAID),
    (PAID, REPORTED_FAILED): Transition(PAID, park=CODE_ALREADY_PAID),
    (PAID, REPORTED_MISMATCH): Transition(PAID, park=CODE_MISMATCH),
    # The gateway refused the INIT, so it holds no payment under this reference: a report of one
    # contradicts its own answer.
    (REFUSED, REPORTED_PAID): Transition(REFUSED, park=CODE_REFUSED),
    (REFUSED, REPORTED_FAILED): Transition(REFUSED, park=CODE_REFUSED),
    (REFUSED, REPORTED_MISMATCH): Transition(REFUSED, park=CODE_REFUSED),
    (REFUSED, INIT_RETRIED): Transition(PENDING),
}


class IllegalTransition(ValueError):
    """An outcome the table has no entry for in the payment's state (a worker bug: reports are
    defined in every state)."""


def transition(state: str, outcome: str) -> Transition:
    """The table's entry for ``outcome`` in ``state``."""
    try:
        return TRANSITIONS[(state, outcome)]
    except KeyError:
        raise IllegalTransition(
            f"a payment in state {state!r} cannot take outcome {outcome!r}; allowed from "
            f"{state!r}: {sorted(o for s, o in TRANSITIONS if s == state) or 'nothing'}"
        ) from None


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


# -- the gateway's reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What the gateway says about one transaction of a payment, from a callback whose checksum
    matched or from a QUERY reply. ``amount``, ``currency``, ``partner``: None when the message
    does not carry the fact (a QUERY reply has no currency). ``facts``: the message as
    received, kept when the report is parked. ``outcome_field``: the field that says paid or
    failed (MaLoi, TrangThaiGD)."""

    reference: str
    transaction_id: str
    paid: bool
    amount: int | None
    currency: str | None
    partner: str | None
    facts: Mapping[str, Any]
    digest: str
    source: str  # callback | query
    outcome_field: str
    peer: str | None = None


@dataclass(frozen=True)
class Disagreement:
    """A fact of a report that is not the ledger's: the gateway's field and what differs."""

    field: str
    message: str


def disagreement(payment: Transaction, report: Report, currency: str) -> Disagreement | None:
    """The first fact of ``report`` that differs from ``payment`` (``currency``: the one its
    INIT asked for), or None. Pure."""
    if report.reference != payment.reference:
        return Disagreement("MaThamChieu", f"the gateway reports reference {report.reference!r:.60}"
                            f" for payment {payment.reference!r}")
    if report.partner is not None and report.partner != payment.partner:
        return Disagreement("MaDoiTac", f"the gateway reports partner {report.partner!r:.60}; "
                            f"payment {payment.reference} was initiated by {payment.partner!r}")
    if report.amount is not None and report.amount != payment.amount:
        return Disagreement("SoTien", f"the gateway reports {report.amount} for payment "
                            f"{payment.reference}; the hub asked for {payment.amount} {currency}")
    if report.currency is not None and report.currency != currency:
        return Disagreement("MaTienTe", f"the gateway reports the currency {report.currency!r:.20}"
                            f" for payment {payment.reference}; the hub asked for {currency!r}")
    return None


@dataclass(frozen=True)
class Parked:
    code: str
    reason: str
    field: str | None


@dataclass(frozen=True)
class Settled:
    """What became of a report: ``event`` (JSON) to publish, or None; the payment's state
    after; ``parked`` when the report was not applied and is kept for an operator;
    ``repeat`` when it is a report already applied (its stored event is returned again)."""

    event: str | None
    state: str
    parked: Parked | None = None
    repeat: bool = False


def _expected(payment: Transaction, currency: str) -> dict[str, Any]:
    return {"reference": payment.reference, "partner": payment.partner,
            "amount": payment.amount, "currency": currency, "status": payment.status,
            "dossier_code": payment.dossier_code}


def settle(
    engine: Engine,
    report: Report,
    *,
    event: Envelope | None,
    currency: str,
    now: datetime,
    emitted: bool,
) -> Settled:
    """Apply ``report`` to its payment by the table of transitions, in one transaction: record
    the event that reports it (``event``, built from the report by the caller) and move the
    payment, or park the report for an operator. A report already applied returns the event
    recorded for it. ``currency``: the one the payment's INIT asked for."""
    with writing(engine) as conn:
        row = conn.execute(
            sa.select(transactions).where(transactions.c.reference == report.reference)
            .with_for_update()
        ).first()
        if row is None:
            raise LookupError(f"no payment {report.reference!r} in the ledger; park the report "
                              "with park_unmatched")
        payment = _transaction(row)
        problem = disagreement(payment, report, currency)
        stored = conn.execute(
            sa.select(settlements.c.event, settlements.c.paid, settlements.c.event_id).where(
                settlements.c.reference == report.reference,
                settlements.c.transaction_id == report.transaction_id,
            )
        ).first()
        if stored is not None and problem is None:
            if bool(stored.paid) != report.paid:
                # One transaction reported first one way, now the other: its event went out
                # under an id derived from the transaction, so no second event can tell it.
                problem = Disagreement(
                    report.outcome_field,
                    f"transaction {report.transaction_id!r} of payment {report.reference} was "
                    f"reported {'paid' if stored.paid else 'failed'} before and is now reported "
                    f"{'paid' if report.paid else 'failed'}")
            elif payment.status == PAID and not stored.paid:
                # A resend of an attempt that failed before the payment was paid: true, known,
                # and published long ago; published again it would follow the payment.
                _record_callback(conn, report, now, accepted=True, event_id=None,
                                 reason_code=None, reason="a resend of an earlier failed attempt")
                return Settled(None, payment.status, repeat=True)
            else:
                _record_callback(conn, report, now, accepted=True, event_id=stored.event_id,
                                 reason_code=None, reason=None)
                return Settled(str(stored.event), payment.status, repeat=True)
        outcome = REPORTED_MISMATCH if problem else (REPORTED_PAID if report.paid
                                                      else REPORTED_FAILED)
        step = transition(payment.status, outcome)
        if step.to != payment.status:
            conn.execute(
                sa.update(transactions)
                .where(transactions.c.reference == report.reference)
                .values(status=step.to, updated_at=utc(now))
            )
        if step.publish:
            if event is None:
                raise ValueError(f"report of {report.reference} applied without its event")
            body = json.dumps(event.to_dict(), ensure_ascii=False, default=str)
            conn.execute(
                sa.insert(settlements).values(
                    reference=report.reference,
                    transaction_id=report.transaction_id,
                    paid=report.paid,
                    event_id=event.id,
                    event=body,
                    settled_by=report.source,
                    settled_at=utc(now),
                    emitted_at=utc(now) if emitted else None,
                )
            )
            _record_callback(conn, report, now, accepted=True, event_id=event.id,
                             reason_code=None, reason=None)
            return Settled(body, step.to)
        assert step.park is not None  # every report's entry publishes or parks
        parked = _parked(step.park, problem, payment, report)
        _park(conn, report, parked, now, payment=payment, state_after=step.to,
              expected=_expected(payment, currency))
        _record_callback(conn, report, now, accepted=False, event_id=None,
                         reason_code=parked.code, reason=parked.reason)
        return Settled(None, step.to, parked)


def _parked(code: str, problem: Disagreement | None, payment: Transaction,
            report: Report) -> Parked:
    if problem is not None:
        return Parked(code, problem.message, problem.field)
    said = "paid" if report.paid else "failed"
    if code == CODE_ALREADY_PAID:
        return Parked(code, f"payment {payment.reference} is already paid; the gateway now "
                      f"reports transaction {report.transaction_id!r} {said}", report.outcome_field)
    return Parked(code, f"the gateway refused the INIT of payment {payment.reference}, and now "
                  f"reports transaction {report.transaction_id!r} {said}", report.outcome_field)


def park_unmatched(engine: Engine, report: Report, parked: Parked, now: datetime,
                   *, expected: Mapping[str, Any]) -> None:
    """Park a report that names no payment of this hub (a reference it never initiated, or
    another partner), with what the hub expected instead."""
    for attempt in (1, 2):
        try:
            with writing(engine) as conn:
                _park(conn, report, parked, now, payment=None, state_after=None,
                      expected=expected)
                _record_callback(conn, report, now, accepted=False, event_id=None,
                                 reason_code=parked.code, reason=parked.reason)
            return
        except IntegrityError:
            # No payment row to lock: the same report, resent at once, may have been parked
            # between this one's look and its insert. Counted on the second go.
            if attempt == 2:
                raise


def _park(conn: Connection, report: Report, parked: Parked, now: datetime, *,
          payment: Transaction | None, state_after: str | None,
          expected: Mapping[str, Any]) -> None:
    seen = conn.execute(
        sa.update(mismatches)
        .where(mismatches.c.source == report.source, mismatches.c.body_sha256 == report.digest)
        .values(last_seen_at=utc(now), times=mismatches.c.times + 1)
    )
    if seen.rowcount:
        return
    conn.execute(
        sa.insert(mismatches).values(
            reference=report.reference[:50] or None,
            transaction_id=report.transaction_id[:64] or None,
            source=report.source,
            reason_code=parked.code,
            reason=parked.reason,
            field=parked.field,
            state_before=payment.status if payment else None,
            state_after=state_after,
            dossier_code=payment.dossier_code if payment else None,
            agency=payment.agency if payment else None,
            expected=json.dumps(dict(expected), ensure_ascii=False, default=str),
            reported=json.dumps(dict(report.facts), ensure_ascii=False, default=str),
            body_sha256=report.digest,
            peer=(report.peer or "")[:200] or None,
            first_seen_at=utc(now),
            last_seen_at=utc(now),
            times=1,
        )
    )


def _record_callback(conn: Connection, report: Report, now: datetime, *, accepted: bool,
                     event_id: str | None, reason_code: str | None, reason: str | None) -> None:
    if report.source != "callback":
        return
    conn.execute(
        sa.insert(callbacks).values(
            received_at=utc(now),
            reference=report.reference[:50] or None,
            transaction_id=report.transaction_id[:64] or None,
            accepted=accepted,
            reason_code=reason_code,
            reason=reason,
            event_id=event_id,
            body_sha256=report.digest,
            body=None,
            peer=(report.peer or "")[:200] or None,
        )
    )


@dataclass(frozen=True)
class Mismatch:
    id: int
    reference: str | None
    transaction_id: str | None
    source: str
    reason_code: str
    reason: str
    field: str | None
    state_before: str | None
    state_after: str | None
    dossier_code: str | None
    agency: str | None
    expected: dict[str, Any]
    reported: dict[str, Any]
    peer: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    times: int

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["first_seen_at"] = self.first_seen_at.isoformat()
        out["last_seen_at"] = self.last_seen_at.isoformat()
        return out


def parked_reports(engine: Engine, *, reference: str | None = None,
                   limit: int = 100) -> list[Mismatch]:
    """Parked reports, the most recently seen first."""
    query = sa.select(mismatches)
    if reference is not None:
        query = query.where(mismatches.c.reference == reference)
    query = query.order_by(mismatches.c.last_seen_at.desc(), mismatches.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Mismatch(
            **{k: r[k] for k in ("reference", "transaction_id", "source", "reason_code",
                                 "reason", "field", "state_before", "state_after",
                                 "dossier_code", "agency", "peer")},
            id=int(r["id"]),
            expected=json.loads(r["expected"]),
            reported=json.loads(r["reported"]),
            first_seen_at=aware(r["first_seen_at"]) or datetime.now(UTC),
            last_seen_at=aware(r["last_seen_at"]) or datetime.now(UTC),
            times=int(r["times"]),
        )
        for r in rows
    ]


# -- the rest of the ledger ---------------------------------------------------------------------


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


def step(engine: Engine, reference: str, outcome: str, now: datetime) -> str | None:
    """Apply a worker's ``outcome`` (INIT_REFUSED, INIT_RETRIED) by the table; the new state,
    or None when the payment's state has no such transition (it moved on meanwhile)."""
    with writing(engine) as conn:
        state = conn.execute(
            sa.select(transactions.c.status).where(transactions.c.reference == reference)
            .with_for_update()
        ).scalar_one_or_none()
        if state is None or (state, outcome) not in TRANSITIONS:
            return None
        to = transition(state, outcome).to
        conn.execute(
            sa.update(transactions)
            .where(transactions.c.reference == reference)
            .values(status=to, updated_at=utc(now))
        )
    return to


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


def callbacks_for(engine: Engine, reference: str) -> Sequence[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(callbacks).where(callbacks.c.reference == reference).order_by(callbacks.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]

