"""The payment ledger's table of transitions, read by a pure function, and the pure check of a
gateway's report against the ledger. The routes that apply them are tested through the hub in
test_adapter_payment_callback.py and test_adapter_payment_reconcile.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.payment import ledger
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
    Transition,
    transition,
)


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
