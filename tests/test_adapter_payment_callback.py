"""The gateway's callbacks, sent by the simulator over a real socket to a stand-in of the hub's
``POST /v1/callbacks/payment`` that runs the adapter's callback parser: verified callbacks become
``vn.gov.payment.completed``, wrong checksums are refused and recorded, duplicates are the same
message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters.payment import checksum, events, ledger
from adapters.payment.callback import PaymentCallback
from adapters.payment.simulator import PaymentSimulator, make_simulator
from adapters.payment.testing import context, request_envelope
from adapters.payment.worker import PaymentWorker
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import HubError
from hub.model import PaymentCompleted, parse_event_data
from hub.settings import Settings
from hub.simulation import SimulatorServer
from hub.store import Store

SECRET = "callback-test-secret"


@dataclass
class HubStandIn:
    """The hub's callback endpoint reduced to what the adapter needs: parse, keep, answer."""

    parser: PaymentCallback | None = None
    received: list[Envelope] = field(default_factory=list)
    server: SimulatorServer | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/callbacks/payment")
        async def callback(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            assert self.parser is not None
            try:
                envelopes = await asyncio.to_thread(self.parser, body, headers)
            except HubError as exc:
                return JSONResponse(exc.to_dict(), status_code=exc.http_status)
            self.received.extend(envelopes)
            return JSONResponse({"message_ids": [e.id for e in envelopes]}, status_code=202)

        return app


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PaymentSimulator, HubStandIn]]:
    sim = make_simulator(secret=SECRET)
    sim.start()
    hub = HubStandIn()
    hub.server = SimulatorServer(hub.app())
    sim.callback_url = f"{hub.server.start()}/v1/callbacks/payment"
    try:
        yield sim, hub
    finally:
        hub.server.stop()
        sim.stop()


@pytest.fixture
def setup(
    tmp_path: Path,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[PaymentSimulator, HubStandIn],
) -> tuple[AdapterContext, PaymentSimulator, HubStandIn]:
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    sim, hub = servers
    sim.reset()
    ctx = context(Settings(data_dir=tmp_path), sim.base_url, store=store)
    hub.parser = PaymentCallback(ctx)
    hub.received.clear()
    return ctx, sim, hub


def initiate(ctx: AdapterContext) -> Envelope:
    request = request_envelope()

    async def main() -> None:
        worker = PaymentWorker(ctx)
        try:
            await worker.process(request)
        finally:
            await worker.aclose()

    asyncio.run(main())
    return request


def test_paid_callback_becomes_payment_completed(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    request = initiate(ctx)
    reference = request.data["reference"]
    assert sim.pay(reference) == [202]
    (env,) = hub.received
    assert env.type == events.COMPLETED
    assert env.subject == "000.00.00.H56-250101-0001"
    assert env.agency == "000.00.00.H56" and env.procedure == "2.002492"
    assert env.correlationid == request.id
    assert env.causationid == events.initiated_id("LIENTHONG", reference)
    transaction = sim.transactions[reference].transaction_id
    assert env.id == events.completed_id("LIENTHONG", reference, transaction)
    done = parse_event_data(env.type, env.data)
    assert isinstance(done, PaymentCompleted)
    assert done.paid and done.transaction_id == transaction and int(done.amount) == 150000
    payment = ledger.get(ctx.store.engine, reference)
    assert payment is not None and payment.status == ledger.PAID
    (row,) = ledger.callbacks_for(ctx.store.engine, reference)
    assert row["accepted"] and row["event_id"] == env.id and row["body"] is None


def test_wrong_checksum_is_refused_recorded_and_not_applied(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    reference = initiate(ctx).data["reference"]
    sim.wrong_checksum = True
    assert sim.pay(reference) == [401]
    assert hub.received == []
    payment = ledger.get(ctx.store.engine, reference)
    assert payment is not None and payment.status == ledger.PENDING
    (row,) = ledger.callbacks_for(ctx.store.engine, reference)
    assert not row["accepted"]
    assert row["reason_code"] == "client.bad_checksum"
    assert json.loads(row["body"])["MaXacThuc"] == "0" * 64
    # ...and in the hub's hash-chained message log.
    logged = [
        r
        for r in ctx.store.log_rows(subject=reference)
        if r.type == "payment.callback.refused:client.bad_checksum"
    ]
    assert len(logged) == 1 and logged[0].direction == "in"


def test_refusal_answer_names_the_code(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    reference = initiate(ctx).data["reference"]
    body = sim.settle(reference)
    assert body is not None
    assert hub.server is not None
    url = f"{hub.server.base_url}/v1/callbacks/payment"
    answer = httpx.post(url, json={**body, "SoTien": body["SoTien"] + 1})
    assert answer.status_code == 401
    assert answer.json()["code"] == "client.bad_checksum"
    assert answer.json()["field"] == "MaXacThuc"


def test_duplicate_callback_is_the_same_message(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    reference = initiate(ctx).data["reference"]
    sim.duplicate_callback = True
    assert sim.pay(reference) == [202, 202]
    first, second = hub.received
    assert first.id == second.id
    assert first.to_bytes() == second.to_bytes()
    assert len(ledger.callbacks_for(ctx.store.engine, reference)) == 2


def test_failed_then_paid_are_two_events(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    reference = initiate(ctx).data["reference"]
    sim.pay(reference, "failed")
    payment = ledger.get(ctx.store.engine, reference)
    assert payment is not None and payment.status == ledger.FAILED
    sim.pay(reference, "paid")
    failed, paid = (parse_event_data(e.type, e.data) for e in hub.received)
    assert isinstance(failed, PaymentCompleted) and isinstance(paid, PaymentCompleted)
    assert (failed.paid, failed.error_code) == (False, "51")
    assert paid.paid and paid.transaction_id != failed.transaction_id
    assert hub.received[0].id != hub.received[1].id
    payment = ledger.get(ctx.store.engine, reference)
    assert payment is not None and payment.status == ledger.PAID


def post(hub: HubStandIn, body: Any) -> httpx.Response:
    assert hub.server is not None
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{hub.server.base_url}/v1/callbacks/payment", content=content)


def sealed(sim: PaymentSimulator, **fields: Any) -> dict[str, Any]:
    body = {
        "LoaiBanTin": "PAY",
        "MaLoi": "00",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "NO-SUCH",
        "SoTien": 1000,
        "MaTienTe": "VND",
        "MaGiaoDich": "GD1",
        "MaNganHang": "VCB",
        "ThoiGianGD": "20250101084512",
        "ThongTinGiaoDich": "x",
    }
    body.update(fields)
    return checksum.sign(body, sim.orders["callback"], SECRET)


def test_unknown_reference_is_refused(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    ctx, sim, hub = setup
    answer = post(hub, sealed(sim))
    assert answer.status_code == 404
    assert answer.json()["code"] == "client.unknown_reference"
    (row,) = ledger.callbacks_for(ctx.store.engine, "NO-SUCH")
    assert row["reason_code"] == "client.unknown_reference"


def test_other_partner_is_refused(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
) -> None:
    _, sim, hub = setup
    answer = post(hub, sealed(sim, MaDoiTac="SOMEONE"))
    assert answer.status_code == 400
    assert answer.json()["code"] == "client.unknown_partner"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"<html>", 400, "client.unparseable", None),
        (b"[1, 2]", 400, "client.unparseable", None),
        ({"LoaiBanTin": "PAY"}, 422, "client.schema_invalid", None),
        ({"MaThamChieu": "X", "ThoiGianGD": "2025"}, 422, "client.schema_invalid", "ThoiGianGD"),
    ],
)
def test_malformed_callbacks(
    setup: tuple[AdapterContext, PaymentSimulator, HubStandIn],
    body: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    _, sim, hub = setup
    if isinstance(body, dict) and "MaThamChieu" in body:
        body = {**sealed(sim), **body}
    answer = post(hub, body)
    assert answer.status_code == status
    assert answer.json()["code"] == code
    if field:
        assert answer.json()["field"] == field
    assert hub.received == []
