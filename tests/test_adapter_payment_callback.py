"""The gateway's callbacks through the real route: the hub app (``create_app`` with the installed
payment adapter, its outbox relay publishing to RabbitMQ) served by uvicorn on a socket, the
gateway simulator calling it back over another. Verified callbacks become
``vn.gov.payment.completed`` on the broker; a callback the ledger cannot apply (amount, currency,
partner or reference not the ledger's, a failure after the payment was paid) is refused and
parked for an operator, with nothing published; a callback the hub cannot authenticate leaves a
log line and a metric and nothing in any table."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from payment_support import callbacks, context, request_envelope
from test_api_support import (  # noqa: F401 - fixtures
    Keys,
    clients_config,
    declare_events,
    drain,
    keys_fixture,
    new_code,
    relay_store_url_fixture,
)
from typer.testing import CliRunner

from adapters.payment import adapter as payment_adapter
from adapters.payment import events, ledger
from adapters.payment.mapping import checksum
from adapters.payment.simulator import PaymentSimulator, make_simulator
from adapters.payment.store import SqlLedger
from adapters.payment.worker import PaymentWorker
from hub.adapters import AdapterContext
from hub.api.app import create_app
from hub.api.auth import ClientRegistry
from hub.cli import app as cli_app
from hub.envelope import Envelope
from hub.model import PaymentCompleted, parse_event_data
from hub.settings import Settings
from hub.simulation import SimulatorServer
from hub.store import Store
from hub.testing.waiting import wait_for

SECRET = "callback-test-secret"
PATH = "/v1/callbacks/payment"


@dataclass
class RealHub:
    """The hub's app on a socket, and what it published on its events exchange."""

    settings: Settings
    store: Store
    server: SimulatorServer
    queue: str
    published: list[Envelope] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.base_url}{PATH}"

    def post(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url, content=content,
                          headers={"Content-Type": "application/json"}, timeout=10)

    def received(self) -> list[Envelope]:
        self.published.extend(Envelope.from_bytes(b)
                              for _, b in drain(self.settings.amqp_url, self.queue))
        return self.published

    def wait_published(self, message_id: str) -> list[Envelope]:
        """Everything published up to and including ``message_id``: the relay publishes in
        the order the hub accepted, so what is not there by then was never accepted."""
        wait_for(lambda: any(e.id == message_id for e in self.received()), timeout=15,
                 message=f"the relay to publish {message_id}")
        return self.published

    def completed_for(self, reference: str) -> list[PaymentCompleted]:
        found = []
        for env in self.published:
            if env.type == events.COMPLETED:
                body = parse_event_data(env.type, env.data)
                assert isinstance(body, PaymentCompleted)
                if body.reference == reference:
                    found.append(body)
        return found


@pytest.fixture(scope="module")
def gateway() -> Iterator[PaymentSimulator]:
    sim = make_simulator(secret=SECRET)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def hub(
    settings: Settings,
    keys: Keys,
    relay_store_url: str,
    gateway: PaymentSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RealHub]:
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    queue = declare_events(settings.amqp_url, settings.name_prefix)
    store = Store.open(relay_store_url)
    app = create_app(settings, store=store, signer=keys.signer(keys.hub),
                     registry=ClientRegistry.from_dict(clients_config()),
                     adapters={"payment": payment_adapter}, relay_poll_interval=0.05)
    server = SimulatorServer(app, lifespan="on")
    server.start()
    gateway.reset()
    gateway.callback_url = f"{server.base_url}{PATH}"
    try:
        yield RealHub(settings, store, server, queue)
    finally:
        server.stop()
        store.close()


@pytest.fixture
def ctx(hub: RealHub, gateway: PaymentSimulator) -> AdapterContext:
    """The payment worker's context, on the hub's store (the ledger the callback reads)."""
    return context(hub.settings, gateway.base_url, store=hub.store)


def initiate(ctx: AdapterContext) -> tuple[str, str]:
    """A payment initiated at the gateway by the worker: (reference, dossier code)."""
    request = request_envelope(dossier_code=new_code())

    async def main() -> None:
        worker = PaymentWorker(ctx)
        try:
            await worker.process(request)
        finally:
            await worker.aclose()

    asyncio.run(main())
    return request.data["reference"], request.data["dossier_code"]


def status(hub: RealHub, reference: str) -> str:
    payment = SqlLedger(hub.store.engine).get(reference)
    assert payment is not None
    return payment.status


def logged_completions(hub: RealHub, dossier_code: str) -> list[str]:
    return [r.message_id for r in hub.store.log_rows(subject=dossier_code)
            if r.type == events.COMPLETED]


def sealed(gateway: PaymentSimulator, **fields: Any) -> dict[str, Any]:
    """A callback with a valid checksum, as only the gateway (or whoever has its secret) makes."""
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
    return checksum.sign(body, gateway.orders["callback"], SECRET)


# -- applied -------------------------------------------------------------------------------------


def test_paid_callback_is_published_as_payment_completed(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator
) -> None:
    reference, code = initiate(ctx)
    body = gateway.settle(reference, "paid")
    answer = hub.post(body)
    assert answer.status_code == 202, answer.text
    (message_id,) = answer.json()["message_ids"]
    transaction = gateway.transactions[reference].transaction_id
    assert message_id == events.completed_id("LIENTHONG", reference, transaction)
    published = hub.wait_published(message_id)
    env = next(e for e in published if e.id == message_id)
    assert env.type == events.COMPLETED and env.subject == code
    assert env.agency == "000.00.00.H56" and env.procedure == "2.002492"
    assert env.causationid == events.initiated_id("LIENTHONG", reference)
    (done,) = hub.completed_for(reference)
    assert done.paid and done.transaction_id == transaction and int(done.amount) == 150000
    assert status(hub, reference) == ledger.PAID
    (row,) = callbacks(SqlLedger(hub.store.engine), reference)
    assert row["accepted"] and row["event_id"] == message_id and row["body"] is None
    assert row["peer"] == "127.0.0.1"  # the socket's peer: no proxy is trusted to name another
    assert logged_completions(hub, code) == [message_id]


def test_duplicate_callback_is_the_same_message_kept_once(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator
) -> None:
    reference, code = initiate(ctx)
    gateway.duplicate_callback = True
    assert gateway.pay(reference) == [202, 202]
    body = gateway.settle(reference, "paid")
    first, second = hub.post(body).json(), hub.post(body).json()
    assert first == second
    assert len(callbacks(SqlLedger(hub.store.engine), reference)) == 4
    assert len(logged_completions(hub, code)) == 1


def test_failed_then_paid_are_two_events_in_order(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator
) -> None:
    reference, code = initiate(ctx)
    declined = gateway.settle(reference, "failed")
    assert hub.post(declined).status_code == 202
    assert status(hub, reference) == ledger.FAILED
    paid = hub.post(gateway.settle(reference, "paid"))
    assert paid.status_code == 202
    # The declined attempt's callback resent after the payment: acknowledged, nothing kept.
    resent = hub.post(declined)
    assert (resent.status_code, resent.json()) == (202, {"message_ids": []})
    marker_reference, _ = initiate(ctx)
    marker = hub.post(gateway.settle(marker_reference, "paid"))
    hub.wait_published(marker.json()["message_ids"][0])
    failed_event, paid_event = hub.completed_for(reference)
    assert (failed_event.paid, failed_event.error_code) == (False, "51")
    assert paid_event.paid and paid_event.transaction_id != failed_event.transaction_id
    assert status(hub, reference) == ledger.PAID
    assert len(logged_completions(hub, code)) == 2


# -- parked: the gateway said it, the ledger says otherwise ----------------------------------------


def test_amount_mismatch_is_refused_parked_and_never_published(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    reference, code = initiate(ctx)
    gateway.transactions[reference].amount = 100_000  # the gateway took less than was asked
    with caplog.at_level(logging.WARNING, logger="adapters.payment.callback"):
        wrong = hub.post(gateway.settle(reference, "paid"))
    assert wrong.status_code == 409, wrong.text
    problem = wrong.json()
    assert (problem["code"], problem["field"]) == ("client.payment_mismatch", "SoTien")
    assert "100000" in problem["message"] and "150000" in problem["message"]
    assert status(hub, reference) == ledger.MISMATCH
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert (parked.reason_code, parked.field, parked.source) == (
        "client.payment_mismatch", "SoTien", "callback")
    assert (parked.state_before, parked.state_after) == ("pending", "mismatch")
    assert parked.reported["SoTien"] == 100_000 and parked.expected["amount"] == 150_000
    assert parked.dossier_code == code and parked.peer == "127.0.0.1"
    assert any(reference in r.getMessage() and "client.payment_mismatch" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    # The gateway resends what it was refused: parked once, counted.
    assert hub.post(gateway.settle(reference, "paid")).status_code == 409
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert parked.times == 2
    # The gateway corrects its report: the payment is paid, and that is all the broker saw.
    gateway.transactions[reference].amount = 150_000
    right = hub.post(gateway.settle(reference, "paid"))
    assert right.status_code == 202, right.text
    hub.wait_published(right.json()["message_ids"][0])
    (done,) = hub.completed_for(reference)
    assert done.paid and int(done.amount) == 150_000
    assert status(hub, reference) == ledger.PAID
    assert logged_completions(hub, code) == right.json()["message_ids"]
    assert len(SqlLedger(hub.store.engine).parked_reports(reference=reference)) == 1


def test_currency_mismatch_is_refused_parked_and_listed_for_the_operator(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator, relay_store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, code = initiate(ctx)
    gateway.currency = "USD"
    assert gateway.pay(reference) == [409]
    assert status(hub, reference) == ledger.MISMATCH
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert (parked.reason_code, parked.field) == ("client.payment_mismatch", "MaTienTe")
    assert logged_completions(hub, code) == []
    # What the operator sees: `lienthong payment mismatches`.
    monkeypatch.setenv("LIENTHONG_STORE_URL", relay_store_url)
    monkeypatch.setenv("LIENTHONG_DATA_DIR", str(hub.settings.data_dir))
    result = CliRunner().invoke(cli_app, ["payment", "mismatches", "--reference", reference])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    shown = json.loads(line)
    assert (shown["reason_code"], shown["field"], shown["state_after"]) == (
        "client.payment_mismatch", "MaTienTe", "mismatch")
    assert shown["reported"]["MaTienTe"] == "USD" and shown["expected"]["currency"] == "VND"


def test_failure_after_paid_publishes_nothing_contradictory(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator
) -> None:
    reference, code = initiate(ctx)
    assert gateway.pay(reference, "paid") == [202]
    late = hub.post(gateway.settle(reference, "failed"))  # another MaGiaoDich, declined
    assert late.status_code == 409, late.text
    assert (late.json()["code"], late.json()["field"]) == ("client.already_paid", "MaLoi")
    assert status(hub, reference) == ledger.PAID
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert (parked.reason_code, parked.state_before, parked.state_after) == (
        "client.already_paid", "paid", "paid")
    assert parked.reported["MaLoi"] == "51"
    # A second payment of a paid reference is no news for the portal either.
    second = hub.post(gateway.settle(reference, "paid"))
    assert second.status_code == 409 and second.json()["code"] == "client.already_paid"
    # Another payment's callback after both: once it is on the broker, whatever the hub had
    # accepted before it is there too. Only the first payment of the reference is.
    marker_reference, _ = initiate(ctx)
    marker = hub.post(gateway.settle(marker_reference, "paid"))
    hub.wait_published(marker.json()["message_ids"][0])
    (only,) = hub.completed_for(reference)
    assert only.paid
    assert len(logged_completions(hub, code)) == 1


def test_unknown_reference_is_refused_and_parked(hub: RealHub, gateway: PaymentSimulator) -> None:
    reference = f"NO-SUCH-{uuid.uuid4().hex[:8]}"
    answer = hub.post(sealed(gateway, MaThamChieu=reference))
    assert answer.status_code == 404
    assert (answer.json()["code"], answer.json()["field"]) == (
        "client.unknown_reference", "MaThamChieu")
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert parked.reason_code == "client.unknown_reference" and parked.state_before is None
    (row,) = callbacks(SqlLedger(hub.store.engine), reference)
    assert row["reason_code"] == "client.unknown_reference" and row["body"] is None


def test_other_partner_is_refused_and_parked(hub: RealHub, gateway: PaymentSimulator) -> None:
    reference = f"OTHER-{uuid.uuid4().hex[:8]}"
    answer = hub.post(sealed(gateway, MaDoiTac="SOMEONE", MaThamChieu=reference))
    assert answer.status_code == 400
    assert (answer.json()["code"], answer.json()["field"]) == ("client.unknown_partner",
                                                               "MaDoiTac")
    (parked,) = SqlLedger(hub.store.engine).parked_reports(reference=reference)
    assert parked.reported["MaDoiTac"] == "SOMEONE" and parked.expected["partner"] == "LIENTHONG"


# -- refused: not the gateway --------------------------------------------------------------------


def rows_holding(store: Store, text: str) -> list[str]:
    """Tables with a row in which ``text`` appears (every column, as text)."""
    found = []
    meta = sa.MetaData()
    meta.reflect(store.engine)
    with store.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                if any(text in (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
                       for v in row):
                    found.append(table.name)
                    break
    return found


def refusals(hub: RealHub, code: str) -> float:
    metrics = httpx.get(f"{hub.server.base_url}/metrics", timeout=10).text
    line = f'lienthong_refused_total{{code="{code}",door="callback:payment"}} '
    for text in metrics.splitlines():
        if text.startswith(line):
            return float(text.removeprefix(line))
    return 0.0


def test_wrong_checksum_is_refused_with_a_log_line_and_a_metric_and_nothing_kept(
    hub: RealHub, ctx: AdapterContext, gateway: PaymentSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference, code = initiate(ctx)
    marker = f"forged-{uuid.uuid4().hex}"  # in the bodies' ThongTinGiaoDich
    gateway.transactions[reference].description = marker
    gateway.wrong_checksum = True  # MaXacThuc = 64 zeros
    with caplog.at_level(logging.INFO):
        assert gateway.pay(reference) == [401]
    forged = gateway.settle(reference, "paid")
    assert forged is not None
    answer = hub.post({**forged, "SoTien": 1})
    assert answer.status_code == 401
    assert (answer.json()["code"], answer.json()["field"]) == ("client.bad_checksum", "MaXacThuc")
    assert status(hub, reference) == ledger.PENDING
    assert refusals(hub, "client.bad_checksum") == 2.0
    assert any("client.bad_checksum" in r.getMessage() and "127.0.0.1" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    # Not a row anywhere: no message log row, no callback record, no body, no parking.
    assert hub.store.log_rows(subject=reference) == []
    assert logged_completions(hub, code) == []
    assert callbacks(SqlLedger(hub.store.engine), reference) == []
    assert SqlLedger(hub.store.engine).parked_reports(reference=reference) == []
    assert rows_holding(hub.store, marker) == []


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"<html>", 400, "client.unparseable", None),
        (b"[1, 2]", 400, "client.unparseable", None),
        ({"LoaiBanTin": "PAY"}, 422, "client.schema_invalid", None),
        ({"ThoiGianGD": "2025"}, 422, "client.schema_invalid", "ThoiGianGD"),
        ({"SoTien": "1" * 19}, 422, "client.schema_invalid", "SoTien"),
    ],
)
def test_malformed_callbacks_are_refused_and_nothing_kept(
    hub: RealHub, gateway: PaymentSimulator, body: Any, status: int, code: str,
    field: str | None,
) -> None:
    reference = f"BAD-{uuid.uuid4().hex[:8]}"
    if isinstance(body, dict) and "LoaiBanTin" not in body:
        body = {**sealed(gateway, MaThamChieu=reference), **body}
    answer = hub.post(body)
    assert answer.status_code == status
    assert answer.json()["code"] == code
    if field:
        assert answer.json()["field"] == field
    assert refusals(hub, code) == 1.0
    assert callbacks(SqlLedger(hub.store.engine), reference) == []
    assert SqlLedger(hub.store.engine).parked_reports(reference=reference) == []
    assert hub.store.log_rows(subject=reference) == []
