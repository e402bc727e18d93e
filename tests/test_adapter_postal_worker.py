"""The postal worker against the postal simulator on a real socket: an order on a pooled
waybill, the registered event, idempotent redelivery, and every failure mapped to its error
class."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from postal_support import context, pickup_envelope, random_dossier_code

from adapters.postal import events, pool
from adapters.postal.simulator import PostalSimulator, make_simulator
from adapters.postal.store import SqlOrders, SqlWaybills
from adapters.postal.store import metadata as tables
from adapters.postal.worker import PostalWorker
from hub.adapters import AdapterContext, Event
from hub.adaptertables import ensure_schema
from hub.envelope import Envelope, routing_key
from hub.errors import InvalidMessage, PermanentError, RetryableError
from hub.model import PostalTracking, parse_event_data
from hub.numberpool import PoolCounts
from hub.settings import Settings
from hub.store import Store

T = TypeVar("T")
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def run(fn: Callable[[PostalWorker], Awaitable[T]], ctx: AdapterContext) -> T:
    async def main() -> T:
        worker = PostalWorker(ctx)
        try:
            return await fn(worker)
        finally:
            await worker.aclose()

    return asyncio.run(main())


def dossier() -> str:
    return random_dossier_code()


@pytest.fixture(scope="module")
def service() -> Iterator[PostalSimulator]:
    sim = make_simulator()
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(service: PostalSimulator) -> PostalSimulator:
    service.reset()
    return service


@pytest.fixture
def customer() -> str:
    return f"C{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture
def ctx(tmp_path: Path, sim: PostalSimulator, store: Store, customer: str) -> AdapterContext:
    ctx = context(Settings(data_dir=tmp_path), sim.base_url, store=store,
                  customer_code=customer)
    sim.customer_code = customer
    return ctx


def fill(ctx: AdapterContext, count: int) -> list[str]:
    customer = ctx.config["customer_code"]
    numbers = [f"{customer}{i:03d}" for i in range(count)]
    ensure_schema(ctx.store.engine, tables)
    waybills(ctx).add(customer, numbers, NOW)
    return numbers


def waybills(ctx: AdapterContext) -> SqlWaybills:
    return SqlWaybills(ctx.store.engine)


def test_order_on_a_pooled_waybill(ctx: AdapterContext, sim: PostalSimulator) -> None:
    numbers = fill(ctx, 3)
    request = pickup_envelope(dossier_code=dossier())
    (env,) = run(lambda w: w.process(request), ctx)
    assert env.type == events.TRACKING_UPDATED
    body = parse_event_data(env.type, env.data)
    assert isinstance(body, PostalTracking)
    assert body.state == 1 and body.waybill == numbers[0]
    assert body.dossier_code == request.subject
    assert env.id == events.tracking_id(body.waybill, 1, body.at)
    assert env.causationid == request.id and env.correlationid == request.id
    assert env.agency == "000.00.00.H56"
    placed = sim.orders[numbers[0]]
    assert placed.order_number == request.subject
    assert placed.receiver["Tel"] == "0912345678"
    assert waybills(ctx).counts(ctx.config["customer_code"]).taken == 1
    order = SqlOrders(ctx.store.engine).by_waybill(numbers[0])
    assert order is not None and order.last_state == 1


def test_handler_returns_the_canonical_event(ctx: AdapterContext) -> None:
    """On the hub's contract: an event in, the events it causes out (the consumer signs)."""
    fill(ctx, 1)
    request = pickup_envelope(dossier_code=dossier())
    (out,) = run(lambda w: w(Event(request)), ctx)
    assert isinstance(out, Envelope)
    assert routing_key(out) == "postal.tracking-updated.000_00_00_H56.2_002492"
    assert out.causationid == request.id


def test_redelivery_reuses_waybill_and_event(ctx: AdapterContext, sim: PostalSimulator) -> None:
    fill(ctx, 3)
    request = pickup_envelope(dossier_code=dossier())
    first = run(lambda w: w.process(request), ctx)
    again = run(lambda w: w.process(request), ctx)
    assert [e.to_bytes() for e in again] == [e.to_bytes() for e in first]
    assert len(sim.requests) == 1
    assert waybills(ctx).counts(ctx.config["customer_code"]).taken == 1


def test_retry_after_a_failure_keeps_the_waybill(ctx: AdapterContext, sim: PostalSimulator) -> None:
    numbers = fill(ctx, 3)
    request = pickup_envelope(dossier_code=dossier())
    sim.faults.fail_next = 1
    with pytest.raises(RetryableError):
        run(lambda w: w.process(request), ctx)
    (env,) = run(lambda w: w.process(request), ctx)
    assert env.data["waybill"] == numbers[0]
    assert waybills(ctx).counts(ctx.config["customer_code"]).taken == 1


def test_pickup_and_return_of_one_dossier_get_two_waybills(ctx: AdapterContext) -> None:
    fill(ctx, 3)
    code = dossier()
    ctx.config["order_number"] = "{dossier_code}-{direction}"
    (a,) = run(lambda w: w.process(pickup_envelope(dossier_code=code, direction="pickup")), ctx)
    (b,) = run(lambda w: w.process(pickup_envelope(dossier_code=code)), ctx)
    assert a.data["waybill"] != b.data["waybill"]


def test_empty_pool_is_retryable(ctx: AdapterContext, sim: PostalSimulator) -> None:
    fill(ctx, 0)
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert err.value.code == "server.waybill_pool_empty"
    assert "pool add" in err.value.message
    assert sim.requests == []


def test_configured_ranges_fill_the_pool(ctx: AdapterContext, sim: PostalSimulator) -> None:
    serial = f"{uuid.uuid4().int % 10**8:08d}"  # numbers of its own: the simulator is shared
    first = f"EA{serial}{pool.s10_check_digit(serial)}VN"
    last = pool.expand_range(first, first)[0][:2] + f"{int(serial) + 1:08d}"
    last = f"{last}{pool.s10_check_digit(last[2:])}VN"
    ctx.config["pool"] = {"ranges": [{"first": first, "last": last}]}
    ctx.config["customer_code"] = sim.customer_code = customer = f"R{uuid.uuid4().hex[:8]}"
    (env,) = run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert env.data["waybill"] == first
    assert waybills(ctx).counts(customer) == PoolCounts(1, 1, 0)


def test_service_down_is_retryable(ctx: AdapterContext, sim: PostalSimulator) -> None:
    fill(ctx, 1)
    sim.down()
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert err.value.code == "system.unavailable"
    assert err.value.origin == "system:postal"


def test_service_slow_is_a_timeout(ctx: AdapterContext, sim: PostalSimulator) -> None:
    fill(ctx, 1)
    sim.faults.slow_seconds = 2.5  # the quick policy waits 2 s
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert err.value.code == "system.timeout"


@pytest.mark.parametrize(("status", "code"), [(500, "system.unavailable"),
                                            (502, "system.unavailable"), (429, "system.busy")])
def test_service_5xx_is_retryable(
    ctx: AdapterContext, sim: PostalSimulator, status: int, code: str
) -> None:
    fill(ctx, 1)
    sim.faults.fail_next, sim.faults.fail_status = 1, status
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        ("103", PermanentError, "system.rejected"),
        ("104", PermanentError, "system.rejected"),
        ("999", PermanentError, "system.rejected"),
        ("500", RetryableError, "system.busy"),
    ],
)
def test_rejected_orders(
    ctx: AdapterContext, sim: PostalSimulator, status: str, error: type[Exception], code: str
) -> None:
    fill(ctx, 1)
    sim.reject_order = status
    with pytest.raises(error) as err:
        run(lambda w: w.process(pickup_envelope(dossier_code=dossier())), ctx)
    assert getattr(err.value, "code", None) == code
    assert f"Status {status}" in str(err.value)


def test_used_waybill_is_burned_and_the_next_try_takes_another(
    ctx: AdapterContext, sim: PostalSimulator
) -> None:
    first, second = fill(ctx, 2)
    sim.used_waybills.add(first)
    request = pickup_envelope(dossier_code=dossier())
    with pytest.raises(RetryableError) as err:
        run(lambda w: w.process(request), ctx)
    assert err.value.code == "system.waybill_used"
    (env,) = run(lambda w: w.process(request), ctx)
    assert env.data["waybill"] == second
    assert waybills(ctx).counts(ctx.config["customer_code"]) == PoolCounts(0, 1, 1)


def test_order_existing_at_the_service_counts_as_placed(
    ctx: AdapterContext, sim: PostalSimulator
) -> None:
    """The service took the order but its answer was lost: the retry is told "101"."""
    (number,) = fill(ctx, 1)
    request = pickup_envelope(dossier_code=dossier())
    sim.faults.slow_seconds = 2.5  # the order is made, the hub gives up waiting
    with pytest.raises(RetryableError):
        run(lambda w: w.process(request), ctx)
    sim.reset()
    assert number in sim.orders
    (env,) = run(lambda w: w.process(request), ctx)
    assert env.data["waybill"] == number and "101" in env.data["note"]


def test_contract_failure_spends_no_waybill(ctx: AdapterContext, sim: PostalSimulator) -> None:
    fill(ctx, 1)
    data = pickup_envelope(dossier_code=dossier()).data
    data["receiver"]["phone"] = "ask the neighbour"
    env = pickup_envelope(data)
    with pytest.raises(InvalidMessage) as err:
        run(lambda w: w.process(env), ctx)
    assert err.value.field == "Receiver.Tel"
    assert err.value.code == "client.mapping_failed"
    assert waybills(ctx).counts(ctx.config["customer_code"]).taken == 0
    assert sim.requests == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cod_amount": "1.5"}, "cod_amount"),
        ({"direction": "sideways"}, "direction"),
        ({"dossier_code": "H56-1"}, "dossier_code"),
    ],
)
def test_bad_canonical_data_is_invalid(
    ctx: AdapterContext, sim: PostalSimulator, changes: dict[str, Any], field: str
) -> None:
    fill(ctx, 1)
    data = {**pickup_envelope(dossier_code=dossier()).data, **changes}
    env = Envelope.new(
        source="VN:GOV:000.00.00.H56:igate",
        type=events.PICKUP_REQUESTED,
        subject="000.00.00.H56-250101-0001",
        data=data,
    )
    with pytest.raises(InvalidMessage) as err:
        run(lambda w: w.process(env), ctx)
    assert err.value.field == field
    assert sim.requests == []
    assert waybills(ctx).counts(ctx.config["customer_code"]).taken == 0
