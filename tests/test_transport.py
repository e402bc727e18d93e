"""One transport for every call of the hub (hub.transport): each of the five adapters, through
its worker's handler and its client, against a system on a real socket that answers 408 or 429
with Retry-After, 5xx, 401, 422, garbage, or nothing at all. The same failure is the same error
whatever the system, carrying the system's Retry-After; each call is counted; and the personal
data the request carried (a name, an identity number, a phone number), which the system echoes
in its answer, reaches no error message, no header of the copy the consumer parks or retries,
and no log line."""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from npsp_support import sample_dossier
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.adapters import AdapterContext, Event, discover, load_config
from hub.broker.metrics import REGISTRY
from hub.broker.names import Names
from hub.broker.retry import Park, decide, parked_headers, retry_headers
from hub.contracts import load_contract
from hub.envelope import Envelope
from hub.errors import ConfigError, HubError, InvalidMessage, PermanentError, RetryableError
from hub.model import Applicant
from hub.settings import PROJECT_ROOT, Settings
from hub.simulation import SimulatorServer, free_port
from hub.systemclient import HttpSystemConfig, SystemClient, json_outbound
from hub.transport import Request

NAME = "Nguyễn Văn An"
IDENTITY = "001090012345"
PHONE = "0912345678"
# What must never show: the values sent, and the forms a system echoes them in.
CLEAR = (NAME, NAME.upper(), IDENTITY, PHONE, "s3cret-pw")
UPSTREAM = "VN:GOV:000.00.00.H40:igate"
DOSSIER = "000.00.00.H56-250101-0001"
# The timeout is generous: a call that is not about a timeout must get the system's answer however
# loaded the machine (1.5 s once turned a 500 into system.timeout); HANG is the one that must fire.
QUICK = {"timeout": 30.0, "attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.02,
         "breaker_failures": 1000, "breaker_reset": 0.1, "rate_per_second": 0.0}
HANG = 1.5  # the timeout of the calls to a system that never answers


def _texts(body: bytes) -> list[str]:
    """Every text value of a JSON or XML request body."""
    try:
        doc = json.loads(body)
    except ValueError:
        try:
            return [t.strip() for t in etree.fromstring(body).itertext() if t.strip()]
        except etree.XMLSyntaxError:
            return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str | int) and not isinstance(node, bool):
            found.append(str(node))

    walk(doc)
    return found


@dataclass
class FaultySystem:
    """Answers any request with the current fault, echoing what it was sent (as systems do in
    their error texts), upper-cased too; ``canned`` paths get their JSON answer instead."""

    fault: tuple[str, int, dict[str, str]] = ("status", 503, {})
    canned: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    said: str = ""  # what its error replies say, instead of the echo

    def app(self) -> Starlette:
        async def answer(request: HttpRequest) -> Response:
            if request.url.path in self.canned:
                return JSONResponse(self.canned[request.url.path])
            self.calls.append(request.url.path)
            # Last first: what identifies the citizen ends a request, and must not be cut off.
            values = _texts(await request.body())[::-1]
            echo = "; ".join(values + [v.upper() for v in values])
            kind, status, headers = self.fault
            if kind == "hang":
                await asyncio.Event().wait()  # never answers: the caller's timeout must fire
            if kind == "garbage":
                return Response(f"<html><body>Lỗi hệ thống: {echo}</body></html>",
                                media_type="text/html")
            said = self.said or f"không xử lý được yêu cầu của {echo}"
            body = {"maLoi": "E99", "thongBao": said, "truong": "chuHoSo", "MaLoi": "99",
                    "MoTaLoi": said, "Status": "999", "Message": said, "error_code": 99,
                    "message": said, "error": said}
            return JSONResponse(body, status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[FaultySystem, str]]:
    faulty = FaultySystem()
    server = SimulatorServer(faulty.app())
    server.start()
    try:
        yield faulty, server.base_url
    finally:
        server.stop()


def _delivery(event_type: str, data: dict[str, Any]) -> Event:
    return Event(Envelope.new(source=UPSTREAM, type=event_type,
                              subject=data.get("dossier_code", DOSSIER), data=data,
                              agency="000.00.00.H56", procedure="2.002492"))


def _config(name: str, **values: Any) -> dict[str, Any]:
    config = dict(load_config(PROJECT_ROOT / "mappings", name))
    config.update(policy=QUICK, **values)
    return config


def _applicant() -> Applicant:
    return Applicant(identity_number=IDENTITY, name=NAME, phone=PHONE, address="1 Lê Lợi")


@dataclass(frozen=True)
class System:
    name: str
    operation: str  # the metrics' operation of the call that fails
    config: Callable[[str], dict[str, Any]]
    delivery: Callable[[], Event]
    canned: Callable[[dict[str, Any]], dict[str, dict[str, Any]]] = lambda config: {}


def _payment() -> Event:
    return _delivery("vn.gov.payment.requested", {
        "dossier_code": DOSSIER, "procedure_code": "2.002492", "agency_code": "000.00.00.H56",
        "reference": "LT0001", "amount": "150000",
        "payer": {"identity_number": IDENTITY, "name": NAME, "address": "1 Lê Lợi"},
    })


def _postal() -> Event:
    party = {"name": NAME, "address": "1 Lê Lợi, Sầm Sơn", "phone": PHONE}
    return _delivery("vn.gov.postal.pickup-requested", {
        "dossier_code": DOSSIER, "sender": {**party, "name": "Trung tâm Phục vụ hành chính công"},
        "receiver": party, "direction": "return"})


def _dossier() -> Event:
    dossier = sample_dossier(applicant=_applicant())
    return _delivery("vn.gov.dossier.submitted", dossier.model_dump(mode="json"))


def _citizen() -> Event:
    return _delivery("vn.gov.citizen.verification-requested", {
        "dossier_code": DOSSIER, "identity_number": IDENTITY, "name": NAME,
        "birth_date": "1990-01-15"})


def _population(url: str) -> dict[str, Any]:
    with (PROJECT_ROOT / "mappings" / "population" / "config.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    raw.pop("url_env", None)
    raw.update(url=f"{url}/DanCuService", policy=QUICK)
    return raw


def _npsp_login(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {config.get("auth_path", "/api/dvcqg/login"): {"error_code": 0, "session": "S-1"}}


SYSTEMS = {
    "payment": System("payment", "INIT", lambda url: _config("payment", base_url=url), _payment),
    "postal": System("postal", "create-order", lambda url: _config(
        "postal", base_url=url, pool={"ranges": [{"first": "TST000001", "last": "TST000009"}]}),
        _postal),
    "npsp": System("npsp", "DongBoHoSoMC", lambda url: _config("npsp", base_url=url), _dossier,
                   _npsp_login),
    "provincial": System("provincial", "submit", lambda url: _config("provincial", base_url=url),
                         _dossier),
    "population": System("population", "XacThucThongTinCongDan", _population, _citizen),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int
    headers: dict[str, str]
    error: type[HubError]
    code: str
    retry_after: tuple[float, float] | None = None  # the range it must fall in


def _in_30s() -> dict[str, str]:
    return {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=30),
                                           usegmt=True)}


FAULTS = {
    "408": Fault("status", 408, {"Retry-After": "7"}, RetryableError, "system.timeout", (7, 7)),
    "429": Fault("status", 429, {"Retry-After": "7"}, RetryableError, "system.busy", (7, 7)),
    "503-date": Fault("status", 503, {}, RetryableError, "system.unavailable", (20, 30)),
    "500": Fault("status", 500, {}, RetryableError, "system.unavailable"),
    "401": Fault("status", 401, {}, PermanentError, "system.unauthorized"),
    "422": Fault("status", 422, {}, PermanentError, "system.rejected"),
    "garbage": Fault("garbage", 200, {}, InvalidMessage, "system.bad_reply"),
    "no answer": Fault("hang", 200, {}, RetryableError, "system.timeout"),
}


def _calls(system: str, operation: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("lienthong_outbound_calls_total", {
        "system": system, "operation": operation, "outcome": outcome}) or 0.0


def _call(spec: System, config: dict[str, Any], tmp_path: Path) -> HubError:
    ctx = AdapterContext(settings=Settings(data_dir=tmp_path), config=config)

    async def main() -> None:
        handler: Any = discover()[spec.name].make_handler(ctx)
        try:
            await handler(spec.delivery())
        finally:
            await handler.aclose()

    with pytest.raises(HubError) as caught:
        asyncio.run(main())
    return caught.value


def _headers(error: HubError) -> dict[str, Any]:
    """The headers the consumer gives the copy it parks or sends to a retry tier."""
    now = datetime.now(UTC)
    decision = decide(error, 0, Names("lt"), [5.0])
    if isinstance(decision, Park):
        return parked_headers({}, decision, failed_attempt=0, parked_by="q", exchange="lt.events",
                              routing_key="x", now=now)
    code, message = error.code, error.message
    return retry_headers({}, decision, failed_attempt=0, code=code, message=message,
                         return_to="q", exchange="lt.events", routing_key="x", now=now)


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_one_translation_and_no_personal_data(
    name: str, fault: str, system: tuple[FaultySystem, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    faulty, url = system
    spec, expected = SYSTEMS[name], FAULTS[fault]
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", "transport-test-secret")
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "s3cret-pw")
    config = spec.config(url)
    if expected.kind == "hang":
        config["policy"] = {**config["policy"], "timeout": HANG}
    headers = _in_30s() if fault == "503-date" else expected.headers
    faulty.fault, faulty.canned = (expected.kind, expected.status, headers), spec.canned(config)
    faulty.calls.clear()
    before = _calls(spec.name, spec.operation, expected.code)

    with caplog.at_level(logging.DEBUG):
        error = _call(spec, config, tmp_path)

    assert type(error) is expected.error, error
    assert (error.code, error.origin) == (expected.code, f"system:{spec.name}")
    assert faulty.calls, "the system was called"
    if expected.retry_after is not None:
        assert isinstance(error, RetryableError) and error.retry_after is not None
        low, high = expected.retry_after
        assert low <= error.retry_after <= high
    elif isinstance(error, RetryableError):
        assert error.retry_after is None
    if expected.kind == "status":
        assert str(expected.status) in error.message
    assert _calls(spec.name, spec.operation, expected.code) == before + 1
    kept = json.dumps(_headers(error), ensure_ascii=False, default=str)
    for clear in CLEAR:
        assert clear not in str(error), f"{clear!r} in the error: {error}"
        assert clear not in kept, f"{clear!r} in the headers: {kept}"
        assert clear not in caplog.text, f"{clear!r} in the logs"


def test_the_systems_words_are_kept_masked(
    system: tuple[FaultySystem, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a system says about a refusal is kept (operators need it), masked: the province's
    own message and the field it names, its identity and phone numbers hidden, the name as
    initials."""
    faulty, url = system
    faulty.fault, faulty.canned = ("status", 422, {}), {}
    faulty.said = f"hồ sơ của {NAME.upper()}, số {IDENTITY}, điện thoại {PHONE} không hợp lệ"
    try:
        error = _call(SYSTEMS["provincial"], _config("provincial", base_url=url), tmp_path)
    finally:
        faulty.said = ""
    assert error.field == "chuHoSo"
    assert "hồ sơ của" in error.message and "không hợp lệ" in error.message
    assert "N.V.A." in error.message and "0010******45" in error.message
    assert "0912****78" in error.message


def test_a_system_that_needs_only_an_address_gets_its_calls_from_its_configuration(
    tmp_path: Path,
) -> None:
    """``hub.systemclient.json_outbound``: the adapter's ``base_url`` and ``[policy]`` make the
    hub's transport under its policy; an address left out is named, and a system that is down
    is the hub's one translation of failures (what the toy adapter in tests/plugins relies on)."""
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError) as missing:
        json_outbound(AdapterContext(settings=settings), "toy", "the toy system")
    assert missing.value.field == "base_url"
    config = {"base_url": f"http://127.0.0.1:{free_port()}", "policy": {"attempts": 1}}
    outbound = json_outbound(AdapterContext(settings=settings, config=config), "toy",
                             "the toy system")
    assert outbound.policy.config.attempts == 1

    async def call() -> None:
        try:
            await outbound.send(Request("inbox", "/inbox", body={"dossier": DOSSIER}))
        finally:
            await outbound.aclose()

    with pytest.raises(RetryableError) as down:
        asyncio.run(call())
    assert (down.value.code, down.value.origin) == ("system.unavailable", "system:toy")
    assert "the toy system cannot be reached" in down.value.message


def test_an_address_a_system_replies_with_is_an_http_url_or_the_reply_is_bad() -> None:
    """``SystemClient.url``: where a system sends the citizen next (a payment page)."""
    cfg = HttpSystemConfig.from_mapping({"base_url": "http://127.0.0.1:1"})
    client = SystemClient("toy", "the toy system", cfg, cfg.base_url,
                          load_contract(PROJECT_ROOT / "schemas" / "payment"))
    assert client.url({"Url": "https://pay.example/1"}, "Url", "-") == "https://pay.example/1"
    for carried in ({"Url": "javascript:alert(1)"}, {"Url": 7}, {}):
        with pytest.raises(PermanentError) as bad:
            client.url(carried, "Url", "the toy system accepted R1 but sent no usable address")
        assert (bad.value.code, bad.value.field, bad.value.origin) == (
            "system.bad_reply", "Url", "system:toy")
        assert bad.value.message.startswith("the toy system accepted R1 but sent no usable")
    asyncio.run(client.aclose())
