"""Tracking against the postal simulator: by polling (paged) and by webhook (pushed by the
simulator over a real socket to a stand-in of ``POST /v1/callbacks/postal``). Only changes of
collection state become events; the same change seen twice is the same message. Each test has
a customer code of its own: polling only sees that customer's orders (exact counts)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters.postal import events, orders, pool, tracking
from adapters.postal.callback import PostalWebhook
from adapters.postal.db import ensure_schema
from adapters.postal.simulator import PostalSimulator, make_simulator
from adapters.postal.testing import context, pickup_envelope, random_dossier_code
from adapters.postal.worker import PostalWorker
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import HubError
from hub.settings import Settings
from hub.simulation import SimulatorServer
from hub.store import Store


@dataclass
class HubStandIn:
    """The hub's callback endpoint reduced to what the adapter needs: parse, keep, answer."""

    parser: PostalWebhook | None = None
    received: list[Envelope] = field(default_factory=list)
    server: SimulatorServer | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/callbacks/postal")
        async def callback(request: Request) -> Response:
            assert self.parser is not None
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                found = await asyncio.to_thread(self.parser, await request.body(), headers)
            except HubError as exc:
                return JSONResponse(exc.to_dict(), status_code=exc.http_status)
            self.received.extend(found)
            return JSONResponse({"message_ids": [e.id for e in found]}, status_code=202)

        return app


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostalSimulator, HubStandIn]]:
    sim = make_simulator(webhook_token="")
    sim.start()
    hub = HubStandIn()
    hub.server = SimulatorServer(hub.app())
    sim.webhook_url = f"{hub.server.start()}/v1/callbacks/postal"
    try:
        yield sim, hub
    finally:
        hub.server.stop()
        sim.stop()


@pytest.fixture
def setup(
    store_url: str,
    tmp_path: Path,
    servers: tuple[PostalSimulator, HubStandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AdapterContext, PostalSimulator, HubStandIn]]:
    monkeypatch.delenv("LIENTHONG_POSTAL_WEBHOOK_TOKEN", raising=False)
    sim, hub = servers
    sim.reset()
    sim.webhook_token = ""
    customer = f"C{uuid.uuid4().hex[:8].upper()}"
    sim.customer_code = customer
    with Store.open(store_url) as store:
        ctx = context(
            Settings(data_dir=tmp_path), sim.base_url, store=store, customer_code=customer
        )
        ensure_schema(store.engine)
        pool.add(
            store.engine, customer, [f"{customer}{i:03d}" for i in range(20)], datetime.now(UTC)
        )
        hub.parser = PostalWebhook(ctx)
        hub.received.clear()
        yield ctx, sim, hub


def place(ctx: AdapterContext, count: int = 1) -> list[tuple[str, str]]:
    """Place orders through the worker; their (order number, waybill)."""
    requests = [pickup_envelope(dossier_code=random_dossier_code()) for _ in range(count)]

    async def main() -> list[Envelope]:
        worker = PostalWorker(ctx)
        try:
            return [e for r in requests for e in await worker.process(r)]
        finally:
            await worker.aclose()

    placed = asyncio.run(main())
    return [(e.subject, e.data["waybill"]) for e in placed]


def states(found: list[Envelope]) -> list[int]:
    return [e.data["state"] for e in found]


def poll(ctx: AdapterContext, numbers: list[str] | None = None) -> tracking.PollReport:
    return asyncio.run(tracking.poll_report(ctx, numbers))


def test_polling_reads_every_page_and_emits_only_changes(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, _ = setup
    ((number, waybill),) = place(ctx)
    sim.page_size = 2
    sim.advance(waybill, 2, "Dang thu gom", push=False)
    sim.advance(waybill, 2, "Van dang thu gom", push=False)  # the same state again
    sim.advance(waybill, 3, "Da phat", push=False)
    sim.requests.clear()
    report = poll(ctx, [number])
    pages = sorted(r["PageIndex"] for r in sim.requests)
    assert pages == ["1", "2"]  # 4 entries, 2 per page
    assert report.errors == [] and report.polled == 1
    assert states(report.events) == [2, 3]
    assert [e.data["note"] for e in report.events] == ["Dang thu gom", "Da phat"]
    assert all(e.type == events.TRACKING_UPDATED and e.subject == number for e in report.events)
    for env in report.events:
        at = datetime.fromisoformat(env.data["at"])
        assert env.id == events.tracking_id(waybill, env.data["state"], at)
    order = orders.by_waybill(ctx.store.engine, waybill)
    assert order is not None and order.last_state == 3 and order.closed


def test_polled_events_come_back_until_marked_emitted(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, _ = setup
    ((number, waybill),) = place(ctx)
    sim.advance(waybill, 2, push=False)
    first = asyncio.run(tracking.poll_tracking(ctx, [number]))
    again = asyncio.run(tracking.poll_tracking(ctx, [number]))
    assert [e.to_bytes() for e in again] == [e.to_bytes() for e in first] and len(first) == 1
    assert tracking.mark_emitted(ctx, [e.id for e in first]) == 1
    assert asyncio.run(tracking.poll_tracking(ctx, [number])) == []
    sim.advance(waybill, 3, push=False)
    published: list[Envelope] = []

    async def publish(env: Envelope) -> None:
        published.append(env)

    report = asyncio.run(tracking.run(ctx, publish, [number]))
    assert states(published) == [3] and report.changes == 1
    assert asyncio.run(tracking.poll_tracking(ctx, [number])) == []


def test_polling_all_open_orders_skips_closed_ones(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, _ = setup
    (open_number, open_waybill), (done_number, done_waybill) = place(ctx, 2)
    sim.advance(done_waybill, 4, "Huy", push=False)
    assert states(poll(ctx).events) == [4]  # both polled: the cancellation found
    sim.advance(open_waybill, 2, push=False)
    sim.requests.clear()
    report = poll(ctx)
    assert [r["OrderNumber"] for r in sim.requests] == [open_number]
    assert {e.subject for e in report.events} == {open_number, done_number}  # not yet marked
    assert done_number not in [r["OrderNumber"] for r in sim.requests]


def test_polling_with_the_service_down(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, _ = setup
    numbers = [n for n, _ in place(ctx, 2)]
    sim.down()
    report = poll(ctx, numbers)
    assert [e.code for e in report.errors] == ["system.unavailable"]  # stops at the first
    assert report.events == [] and report.polled == 0


@pytest.mark.parametrize("state", [0, 1, 2, 3, 4])
def test_webhook_each_collection_state(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn], state: int
) -> None:
    ctx, sim, hub = setup
    ((number, waybill),) = place(ctx)
    assert sim.advance(waybill, state, f"trang thai {state}") == 202
    if state == 1:
        assert hub.received == []  # registered already: not a change
    else:
        (env,) = hub.received
        assert env.data["state"] == state and env.data["waybill"] == waybill
        assert env.data["note"] == f"trang thai {state}"
        assert env.subject == number
    order = orders.by_waybill(ctx.store.engine, waybill)
    assert order is not None
    assert order.closed is (state in (3, 4))


def test_webhook_sent_twice_is_the_same_message(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    ((_, waybill),) = place(ctx)
    sim.advance(waybill, 2)
    sim.push(waybill)
    first, second = hub.received
    assert first.to_bytes() == second.to_bytes()


def test_polled_then_pushed_is_the_same_message(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    ((number, waybill),) = place(ctx)
    sim.advance(waybill, 2, push=False)
    (polled,) = poll(ctx, [number]).events
    sim.push(waybill)
    (pushed,) = hub.received
    assert pushed.to_bytes() == polled.to_bytes()


def test_pushed_then_polled_is_not_emitted_again(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    ((number, waybill),) = place(ctx)
    sim.advance(waybill, 2)
    assert len(hub.received) == 1
    assert poll(ctx, [number]).events == []


def test_webhook_older_than_known_is_ignored(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    ((number, waybill),) = place(ctx)
    sim.advance(waybill, 2)
    sim.advance(waybill, 3)
    stale = {"OrderNumber": number, "ItemCode": waybill, "State": "0", "Time": "20200101000000"}
    assert post(hub, stale).status_code == 202
    assert states(hub.received) == [2, 3]


def post(
    hub: HubStandIn, body: Mapping[str, object], headers: dict[str, str] | None = None
) -> httpx.Response:
    assert hub.server is not None
    return httpx.post(
        f"{hub.server.base_url}/v1/callbacks/postal", json=body, headers=headers or {}
    )


def test_webhook_refusals(setup: tuple[AdapterContext, PostalSimulator, HubStandIn]) -> None:
    ctx, _, hub = setup
    ((number, waybill),) = place(ctx)
    entry = {"OrderNumber": number, "ItemCode": waybill, "State": "2", "Time": "20990101000000"}
    answer = post(hub, {**entry, "ItemCode": "NOSUCH1"})
    assert (answer.status_code, answer.json()["code"]) == (404, "client.unknown_waybill")
    answer = post(hub, {**entry, "OrderNumber": "000.00.00.H56-250101-9999"})
    assert (answer.status_code, answer.json()["code"]) == (400, "client.order_mismatch")
    answer = post(hub, {**entry, "State": "7"})
    assert (answer.status_code, answer.json()["field"]) == (422, "State")
    answer = post(hub, {k: v for k, v in entry.items() if k != "Time"})
    assert (answer.status_code, answer.json()["code"]) == (422, "client.schema_invalid")
    assert hub.received == []


def test_webhook_token_when_configured(
    setup: tuple[AdapterContext, PostalSimulator, HubStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, sim, hub = setup
    monkeypatch.setenv("LIENTHONG_POSTAL_WEBHOOK_TOKEN", "t0ken")
    hub.parser = PostalWebhook(ctx)
    ((_, waybill),) = place(ctx)
    assert sim.advance(waybill, 2) == 401
    assert hub.received == []
    sim.webhook_token = "t0ken"
    assert sim.push(waybill) == 202
    assert states(hub.received) == [2]
