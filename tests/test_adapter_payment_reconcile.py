"""Reconciliation with QUERY against the simulator: paid and failed payments whose callback
never came become events, pending ones are left alone, and events are returned until their
publication is confirmed. Each test has a partner code of its own (exact counts)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from payment_support import context, mark_emitted, reconciled, request_envelope

from adapters.payment import events, ledger, reconcile
from adapters.payment.callback import PaymentCallback
from adapters.payment.simulator import PaymentSimulator, make_simulator
from adapters.payment.store import SqlLedger
from adapters.payment.worker import PaymentWorker
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.model import PaymentCompleted, parse_event_data
from hub.settings import Settings
from hub.store import Store

SECRET = "reconcile-test-secret"
LATER = timedelta(minutes=31)


@pytest.fixture(scope="module")
def gateway() -> Iterator[PaymentSimulator]:
    sim = make_simulator(secret=SECRET)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(gateway: PaymentSimulator, monkeypatch: pytest.MonkeyPatch) -> PaymentSimulator:
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    gateway.reset()
    return gateway


@pytest.fixture
def ctx(store_url: str, tmp_path: Path, sim: PaymentSimulator) -> Iterator[AdapterContext]:
    # A partner code of its own: reconciliation only sees its own partner's payments, so
    # tests sharing the PostgreSQL database see exact counts.
    partner = f"P{uuid.uuid4().hex[:10].upper()}"
    sim.partner_code = partner
    with Store.open(store_url) as store:
        yield context(Settings(data_dir=tmp_path), sim.base_url, store=store, partner_code=partner)


def initiate(ctx: AdapterContext, count: int) -> list[str]:
    requests = [request_envelope() for _ in range(count)]

    async def main() -> None:
        worker = PaymentWorker(ctx)
        try:
            for request in requests:
                await worker.process(request)
        finally:
            await worker.aclose()

    asyncio.run(main())
    return [r.data["reference"] for r in requests]


def completed(env: Envelope) -> PaymentCompleted:
    body = parse_event_data(env.type, env.data)
    assert isinstance(body, PaymentCompleted)
    return body


def queried(sim: PaymentSimulator) -> list[str]:
    return [r["MaThamChieu"] for r in sim.requests if r["LoaiBanTin"] == "QUERY"]


def test_paid_and_failed_become_events_pending_is_left(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    paid, failed, pending = initiate(ctx, 3)
    sim.pay(paid, "paid", callback=False)
    sim.pay(failed, "failed", callback=False)
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + LATER))
    assert report.counts == {"checked": 3, "paid": 1, "failed": 1, "still_pending": 1,
                             "mismatched": 0}
    assert report.errors == []
    by_reference = {completed(e).reference: e for e in report.events}
    assert set(by_reference) == {paid, failed}
    assert completed(by_reference[paid]).paid is True
    assert completed(by_reference[paid]).transaction_id == sim.transactions[paid].transaction_id
    assert completed(by_reference[failed]).paid is False
    assert completed(by_reference[failed]).error_code == "TrangThaiGD=4"
    assert all(e.type == events.COMPLETED for e in report.events)
    engine = ctx.store.engine
    statuses = {r: SqlLedger(engine).get(r).status for r in (paid, failed, pending)}  # type: ignore[union-attr]
    assert statuses == {paid: "paid", failed: "failed", pending: "pending"}
    checked = SqlLedger(engine).get(pending)
    assert checked is not None and checked.checked_at is not None


def test_events_come_back_until_marked_emitted(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    (reference,) = initiate(ctx, 1)
    sim.pay(reference, callback=False)
    later = datetime.now(UTC) + LATER
    first = asyncio.run(reconciled(ctx, later))
    again = asyncio.run(reconciled(ctx, later))
    assert [e.to_bytes() for e in again] == [e.to_bytes() for e in first]
    assert mark_emitted(ctx, [e.id for e in first]) == 1
    assert asyncio.run(reconciled(ctx, later)) == []
    # Settled payments are not asked about again.
    assert queried(sim).count(reference) == 1


def test_recent_payments_are_not_queried(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    (reference,) = initiate(ctx, 1)
    sim.pay(reference, callback=False)
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + timedelta(minutes=29)))
    assert report.counts["checked"] == 0 and report.events == []
    assert queried(sim) == []


def test_age_is_configurable(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    ctx.config["reconcile_after_minutes"] = 5
    (reference,) = initiate(ctx, 1)
    sim.pay(reference, callback=False)
    events_ = asyncio.run(reconciled(ctx, datetime.now(UTC) + timedelta(minutes=6)))
    assert [completed(e).reference for e in events_] == [reference]


def test_callback_after_reconciliation_is_the_same_message(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    (reference,) = initiate(ctx, 1)
    body = sim.settle(reference, "paid")  # the callback is late
    assert body is not None
    (found,) = asyncio.run(reconciled(ctx, datetime.now(UTC) + LATER))
    (late,) = PaymentCallback(ctx)(json.dumps(body).encode(), {})
    assert late.to_bytes() == found.to_bytes()


def test_gateway_down_leaves_everything_pending(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    references = initiate(ctx, 2)
    for reference in references:
        sim.pay(reference, callback=False)
    sim.down()
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + LATER))
    assert report.events == []
    # The first failure stops the run: the rest waits for the next one.
    assert [e.code for e in report.errors] == ["system.unavailable"]
    assert all(SqlLedger(ctx.store.engine).get(r).status == "pending"  # type: ignore[union-attr]
               for r in references)
    sim.up()
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + LATER))
    assert report.counts["paid"] == 2


def test_unknown_at_the_gateway_is_reported_and_skipped(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    lost, known = initiate(ctx, 2)
    del sim.transactions[lost]  # the INIT never reached the gateway
    sim.pay(known, callback=False)
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + LATER))
    assert [e.code for e in report.errors] == ["system.rejected"]
    assert "MaLoi 04" in report.errors[0].message
    assert [completed(e).reference for e in report.events] == [known]


def test_run_publishes_then_marks_emitted(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    first, second = initiate(ctx, 2)
    sim.pay(first, callback=False)
    sim.pay(second, "failed", callback=False)
    published: list[str] = []

    async def flaky_publish(env: Envelope) -> None:
        if published:
            raise ConnectionError("broker went away")
        published.append(env.id)

    later = datetime.now(UTC) + LATER
    with pytest.raises(ConnectionError):
        asyncio.run(reconcile.run(ctx, flaky_publish, later))
    # Only the confirmed one is marked; the other is returned by the next run.
    remaining = asyncio.run(reconciled(ctx, later))
    assert len(remaining) == 1 and remaining[0].id not in published

    async def publish(env: Envelope) -> None:
        published.append(env.id)

    report = asyncio.run(reconcile.run(ctx, publish, later))
    assert len(report.events) == 1
    assert asyncio.run(reconciled(ctx, later)) == []
    assert "checked" in report.summary()


def test_outcome_switch_pending_forever_and_failed(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    stuck, refused = initiate(ctx, 2)
    sim.outcome = "pending"
    assert sim.pay(stuck) == []  # no callback: the payment never completes
    sim.outcome = "failed"
    sim.pay(refused, callback=False)
    report = asyncio.run(reconcile.reconcile_report(ctx, datetime.now(UTC) + LATER))
    assert [report.counts[k] for k in ("still_pending", "failed", "paid")] == [1, 1, 0]
    assert [completed(e).reference for e in report.events] == [refused]


def test_a_paid_answer_for_another_amount_parks_the_payment(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    mismatched, agreed = initiate(ctx, 2)
    sim.pay(mismatched, callback=False)
    sim.pay(agreed, callback=False)
    sim.transactions[mismatched].amount = 149_000  # the gateway's record is not the hub's
    later = datetime.now(UTC) + LATER
    report = asyncio.run(reconcile.reconcile_report(ctx, later))
    assert [report.counts[k] for k in ("checked", "paid", "mismatched")] == [2, 1, 1]
    assert [completed(e).reference for e in report.events] == [agreed]
    engine = ctx.store.engine
    payment = SqlLedger(engine).get(mismatched)
    assert payment is not None and payment.status == ledger.MISMATCH
    (parked,) = SqlLedger(engine).parked_reports(reference=mismatched)
    assert (parked.source, parked.reason_code, parked.field) == (
        "query", "client.payment_mismatch", "SoTien")
    assert parked.reported["SoTien"] == 149_000 and parked.expected["amount"] == 150_000
    assert '"mismatched": 1' in report.summary()
    # Parked is no longer pending: the next run does not ask again, and publishes nothing of it.
    again = asyncio.run(reconcile.reconcile_report(ctx, later))
    assert again.counts["checked"] == 0
    assert queried(sim).count(mismatched) == 1
    assert all(completed(e).reference != mismatched for e in again.events)
