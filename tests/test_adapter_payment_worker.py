"""The payment worker against the gateway simulator on a real socket: INIT, the payment URL
event, idempotent redelivery, and every failure switch mapped to its error class."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from payment_support import context, request_envelope, sample_request

from adapters.payment import events, ledger
from adapters.payment.mapping import checksum
from adapters.payment.simulator import PaymentSimulator, SimTransaction, make_simulator
from adapters.payment.store import SqlLedger
from adapters.payment.worker import PaymentWorker
from hub import adaptertables
from hub.adapters import AdapterContext, Event
from hub.envelope import Envelope, routing_key
from hub.errors import InvalidMessage, PermanentError, RetryableError
from hub.model import PaymentInitiated, parse_event_data
from hub.settings import Settings
from hub.store import Store

SECRET = "worker-test-secret"
T = TypeVar("T")


def run(fn: Callable[[PaymentWorker], Awaitable[T]], ctx: AdapterContext) -> T:
    """Run ``fn`` with a worker made inside the event loop (its HTTP client belongs to it)."""

    async def main() -> T:
        worker = PaymentWorker(ctx)
        try:
            return await fn(worker)
        finally:
            await worker.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def gateway() -> Iterator[PaymentSimulator]:
    simulator = make_simulator(secret=SECRET)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def sim(gateway: PaymentSimulator, monkeypatch: pytest.MonkeyPatch) -> PaymentSimulator:
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    gateway.reset()
    return gateway


@pytest.fixture
def ctx(tmp_path: Path, sim: PaymentSimulator, store: Store) -> AdapterContext:
    return context(Settings(data_dir=tmp_path), sim.base_url, store=store)


def test_init_emits_the_payment_url(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    request = request_envelope()
    out = run(lambda w: w.process(request), ctx)
    assert len(out) == 1
    env = out[0]
    assert env.type == events.INITIATED
    assert env.id == events.initiated_id("LIENTHONG", request.data["reference"])
    assert env.causationid == request.id and env.correlationid == request.id
    assert env.subject == request.subject and env.agency == request.agency
    initiated = parse_event_data(env.type, env.data)
    assert isinstance(initiated, PaymentInitiated)
    assert initiated.payment_url == f"{sim.base_url}/pay/{request.data['reference']}"
    # What reached the gateway is a well-formed INIT with a checksum it accepted.
    (sent,) = sim.requests
    assert sent["LoaiBanTin"] == "INIT" and sent["SoTien"] == 150000
    assert checksum.matches(sent, sim.orders["init"], SECRET)
    payment = SqlLedger(ctx.store.engine).get(request.data["reference"])
    assert payment is not None
    assert payment.status == ledger.PENDING
    assert payment.payment_url == initiated.payment_url
    assert payment.dossier_code == "000.00.00.H56-250101-0001"


def test_handler_returns_the_canonical_event(ctx: AdapterContext) -> None:
    """On the hub's contract: an event in, the events it causes out (the consumer signs)."""
    request = request_envelope()
    (out,) = run(lambda w: w(Event(request)), ctx)
    assert isinstance(out, Envelope)
    assert routing_key(out) == "payment.initiated.000_00_00_H56.2_002492"
    assert out.type == events.INITIATED
    assert out.causationid == request.id


def test_redelivery_reemits_the_same_bytes_without_calling_again(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    request = request_envelope()
    first = run(lambda w: w.process(request), ctx)
    again = run(lambda w: w.process(request), ctx)
    assert [e.to_bytes() for e in again] == [e.to_bytes() for e in first]
    assert len(sim.requests) == 1


def test_reference_reused_for_another_dossier_is_invalid(ctx: AdapterContext) -> None:
    first = sample_request()
    run(lambda w: w.process(request_envelope(first)), ctx)
    other = {**first, "dossier_code": "000.00.00.H56-250101-0002"}
    with pytest.raises(InvalidMessage) as err:
        run(lambda w: w.process(request_envelope(other)), ctx)
    assert err.value.code == "client.duplicate_reference"
    assert err.value.field == "reference"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "150000.5", "fees": []}, "amount"),
        ({"dossier_code": "H56-1"}, "dossier_code"),
        ({"amount": "1"}, "fees"),
    ],
)
def test_bad_canonical_data_is_invalid(
    ctx: AdapterContext, sim: PaymentSimulator, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidMessage) as err:
        run(lambda w: w.process(request_envelope(**changes)), ctx)
    assert err.value.field == field
    assert sim.requests == []


def test_wrong_event_type_is_invalid(ctx: AdapterContext) -> None:
    env = Envelope.new(
        source="VN:GOV:000.00.00.H56:igate",
        type=events.COMPLETED,
        subject="000.00.00.H56-250101-0001",
        data={},
    )
    with pytest.raises(InvalidMessage) as err:
        run(lambda w: w.process(env), ctx)
    assert err.value.code == "client.unexpected_type"


def test_gateway_down_is_retryable(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    sim.down()
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    assert err.value.code == "system.unavailable"
    assert err.value.origin == "system:payment"
    sim.up()
    assert run(lambda w: w.process(request_envelope()), ctx)[0].type == events.INITIATED


def test_gateway_slow_is_a_timeout(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    sim.faults.slow_seconds = 2.5  # the quick policy waits 2 s
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    assert err.value.code == "system.timeout"


@pytest.mark.parametrize(("status", "code"), [(500, "system.unavailable"),
                                            (503, "system.unavailable"), (429, "system.busy")])
def test_gateway_5xx_and_429_are_retryable(
    ctx: AdapterContext, sim: PaymentSimulator, status: int, code: str
) -> None:
    sim.faults.fail_next, sim.faults.fail_status = 1, status
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    assert err.value.code == code
    assert str(status) in err.value.message


def test_inprocess_retry_rides_out_one_5xx(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    ctx.config["policy"]["attempts"] = 2
    sim.faults.fail_next = 1
    assert run(lambda w: w.process(request_envelope()), ctx)[0].type == events.INITIATED


def test_wrong_checksum_in_reply_is_permanent(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    sim.wrong_checksum = True
    with pytest.raises(PermanentError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    assert err.value.code == "system.bad_checksum"
    assert err.value.field == "MaXacThuc"


def test_refusal_is_permanent_with_its_meaning(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    data = sample_request()
    sim.transactions[data["reference"]] = SimTransaction(data["reference"], 999, "", "VCB")
    with pytest.raises(PermanentError) as err:
        run(lambda w: w.process(request_envelope(data)), ctx)
    assert err.value.code == "system.rejected"
    assert "MaLoi 03" in err.value.message and "already used" in err.value.message


def test_refused_payment_is_not_reconciled_and_can_be_replayed(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    request = request_envelope()
    sim.refuse = "02"
    with pytest.raises(PermanentError):
        run(lambda w: w.process(request), ctx)
    payment = SqlLedger(ctx.store.engine).get(request.data["reference"])
    assert payment is not None and payment.status == ledger.REFUSED
    # The operator fixed the cause and replays the dead letter.
    sim.refuse = ""
    (env,) = run(lambda w: w.process(request), ctx)
    assert env.type == events.INITIATED
    payment = SqlLedger(ctx.store.engine).get(request.data["reference"])
    assert payment is not None and payment.status == ledger.PENDING


def test_refusal_marked_retry_is_retryable(ctx: AdapterContext, sim: PaymentSimulator) -> None:
    sim.refuse = "96"
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    assert err.value.code == "system.busy"
    assert "busy" in err.value.message


def test_our_wrong_secret_is_refused_by_the_gateway(
    ctx: AdapterContext, sim: PaymentSimulator
) -> None:
    sim.secret = "the gateway's other secret"
    with pytest.raises(PermanentError) as err:
        run(lambda w: w.process(request_envelope()), ctx)
    # The refusal is sealed with the gateway's secret, so the hub cannot trust it either.
    assert err.value.code == "system.bad_checksum"
    assert "secret" in err.value.message


def test_state_tables_fall_back_to_a_file_without_a_store(
    tmp_path: Path, sim: PaymentSimulator
) -> None:
    ctx = context(Settings(data_dir=tmp_path), sim.base_url)
    request = request_envelope()
    run(lambda w: w.process(request), ctx)
    assert (tmp_path / "payment.db").exists()
    engine = adaptertables.engine_for(None, "", tmp_path, "payment.db")
    payment = SqlLedger(engine).get(request.data["reference"])
    assert payment is not None and payment.payment_url
