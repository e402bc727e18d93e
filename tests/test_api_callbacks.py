"""Callbacks of external systems: dispatched by name to the adapter registered under it, whose
parser turns the call into canonical envelopes that the hub keeps like any accepted event."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    Hub,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.adapters import AdapterContext, AdapterSpec
from hub.envelope import Envelope
from hub.errors import ClientError

SECRET = "shared-secret"
SOURCE = "VN:GOV:000.00.00.G22:gateway"


def make_parser(ctx: AdapterContext) -> Callable[[bytes, dict[str, str]], list[Envelope]]:
    """A stand-in adapter: a checksummed JSON call, as a payment gateway makes."""
    assert ctx.events_exchange.endswith(".events") and ctx.store is not None

    def parse(body: bytes, headers: dict[str, str]) -> list[Envelope]:
        call = json.loads(body)
        expected = hashlib.sha256(f"{call['ref']}|{call['amount']}|{SECRET}".encode()).hexdigest()
        if call.get("checksum") != expected:
            raise ClientError("the checksum does not match the call", code="client.bad_checksum",
                              field="checksum", origin="system:gateway")
        data = {"dossier_code": call["dossier"], "reference": call["ref"],
                "transaction_id": call["txn"], "amount": call["amount"], "paid": True,
                "at": "2025-01-01T10:00:00+07:00"}
        return [Envelope.new(source=SOURCE, type="vn.gov.payment.completed",
                             subject=call["dossier"], data=data, agency="000.00.00.H56",
                             id=call["txn_uuid"])]

    return parse


def broken_parser(ctx: AdapterContext) -> Callable[[bytes, dict[str, str]], Any]:
    return lambda body, headers: "not envelopes"


ADAPTERS = {
    "gateway": AdapterSpec(name="gateway", description="test", bindings=[],
                           make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
                           make_callback=make_parser),
    "broken": AdapterSpec(name="broken", description="test", bindings=[],
                          make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
                          make_callback=broken_parser),
    "silent": AdapterSpec(name="silent", description="never calls", bindings=[],
                          make_handler=lambda ctx: None),  # type: ignore[arg-type,return-value]
}


def call(code: str, txn_uuid: str, checksum: str | None = None) -> bytes:
    ref, amount = "R1", "50000"
    digest = hashlib.sha256(f"{ref}|{amount}|{SECRET}".encode()).hexdigest()
    return json.dumps({"dossier": code, "ref": ref, "amount": amount, "txn": "T9",
                       "txn_uuid": txn_uuid, "checksum": checksum or digest}).encode()


@pytest.fixture
def hub(make_hub: Callable[..., Hub], store_url: str) -> Hub:
    return make_hub(store_url, adapters=ADAPTERS)


def test_callback_is_kept(hub: Hub) -> None:
    code = new_code()
    txn = str(uuid.uuid4())
    answer = hub.http.post("/v1/callbacks/gateway", content=call(code, txn))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"message_ids": [txn]}
    [item] = [i for i in hub.store.outbox_pending(1000, lease=None) if i.message_id == txn]
    env = Envelope.from_bytes(item.body)
    # Relayed by the hub: signed by it, the system it came from kept.
    assert env.source == hub.settings.hub_id and env.extensions["upstream"] == SOURCE
    assert item.routing_key == "payment.completed.000_00_00_H56.none"
    [entry] = hub.store.timeline(code)
    assert entry.source == "system:gateway" and entry.summary["paid"] is True
    # The system calls again with the same transaction: nothing new is kept.
    again = hub.http.post("/v1/callbacks/gateway", content=call(code, txn))
    assert again.status_code == 202 and again.json() == {"message_ids": [txn]}
    assert len(hub.store.timeline(code)) == 1


def test_callback_refusals(hub: Hub) -> None:
    bad = hub.http.post("/v1/callbacks/gateway",
                        content=call(new_code(), str(uuid.uuid4()), "0"))
    assert bad.status_code == 400
    assert bad.json()["code"] == "client.bad_checksum"
    assert bad.json()["origin"] == "system:gateway"
    unknown = hub.http.post("/v1/callbacks/nobody", content=b"{}")
    assert unknown.status_code == 404 and unknown.json()["field"] == "system"
    assert "gateway" in unknown.json()["message"]
    assert hub.http.post("/v1/callbacks/silent", content=b"{}").status_code == 404
    broken = hub.http.post("/v1/callbacks/broken", content=b"{}")
    assert broken.status_code == 500 and broken.json()["code"] == "server.config_invalid"
