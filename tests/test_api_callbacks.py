"""Callbacks of external systems: dispatched by name to the adapter registered under it, whose
parser turns the call into canonical envelopes that the hub keeps like any accepted event.

Every callback door is shut by default: a system that proves its calls itself (here the
"gateway", a checksum with a shared secret) is refused until its secret is configured; any
other (here the "tracker") is called by a client of the hub allowed that callback, and only
for the agencies it may act for. A refusal keeps nothing, is counted and logged with the
caller's address. Through the real app (``create_app``) and its routes."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    CLIENT_ID,
    OTHER_KEY,
    Hub,
    clients_config,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub.adapters import AdapterContext, AdapterSpec
from hub.api.auth import ClientRegistry, request_address
from hub.envelope import Envelope
from hub.errors import ClientError

SECRET = "shared-secret"
SECRET_ENV = "LIENTHONG_TEST_GATEWAY_SECRET"
SOURCE = "VN:GOV:000.00.00.G22:gateway"
STATUS = "vn.gov.dossier.status-changed"


def make_parser(ctx: AdapterContext) -> Callable[[bytes, dict[str, str]], list[Envelope]]:
    """A stand-in adapter: a checksummed JSON call, as a payment gateway makes."""
    assert ctx.store is not None

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


# What the tracker's parser saw: (body, the caller's address as the hub tells it).
TRACKER_CALLS: list[tuple[bytes, str | None]] = []


def make_tracker(ctx: AdapterContext) -> Callable[[bytes, dict[str, str]], list[Envelope]]:
    """A stand-in of a system whose callers are clients of the hub (as a province's one-stop
    system pushing status changes): {"updates": [{"dossier": code, "status": n}, ...]}."""

    def parse(body: bytes, headers: dict[str, str]) -> list[Envelope]:
        TRACKER_CALLS.append((body, request_address()))
        envelopes = []
        for update in json.loads(body)["updates"]:
            code = update["dossier"]
            envelopes.append(Envelope.new(
                source=ctx.settings.hub_id, type=STATUS, subject=code,
                agency=update.get("agency", code.split("-")[0]),
                data={"dossier_code": code, "status": update["status"],
                      "at": "2025-01-01T10:00:00+07:00"}))
        return envelopes

    return parse


def broken_parser(ctx: AdapterContext) -> Callable[[bytes, dict[str, str]], Any]:
    return lambda body, headers: "not envelopes"


def _spec(name: str, **kwargs: Any) -> AdapterSpec:
    return AdapterSpec(name=name, description="test", bindings=[],
                       make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
                       **kwargs)


ADAPTERS = {
    "gateway": _spec("gateway", make_callback=make_parser,
                     callback_secrets=lambda ctx: [SECRET_ENV]),
    "tracker": _spec("tracker", make_callback=make_tracker),
    "broken": _spec("broken", make_callback=broken_parser),
    "silent": _spec("silent"),
    "nameless": _spec("nameless", make_callback=make_parser, callback_secrets=lambda ctx: []),
}


def registry() -> ClientRegistry:
    """igate (H56*) may call the tracker's and the broken adapter's callbacks; the other
    client (H41) none."""
    config = clients_config()
    config["clients"][0]["callbacks"] = ["tracker", "broken"]
    return ClientRegistry.from_dict(config)


def call(code: str, txn_uuid: str, checksum: str | None = None) -> bytes:
    ref, amount = "R1", "50000"
    digest = hashlib.sha256(f"{ref}|{amount}|{SECRET}".encode()).hexdigest()
    return json.dumps({"dossier": code, "ref": ref, "amount": amount, "txn": "T9",
                       "txn_uuid": txn_uuid, "checksum": checksum or digest}).encode()


def updates(*codes: str, **extra: Any) -> bytes:
    return json.dumps({"updates": [{"dossier": c, "status": 2, **extra} for c in codes]}).encode()


@pytest.fixture
def hub(make_hub: Callable[..., Hub], store_url: str, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    TRACKER_CALLS.clear()
    return make_hub(store_url, adapters=ADAPTERS, registry=registry())


def kept_nothing(hub: Hub, *codes: str) -> bool:
    """Nothing of the calls about ``codes`` reached the message log, the outbox or a
    timeline."""
    return (hub.outbox_count() == 0
            and all(not hub.store.timeline(c) and not hub.store.log_rows(subject=c)
                    for c in codes))


def refused(hub: Hub, door: str, code: str) -> float:
    """``lienthong_refused_total{door, code}`` as the app's /metrics shows it."""
    text = hub.http.get("/metrics").text
    # Prometheus's text format sorts the labels by name.
    match = re.search(rf'^lienthong_refused_total\{{code="{re.escape(code)}",'
                      rf'door="{re.escape(door)}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


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
    code = new_code()
    bad = hub.http.post("/v1/callbacks/gateway", content=call(code, str(uuid.uuid4()), "0"))
    assert bad.status_code == 400
    assert bad.json()["code"] == "client.bad_checksum"
    assert bad.json()["origin"] == "system:gateway"
    assert kept_nothing(hub, code)
    unknown = hub.http.post("/v1/callbacks/nobody", content=b"{}")
    assert unknown.status_code == 404 and unknown.json()["field"] == "system"
    assert unknown.json()["code"] == "client.unknown_system"
    # The installed adapters are not listed to whoever guesses a name.
    assert not any(name in unknown.json()["message"] for name in ("gateway", "tracker"))
    assert hub.http.post("/v1/callbacks/silent", content=b"{}").status_code == 404
    broken = hub.http.post("/v1/callbacks/broken", content=b"{}",
                           headers={"X-API-Key": API_KEY})
    assert broken.status_code == 500 and broken.json()["code"] == "server.config_invalid"


def test_a_callback_is_shut_until_its_secret_is_set(make_hub: Callable[..., Hub],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="hub.api.callbacks"):
        hub = make_hub(adapters=ADAPTERS, registry=registry())
    # Said at start-up, naming the variable that opens it.
    warnings = [r.getMessage() for r in caplog.records if r.name == "hub.api.callbacks"]
    assert any("/v1/callbacks/gateway" in w and SECRET_ENV in w for w in warnings), warnings
    assert any("/v1/callbacks/nameless" in w for w in warnings), warnings

    code = new_code()
    # Even a call with a valid checksum (for the secret the gateway holds) is refused.
    shut = hub.http.post("/v1/callbacks/gateway", content=call(code, str(uuid.uuid4())))
    assert shut.status_code == 503, shut.text
    assert shut.json()["code"] == "server.secret_missing"
    assert SECRET_ENV in shut.json()["message"]
    assert kept_nothing(hub, code)
    assert refused(hub, "callback:gateway", "server.secret_missing") == 1
    # An adapter that proves its calls itself but names no secret stays shut too.
    assert hub.http.post("/v1/callbacks/nameless",
                         content=call(code, str(uuid.uuid4()))).status_code == 503
    # A blank variable is no secret.
    monkeypatch.setenv(SECRET_ENV, "")
    assert hub.http.post("/v1/callbacks/gateway",
                         content=call(code, str(uuid.uuid4()))).status_code == 503
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert hub.http.post("/v1/callbacks/gateway",
                         content=call(code, str(uuid.uuid4()))).status_code == 202


def test_an_unauthenticated_callback_is_refused_before_its_body_is_read(hub: Hub) -> None:
    code = new_code()
    for headers, status in (({}, 401), ({"X-API-Key": "wrong"}, 401),
                            ({"Authorization": "Bearer forged"}, 401),
                            ({"X-API-Key": OTHER_KEY}, 403)):  # a client, not allowed it
        answer = hub.http.post("/v1/callbacks/tracker", content=updates(code), headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.json()["origin"] == "hub"
    assert answer.json()["code"] == "client.access_denied"
    assert answer.json()["field"] == "system" and "tracker" in answer.json()["message"]
    # The adapter never saw the bodies; nothing was kept anywhere.
    assert TRACKER_CALLS == []
    assert kept_nothing(hub, code)
    assert refused(hub, "callback:tracker", "client.unauthenticated") == 3
    assert refused(hub, "callback:tracker", "client.access_denied") == 1
    # The client allowed it is let in.
    ok = hub.http.post("/v1/callbacks/tracker", content=updates(code),
                       headers={"X-API-Key": API_KEY})
    assert ok.status_code == 202, ok.text
    [entry] = hub.store.timeline(code)
    assert entry.event_type == STATUS and entry.source == "system:tracker"


def test_a_callback_touches_only_the_agencies_of_its_client(hub: Hub) -> None:
    mine, theirs = new_code("000.00.00.H56"), new_code("000.00.00.H57")
    key = {"X-API-Key": API_KEY}
    for body in (updates(theirs),  # another agency's dossier
                 updates(mine, theirs),  # one bad update refuses the whole call
                 updates(theirs, agency="000.00.00.H56"),  # its code says H57, whatever else
                 updates(mine, agency="000.00.00.H57")):  # and the other way round
        answer = hub.http.post("/v1/callbacks/tracker", content=body, headers=key)
        assert answer.status_code == 403, answer.text
        problem = answer.json()
        assert (problem["code"], problem["field"]) == ("client.access_denied", "agency")
        assert "000.00.00.H57" in problem["message"] and CLIENT_ID in problem["message"]
    assert kept_nothing(hub, mine, theirs)
    assert refused(hub, "callback:tracker", "client.access_denied") == 4


def test_refusals_are_logged_with_the_true_peer(make_hub: Callable[..., Hub],
                                               caplog: pytest.LogCaptureFixture) -> None:
    forged = {"X-Forwarded-For": "198.51.100.7"}
    # From a peer that is no trusted proxy, X-Forwarded-For says nothing.
    outsider = make_hub(adapters=ADAPTERS, registry=registry(), peer=("203.0.113.9", 40000))
    with caplog.at_level(logging.INFO, logger="hub.api.metrics"):
        assert outsider.http.post("/v1/callbacks/tracker", content=updates(new_code()),
                                  headers=forged).status_code == 401
    [line] = [r for r in caplog.records if r.name == "hub.api.metrics"]
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert "203.0.113.9" in text and "198.51.100.7" not in text
    assert "client.unauthenticated" in text and "callback:tracker" in text
    # From the TLS terminator beside the hub (loopback, trusted by default) the client it
    # forwards is the caller: the nearest hop that is no trusted proxy, read from the right.
    caplog.clear()
    proxied = make_hub(adapters=ADAPTERS, registry=registry(), peer=("127.0.0.1", 40000))
    with caplog.at_level(logging.INFO, logger="hub.api.metrics"):
        for chain in ("198.51.100.7", "10.0.0.1, 198.51.100.7, 127.0.0.1",
                      "not-an-address, 198.51.100.7"):  # what is left of it is not read
            assert proxied.http.post("/v1/callbacks/tracker", content=b"{}",
                                     headers={"X-Forwarded-For": chain}).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.api.metrics"]
    assert len(lines) == 3 and all("from 198.51.100.7 " in line for line in lines), lines
    # An adapter asks the hub for the caller's address (request_address), never the header.
    assert proxied.http.post("/v1/callbacks/tracker", content=updates(new_code()),
                             headers={"X-API-Key": API_KEY, **forged}).status_code == 202
    assert outsider.http.post("/v1/callbacks/tracker", content=updates(new_code()),
                              headers={"X-API-Key": API_KEY, **forged}).status_code == 202
    assert [address for _, address in TRACKER_CALLS[-2:]] == ["198.51.100.7", "203.0.113.9"]
