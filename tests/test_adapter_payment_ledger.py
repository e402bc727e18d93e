"""The payment ledger's table of transitions, read by a pure function, the pure check of a
gateway's report against the ledger, and the ledger's port: the SQL ledger (SQLite and
PostgreSQL) and the in-memory fake unit tests use keep the same promises. The routes that apply
them are tested through the hub in test_adapter_payment_callback.py and
test_adapter_payment_reconcile.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payment_support import callbacks
from state_fakes import MemoryLedger

from adapters.payment import ledger, store
from adapters.payment.ledger import (
    FAILED,
    INIT_REFUSED,
    INIT_RETRIED,
    MISMATCH,
    PAID,
    PENDING,
    REFUSED,
    REPORTED_FAILED,
    REPORTED_MISMATCH,
    REPORTED_PAID,
    REPORTS,
    STATES,
    Ledger,
    Transition,
    transition,
)
from adapters.payment.store import SqlLedger
from hub.adaptertables import ensure_schema
from hub.envelope import Envelope
from hub.errors import InvalidMessage
from hub.store.engine import make_engine


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("report", REPORTS)
def test_every_state_has_an_answer_to_every_report(state: str, report: str) -> None:
    step = transition(state, report)
    assert step.to in STATES
    # A report is either applied (its event published) or parked for an operator, never both,
    # never neither: nothing the gateway says is dropped in silence.
    assert step.publish != (step.park is not None)


@pytest.mark.parametrize(
    ("state", "report", "expected"),
    [
        (PENDING, REPORTED_PAID, Transition(PAID, publish=True)),
        (PENDING, REPORTED_FAILED, Transition(FAILED, publish=True)),
        (PENDING, REPORTED_MISMATCH, Transition(MISMATCH, park="client.payment_mismatch")),
        # A late success after a failed attempt (the citizen paid again) pays.
        (FAILED, REPORTED_PAID, Transition(PAID, publish=True)),
        (FAILED, REPORTED_FAILED, Transition(FAILED, publish=True)),
        (FAILED, REPORTED_MISMATCH, Transition(MISMATCH, park="client.payment_mismatch")),
        # A report that agrees with the ledger settles a parked payment.
        (MISMATCH, REPORTED_PAID, Transition(PAID, publish=True)),
        (MISMATCH, REPORTED_FAILED, Transition(MISMATCH, publish=True)),
        (MISMATCH, REPORTED_MISMATCH, Transition(MISMATCH, park="client.payment_mismatch")),
        (PAID, REPORTED_PAID, Transition(PAID, park="client.already_paid")),
        (PAID, REPORTED_FAILED, Transition(PAID, park="client.already_paid")),
        (PAID, REPORTED_MISMATCH, Transition(PAID, park="client.payment_mismatch")),
        (REFUSED, REPORTED_PAID, Transition(REFUSED, park="client.payment_refused")),
        (REFUSED, REPORTED_FAILED, Transition(REFUSED, park="client.payment_refused")),
        (PENDING, INIT_REFUSED, Transition(REFUSED)),
        (REFUSED, INIT_RETRIED, Transition(PENDING)),
    ],
)
def test_the_table(state: str, report: str, expected: Transition) -> None:
    assert transition(state, report) == expected


@pytest.mark.parametrize("outcome", ledger.OUTCOMES)
def test_paid_is_final_and_says_nothing_more(outcome: str) -> None:
    if (PAID, outcome) not in ledger.TRANSITIONS:
        with pytest.raises(ledger.IllegalTransition, match="'paid'"):
            transition(PAID, outcome)
        return
    step = transition(PAID, outcome)
    assert step.to == PAID and not step.publish


def test_only_a_matching_success_makes_a_payment_paid() -> None:
    into_paid = {(s, o) for (s, o), t in ledger.TRANSITIONS.items() if t.to == PAID and s != PAID}
    assert {o for _, o in into_paid} == {REPORTED_PAID}


@pytest.mark.parametrize(("state", "outcome"), [(PAID, INIT_REFUSED), (PENDING, INIT_RETRIED),
                                                (FAILED, INIT_REFUSED), ("lost", REPORTED_PAID)])
def test_what_the_table_lacks_is_refused_naming_what_is_allowed(state: str, outcome: str) -> None:
    with pytest.raises(ledger.IllegalTransition) as caught:
        transition(state, outcome)
    assert repr(outcome) in str(caught.value) and "allowed from" in str(caught.value)


def payment(**changes: Any) -> ledger.Transaction:
    values: dict[str, Any] = {
        "reference": "LT1", "partner": "LIENTHONG", "dossier_code": "000.00.00.H56-250101-0001",
        "agency": "000.00.00.H56", "procedure": "2.002492", "amount": 150_000,
        "request_id": "r", "correlation_id": None, "status": PENDING, "payment_url": None,
        "initiated_event": None, "created_at": datetime.now(UTC), "checked_at": None,
    }
    values.update(changes)
    return ledger.Transaction(**values)


def report(**changes: Any) -> ledger.Report:
    values: dict[str, Any] = {
        "reference": "LT1", "transaction_id": "GD1", "paid": True, "amount": 150_000,
        "currency": "VND", "partner": "LIENTHONG", "facts": {}, "digest": "0" * 64,
        "source": "callback", "outcome_field": "MaLoi",
    }
    values.update(changes)
    return ledger.Report(**values)


def test_a_report_that_agrees_has_no_disagreement() -> None:
    assert ledger.disagreement(payment(), report(), "VND") is None
    # Facts a message does not carry (a QUERY reply has no currency) are not held against it.
    assert ledger.disagreement(payment(), report(currency=None, amount=None), "VND") is None


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"amount": 100_000}, "SoTien", ["100000", "150000"]),
        ({"amount": 150_001}, "SoTien", ["150001"]),
        ({"currency": "USD"}, "MaTienTe", ["'USD'", "'VND'"]),
        ({"partner": "SOMEONE"}, "MaDoiTac", ["'SOMEONE'", "'LIENTHONG'"]),
        ({"reference": "LT2"}, "MaThamChieu", ["'LT2'", "'LT1'"]),
    ],
)
def test_each_fact_that_differs_is_named(changes: dict[str, Any], field: str,
                                         words: list[str]) -> None:
    found = ledger.disagreement(payment(), report(**changes), "VND")
    assert found is not None and found.field == field
    assert all(word in found.message for word in words), found.message


def test_every_code_a_report_is_parked_with_has_its_reason() -> None:
    # The table parks a report that agrees with the ledger with these codes; reports.toml
    # words each (a mismatch is worded by the fact that differs).
    codes = {step.park for step in ledger.TRANSITIONS.values() if step.park}
    assert codes - {"client.payment_mismatch"} <= set(ledger.WORDS.parked)
    assert {ledger.CODE_UNKNOWN_PARTNER, ledger.CODE_UNKNOWN_REFERENCE} <= set(ledger.WORDS.parked)


# -- the port: the SQL ledger and the in-memory fake keep the same promises --------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    url = (f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = make_engine(url)
    ensure_schema(engine, store.metadata)
    try:
        yield SqlLedger(engine)
    finally:
        engine.dispose()


NOW = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def fresh(**changes: Any) -> ledger.Transaction:
    reference = f"LT{uuid.uuid4().hex[:12].upper()}"
    return payment(**{"reference": reference, "created_at": NOW, **changes})


def event_for(pay: ledger.Transaction, transaction_id: str) -> Envelope:
    return Envelope.new(id=str(uuid.uuid4()), source="VN:GOV:000.00.00.G22:lienthong",
                        type="vn.gov.payment.completed", subject=pay.dossier_code,
                        data={"reference": pay.reference, "transaction_id": transaction_id})


def settle(book: Ledger, pay: ledger.Transaction, transaction_id: str = "GD1",
           **changes: Any) -> ledger.Settled:
    said = report(reference=pay.reference, transaction_id=transaction_id,
                  digest=f"{pay.reference}{transaction_id}{sorted(changes.items())}", **changes)
    agrees = ledger.disagreement(pay, said, "VND") is None
    return book.settle(said, event=event_for(pay, transaction_id) if agrees else None,
                       currency="VND", now=NOW, emitted=False)


def test_a_payment_is_recorded_once(book: Ledger) -> None:
    first = fresh()
    assert book.add(first) == first
    again = replace(first, request_id="another delivery")
    assert book.add(again) == first
    with pytest.raises(InvalidMessage) as info:
        ledger.same_payment(book.add(replace(first, amount=1)), replace(first, amount=1))
    assert info.value.code == "client.duplicate_reference"
    event = event_for(first, "-")
    kept = book.initiated(first.reference, "https://pay/1", event, NOW)
    assert book.initiated(first.reference, "https://pay/2", event_for(first, "-"), NOW) == kept
    found = book.get(first.reference)
    assert found is not None and found.payment_url == "https://pay/1"
    assert found.initiated_event == kept


def test_a_report_moves_the_payment_once_and_is_answered_again(book: Ledger) -> None:
    pay = book.add(fresh())
    paid = settle(book, pay, source="callback")
    assert (paid.state, paid.parked, paid.repeat) == (PAID, None, False)
    assert paid.event is not None and book.unemitted("LIENTHONG", 1000).count(paid.event) == 1
    again = settle(book, pay, source="callback")
    assert (again.event, again.repeat) == (paid.event, True)
    late = settle(book, pay, "GD2", paid=False, source="callback")
    assert late.parked is not None and late.parked.code == "client.already_paid"
    assert [n["accepted"] for n in callbacks(book, pay.reference)] == [True, True, False]
    event_id = json.loads(paid.event)["id"]
    assert book.mark_emitted([event_id], NOW) == 1
    assert book.mark_emitted([event_id], NOW) == 0
    assert paid.event not in book.unemitted("LIENTHONG", 1000)


def test_a_report_that_disagrees_is_parked_and_counted(book: Ledger) -> None:
    pay = book.add(fresh())
    for times in (1, 2):
        parked = settle(book, pay, amount=1, source="query")
        assert (parked.state, parked.event) == (MISMATCH, None)
        (kept,) = book.parked_reports(reference=pay.reference)
        assert (kept.reason_code, kept.field, kept.times) == ("client.payment_mismatch", "SoTien",
                                                              times)
        # The same report again is one row, counted: it keeps what was true when first seen.
        assert (kept.state_before, kept.expected["amount"]) == (PENDING, 150_000)
    assert callbacks(book, pay.reference) == []  # a QUERY reply is no callback
    # A later report that agrees settles it, as the table says.
    assert settle(book, pay, "GD2").state == PAID


def test_a_report_of_no_payment_is_parked_apart(book: Ledger) -> None:
    said = report(reference=f"LT{uuid.uuid4().hex[:12]}", digest=uuid.uuid4().hex)
    with pytest.raises(LookupError):
        book.settle(said, event=None, currency="VND", now=NOW, emitted=True)
    parked = ledger.Parked("client.unknown_reference", "no such payment", "MaThamChieu")
    book.park(said, parked, NOW, expected={"partner": "LIENTHONG"})
    book.park(said, parked, NOW, expected={"partner": "LIENTHONG"})
    (kept,) = book.parked_reports(reference=said.reference)
    assert (kept.times, kept.state_before, kept.expected) == (2, None, {"partner": "LIENTHONG"})


def test_refused_retried_pending_and_checked(book: Ledger) -> None:
    old, new, other = fresh(), fresh(created_at=NOW + timedelta(hours=1)), fresh(partner="P2")
    for pay in (old, new, other):
        book.add(pay)
    assert book.step(old.reference, INIT_REFUSED, NOW) == REFUSED
    assert book.step(old.reference, INIT_REFUSED, NOW) is None  # not from refused
    assert book.step(old.reference, INIT_RETRIED, NOW) == PENDING
    due = [p.reference for p in book.pending("LIENTHONG", NOW, 1000)]
    assert old.reference in due and new.reference not in due and other.reference not in due
    book.checked(old.reference, NOW)
    found = book.get(old.reference)
    assert found is not None and found.checked_at == NOW
