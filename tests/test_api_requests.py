"""The REST requests an upstream makes of the systems behind the hub: a fee payment
(POST /v1/dossiers/{code}/payments), a postal pickup or return (POST
/v1/dossiers/{code}/postal-orders) and a citizen verification (POST /v1/citizens/verifications).
Accepted means an outbox row of the right type and routing key (and, with the relay, a message
in the queue each adapter binds); bad input names its field; the access list is enforced, also
for a verification that names no dossier."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest
from test_api_support import (  # noqa: F401 - fixtures
    CLIENT_ID,
    OTHER_ID,
    OTHER_KEY,
    STATUS,
    Hub,
    clients_config,
    dossier,
    drain,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.adapters import discover
from hub.api.auth import ClientRegistry
from hub.envelope import Envelope
from hub.settings import Settings
from hub.store import OutboxItem
from hub.testing.waiting import wait_for

PAYMENT = "vn.gov.payment.requested"
POSTAL = "vn.gov.postal.pickup-requested"
VERIFICATION = "vn.gov.citizen.verification-requested"
VERIFICATIONS = "/v1/citizens/verifications"


def requests_registry() -> ClientRegistry:
    """igate may also send the three requests, and call the provincial callback; the other
    system may send payments and verifications for H56 only, not for H41, the agency of its
    own system id."""
    config = clients_config()
    igate, other = config["clients"]
    igate["allowed_types"] = ["vn.gov.dossier.*", PAYMENT, POSTAL, VERIFICATION]
    igate["callbacks"] = ["provincial"]
    other["allowed_types"] = [PAYMENT, VERIFICATION]
    other["allowed_agencies"] = ["000.00.00.H56*"]
    return ClientRegistry.from_dict(config)


def payment(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "reference": f"LT{uuid.uuid4().hex[:16].upper()}",
        "amount": "150000",
        "fees": [{"code": "LP01", "name": "Lệ phí cấp giấy", "amount": "100000", "kind": 2},
                 {"code": "P01", "name": "Phí thẩm định", "amount": 50000}],
        "payer": {"identity_number": "001099012345", "name": "Nguyễn Văn A"},
    }
    body.update(changes)
    return body


def postal_order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sender": {"name": "Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa",
                   "address": "28 Đại lộ Lê Lợi, TP Thanh Hóa", "phone": "02373750000"},
        "receiver": {"name": "Nguyễn Văn A", "address": "1 Lê Lợi, Sầm Sơn",
                     "phone": "0912345678", "province": "Thanh Hóa"},
        "direction": "return",
    }
    body.update(changes)
    return body


def verification(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"identity_number": "001099012345", "name": "Nguyễn Văn A",
                            "birth_date": "1999-05-01"}
    body.update(changes)
    return body


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub(registry=requests_registry())


def accepted(answer: Any) -> str:
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["duplicate"] is False
    message_id: str = body["message_id"]
    return message_id


def outbox_row(hub: Hub, message_id: str) -> OutboxItem:
    rows = [item for item in hub.store.outbox_pending(100_000, lease=None)
            if item.message_id == message_id]
    assert len(rows) == 1, f"{len(rows)} outbox rows for {message_id}"
    assert rows[0].exchange == f"{hub.settings.name_prefix}.events"
    return rows[0]


def problem(answer: Any, status: int, code: str, field: str | None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert (body["code"], body.get("field"), body["origin"]) == (code, field, "hub")
    assert body["message"]
    return body


# -- accepted ------------------------------------------------------------------------------

def test_payment_request_is_kept(make_hub: Callable[..., Hub], store_url: str) -> None:
    hub = make_hub(store_url, registry=requests_registry())
    code = new_code()
    data = payment(amount=150000.5)
    message_id = accepted(hub.post(f"/v1/dossiers/{code}/payments", data, PAYMENT))
    row = outbox_row(hub, message_id)
    assert (row.type, row.routing_key) == (PAYMENT, "payment.requested.000_00_00_H56.2_002492")
    env = Envelope.from_bytes(row.body)
    assert (env.source, env.subject, env.agency) == (CLIENT_ID, code, "000.00.00.H56")
    # The path's code is the dossier's; the amount is kept exactly, as a decimal string.
    assert env.data["dossier_code"] == code and env.data["amount"] == "150000.5"
    assert env.data["reference"] == data["reference"]
    # The body names the path's dossier (Hub.post adds it to a body without it).
    again = payment(dossier_code=code)
    accepted(hub.post(f"/v1/dossiers/{code}/payments", again, PAYMENT))
    timeline = hub.http.get(f"/v1/dossiers/{code}/timeline", headers=hub.headers).json()
    assert [e["event_type"] for e in timeline["entries"]] == [PAYMENT, PAYMENT]
    assert timeline["entries"][0]["summary"]["reference"] == data["reference"]
    assert "payer" not in timeline["entries"][0]["summary"]  # personal data stays out


def test_postal_order_is_kept(make_hub: Callable[..., Hub], store_url: str) -> None:
    hub = make_hub(store_url, registry=requests_registry())
    code = new_code()
    # The first order of a dossier the hub has not seen: no procedure to route by.
    first = accepted(hub.post(f"/v1/dossiers/{code}/postal-orders",
                              postal_order(direction="pickup"), POSTAL))
    row = outbox_row(hub, first)
    assert (row.type, row.routing_key) == (POSTAL, "postal.pickup-requested.000_00_00_H56.none")
    assert Envelope.from_bytes(row.body).data["direction"] == "pickup"
    # Once the dossier is submitted, its orders are routed by its procedure too.
    submitted = new_code()
    accepted(hub.submit(dossier(submitted)))
    second = accepted(hub.post(f"/v1/dossiers/{submitted}/postal-orders", postal_order(),
                               POSTAL))
    row = outbox_row(hub, second)
    assert row.routing_key == "postal.pickup-requested.000_00_00_H56.2_002492"
    env = Envelope.from_bytes(row.body)
    assert env.data["dossier_code"] == submitted and env.data["direction"] == "return"
    assert env.sequence == 2  # after the submission


def test_citizen_verification_is_kept(make_hub: Callable[..., Hub], store_url: str) -> None:
    hub = make_hub(store_url, registry=requests_registry())
    code = new_code()
    for_dossier = accepted(hub.post(VERIFICATIONS, verification(dossier_code=code),
                                    VERIFICATION))
    row = outbox_row(hub, for_dossier)
    assert (row.type, row.routing_key) == (
        VERIFICATION, "citizen.verification-requested.000_00_00_H56.none")
    env = Envelope.from_bytes(row.body)
    assert (env.subject, env.agency, env.data["dossier_code"]) == (code, "000.00.00.H56", code)
    # Without a dossier: authorized for the client's own agency (H56, from its system id).
    alone = accepted(hub.post(VERIFICATIONS, verification(identity_number="012345678"),
                              VERIFICATION))
    row = outbox_row(hub, alone)
    assert (row.type, row.routing_key) == (
        VERIFICATION, "citizen.verification-requested.none.none")
    env = Envelope.from_bytes(row.body)
    assert env.data["dossier_code"] is None and env.data["identity_number"] == "012345678"
    assert env.source == CLIENT_ID and env.subject == alone
    assert hub.outbox_count() == 2


def test_exact_resend_is_one_message(hub: Hub) -> None:
    body = json.dumps(verification(), ensure_ascii=False).encode()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = hub.post(VERIFICATIONS, None, VERIFICATION, raw=body, headers=key)
    again = hub.post(VERIFICATIONS, None, VERIFICATION, raw=body, headers=key)
    assert again.status_code == 202 and again.json() == {
        "message_id": accepted(first), "duplicate": True}
    assert hub.outbox_count() == 1


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"amount": 0}, "client.schema_invalid", "amount"),
        ({"amount": "-5"}, "client.schema_invalid", "amount"),
        ({"amount": "a lot"}, "client.schema_invalid", "amount"),
        ({"reference": ""}, "client.schema_invalid", "reference"),
        ({"reference": "R" * 51}, "client.schema_invalid", "reference"),
        ({"agency_code": "nowhere"}, "client.bad_code", "agency_code"),
        ({"procedure_code": "2.2492"}, "client.bad_code", "procedure_code"),
        ({"payer": {"identity_number": "0010990123", "name": "A"}}, "client.bad_code",
         "payer.identity_number"),
        ({"fees": [{"code": "F", "name": "fee", "amount": -1}]}, "client.schema_invalid",
         "fees.0.amount"),
        ({"dossier_code": "000.00.00.H56-250101-9999"}, "client.schema_invalid",
         "dossier_code"),
        ({"colour": "blue"}, "client.schema_invalid", "colour"),
    ],
)
def test_bad_payment_requests_name_the_field(hub: Hub, change: dict[str, Any], code: str,
                                             field: str) -> None:
    path = f"/v1/dossiers/{new_code()}/payments"
    body = problem(hub.post(path, payment(**change), PAYMENT), 422, code, field)
    assert field.split(".")[0] in body["detail"]
    assert hub.outbox_count() == 0


def test_payment_request_missing_fields(hub: Hub) -> None:
    path = f"/v1/dossiers/{new_code()}/payments"
    for missing in ("procedure_code", "agency_code", "reference", "amount", "payer"):
        data = payment()
        del data[missing]
        body = problem(hub.post(path, data, PAYMENT), 422, "client.schema_invalid", missing)
        assert "required" in body["message"].lower()
    problem(hub.post("/v1/dossiers/H56-1/payments", payment(), PAYMENT), 422,
            "client.bad_code", "code")
    assert hub.outbox_count() == 0


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"direction": "sideways"}, "client.schema_invalid", "direction"),
        ({"receiver": {"name": "A", "address": "1 Lê Lợi"}}, "client.schema_invalid",
         "receiver.phone"),
        ({"sender": None}, "client.schema_invalid", "sender"),
        ({"cod_amount": "free"}, "client.schema_invalid", "cod_amount"),
        ({"dossier_code": "000.00.00.H56-250101-9999"}, "client.schema_invalid",
         "dossier_code"),
    ],
)
def test_bad_postal_orders_name_the_field(hub: Hub, change: dict[str, Any], code: str,
                                          field: str) -> None:
    path = f"/v1/dossiers/{new_code()}/postal-orders"
    problem(hub.post(path, postal_order(**change), POSTAL), 422, code, field)
    data = postal_order()
    del data["receiver"]
    problem(hub.post(path, data, POSTAL), 422, "client.schema_invalid", "receiver")
    assert hub.outbox_count() == 0


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"identity_number": "0010990123"}, "client.bad_code", "identity_number"),
        ({"identity_number": 1099012345}, "client.schema_invalid", "identity_number"),
        ({"dossier_code": "H56-250101-1"}, "client.bad_code", "dossier_code"),
        ({"birth_date": "yesterday"}, "client.schema_invalid", "birth_date"),
        ({"birth_year": "nineteen"}, "client.schema_invalid", "birth_year"),
        ({"address": "1 Lê Lợi"}, "client.schema_invalid", "address"),
    ],
)
def test_bad_verifications_name_the_field(hub: Hub, change: dict[str, Any], code: str,
                                          field: str) -> None:
    body = problem(hub.post(VERIFICATIONS, verification(**change), VERIFICATION), 422, code,
                   field)
    # An identity number is personal data: a refusal never repeats it.
    assert "0010990123" not in json.dumps(body)
    data = verification()
    del data["name"]
    problem(hub.post(VERIFICATIONS, data, VERIFICATION), 422, "client.schema_invalid", "name")
    assert hub.outbox_count() == 0


def test_signature_must_name_the_routes_type(hub: Hub) -> None:
    path = f"/v1/dossiers/{new_code()}/payments"
    problem(hub.post(path, payment(), STATUS), 400, "client.header_mismatch", "lt-type")
    problem(hub.post(VERIFICATIONS, verification(), PAYMENT), 400, "client.header_mismatch",
            "lt-type")
    assert hub.outbox_count() == 0


# -- access --------------------------------------------------------------------------------

def test_types_not_in_the_access_list_are_refused(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()  # igate may send vn.gov.dossier.* only
    code = new_code()
    for path, data, event_type in (
        (f"/v1/dossiers/{code}/payments", payment(), PAYMENT),
        (f"/v1/dossiers/{code}/postal-orders", postal_order(), POSTAL),
        (VERIFICATIONS, verification(), VERIFICATION),
        (VERIFICATIONS, verification(dossier_code=code), VERIFICATION),
        # The type is checked first: an invalid body tells a refused client nothing more.
        (f"/v1/dossiers/{code}/payments", payment(amount=0), PAYMENT),
    ):
        body = problem(hub.post(path, data, event_type), 403, "client.access_denied", "type")
        assert event_type in body["message"] and CLIENT_ID in body["message"]
    assert hub.outbox_count() == 0


def test_agencies_not_in_the_access_list_are_refused(hub: Hub) -> None:
    foreign = new_code("000.00.00.H41")
    # The path's dossier is another province's, though the collecting agency is allowed.
    body = problem(hub.post(f"/v1/dossiers/{foreign}/payments", payment(), PAYMENT), 403,
                   "client.access_denied", "code")
    assert "000.00.00.H41" in body["message"]
    # The collecting agency is not allowed, though the dossier is.
    problem(hub.post(f"/v1/dossiers/{new_code()}/payments",
                     payment(agency_code="000.00.00.H41"), PAYMENT), 403,
            "client.access_denied", "agency_code")
    problem(hub.post(f"/v1/dossiers/{foreign}/postal-orders", postal_order(), POSTAL), 403,
            "client.access_denied", "agency_code")
    problem(hub.post(VERIFICATIONS, verification(dossier_code=foreign), VERIFICATION), 403,
            "client.access_denied", "agency_code")
    assert hub.outbox_count() == 0


def test_verification_without_dossier_needs_the_clients_own_agency(hub: Hub) -> None:
    """The other system (VN:GOV:000.00.00.H41:other) may act for H56 only: it may verify for
    an H56 dossier, but not for no dossier (that would be for H41, its own agency)."""
    other = hub.keys.signer(hub.keys.other)
    as_other = {"X-API-Key": OTHER_KEY}
    body = problem(hub.post(VERIFICATIONS, verification(), VERIFICATION, signer=other,
                            headers=as_other), 403, "client.access_denied", "dossier_code")
    assert OTHER_ID in body["message"] and "000.00.00.H41" in body["message"]
    message_id = accepted(hub.post(VERIFICATIONS, verification(dossier_code=new_code()),
                                   VERIFICATION, signer=other, headers=as_other))
    env = Envelope.from_bytes(outbox_row(hub, message_id).body)
    assert (env.source, env.agency) == (OTHER_ID, "000.00.00.H56")
    assert hub.outbox_count() == 1


# -- published where the adapters listen ------------------------------------------------------

def test_requests_reach_the_queues_the_adapters_bind(make_hub: Callable[..., Hub],
                                                     settings: Settings) -> None:
    adapters = discover()
    exchange = f"{settings.name_prefix}.events"
    queues = {}
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, "topic", durable=True)
        for name in ("payment", "postal", "population"):
            queues[name] = f"{settings.name_prefix}.test.{name}"
            ch.queue_declare(queues[name], durable=True)
            for binding in adapters[name].bindings:
                ch.queue_bind(queues[name], exchange, binding)
    finally:
        conn.close()
    hub = make_hub(settings=settings, registry=requests_registry(), relay=True,
                   relay_poll_interval=0.1)
    code = new_code()
    sent = {
        "payment": accepted(hub.post(f"/v1/dossiers/{code}/payments", payment(), PAYMENT)),
        "postal": accepted(hub.post(f"/v1/dossiers/{code}/postal-orders", postal_order(),
                                    POSTAL)),
        "population": accepted(hub.post(VERIFICATIONS, verification(), VERIFICATION)),
    }
    got: dict[str, list[str]] = {name: [] for name in queues}

    def arrived() -> bool:
        for name, queue in queues.items():
            got[name] += [props.message_id for props, _ in drain(settings.amqp_url, queue)]
        return all(got.values())

    wait_for(arrived, message="the requests in the adapters' queues")
    assert got == {name: [message_id] for name, message_id in sent.items()}
    wait_for(lambda: hub.outbox_count() == 0, message="rows marked published")
