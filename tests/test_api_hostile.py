"""Hostile bodies at every entry point that reads JSON, the real adapters behind the callbacks:
whatever the body, never a 5xx. A sibling of the property run of test_api_openapi.py, which
draws its requests from the contracts; this one starts from a valid body of each route (so
that what it breaks reaches validation, the adapters and the store) and makes it hostile in a
few ways at once:

- a time anywhere from year 1 to 9999, naive or with an offset up to ±23:59 (in each route's
  own format: RFC 3339 for REST, the province's dd/MM/yyyy, yyyyMMddHHmmss for the gateway and
  the postal service), a date of birth or a year of birth anywhere;
- a lone surrogate, as the raw JSON escape ``\\udXXX``, in a text or a member name;
- arrays or objects nested up to thousands of levels deep, in a member of their own;
- numbers JSON cannot carry (``NaN``, ``1e400``, 5,000 digits).

REST requests are authenticated and signed over the exact hostile bytes, so they get past the
signature to the parser; a gateway callback carries a valid checksum for a payment the hub
initiated, a postal webhook names an order the hub placed, so their times reach the model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_api_requests import (
    PAYMENT,
    POSTAL,
    VERIFICATION,
    payment,
    postal_order,
    requests_registry,
    verification,
)
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    PROGRESS,
    STATUS,
    SUBMITTED,
    Hub,
    dossier,
    keys_fixture,
    make_hub_fixture,
    new_code,
    sign,
)

from adapters.payment import ledger
from adapters.payment.mapping import checksum
from adapters.payment.runtime import PaymentRuntime
from adapters.postal import orders
from adapters.postal.runtime import PostalRuntime
from hub.adapters import context_for

SECRET = "hostile-test-secret"
POSTAL_TOKEN = "hostile-test-postal-token"

# -- times -----------------------------------------------------------------------------------

EDGE_MOMENTS = [datetime.min, datetime.max, datetime(1, 1, 1, 0, 0, 1), datetime(999, 12, 31),
                datetime(1000, 1, 1), datetime(1899, 12, 31, 23, 59, 59), datetime(1900, 1, 1),
                datetime(1970, 1, 1), datetime(2200, 12, 31, 23, 59, 59, 999999),
                datetime(2201, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]
EDGE_OFFSETS = [timedelta(hours=14), -timedelta(hours=14), -timedelta(hours=12),
                timedelta(hours=7), timedelta(0), timedelta(hours=23, minutes=59),
                -timedelta(hours=23, minutes=59)]
moments = st.sampled_from(EDGE_MOMENTS) | st.datetimes()
offsets = (st.none() | st.sampled_from(EDGE_OFFSETS)
           | st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m)))


def rfc3339(moment: datetime, offset: timedelta | None) -> str:
    if offset is None:
        return moment.isoformat()  # naive: Vietnam time for the hub
    text = moment.replace(tzinfo=timezone(offset)).isoformat()
    return text.replace("+00:00", "Z") if moment.second % 2 else text


def compact(moment: datetime, offset: timedelta | None) -> str:
    """yyyyMMddHHmmss with a four-digit year (strftime writes year 1 as "1")."""
    return (f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
            f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}")


def province(moment: datetime, offset: timedelta | None) -> str:
    return (f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")


# -- the routes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    path: str  # {code}: a dossier code of its own per request
    event_type: str | None  # signed for this type; None: a system's callback, unsigned
    body: Callable[[Hub, str], dict[str, Any]]  # a valid body for the dossier code
    times: tuple[str, ...] = ()
    time_format: Callable[[datetime, timedelta | None], str] = rfc3339
    texts: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    years: tuple[str, ...] = ()
    seal: Callable[[Hub, dict[str, Any]], dict[str, Any]] = field(default=lambda hub, b: b)
    # The headers a callback's caller authenticates with (every door is shut without them).
    credentials: tuple[tuple[str, str], ...] = ()


def payment_runtime(hub: Hub) -> PaymentRuntime:
    return PaymentRuntime.from_context(context_for(hub.settings, "payment", store=hub.store))


def postal_runtime(hub: Hub) -> PostalRuntime:
    return PostalRuntime.from_context(context_for(hub.settings, "postal", store=hub.store))


def gateway_callback(hub: Hub, code: str) -> dict[str, Any]:
    """The callback for a payment this hub initiated (a transaction of its ledger)."""
    rt = payment_runtime(hub)
    reference = f"LT{uuid.uuid4().hex[:16].upper()}"
    rt.ledger.add(ledger.Transaction(
        reference=reference, partner=rt.cfg.partner_code, dossier_code=code,
        agency="000.00.00.H56", procedure="2.002492", amount=150000, request_id=str(uuid.uuid4()),
        correlation_id=None, created_at=datetime.now(UTC)))
    return {"LoaiBanTin": "PAY", "MaLoi": "00", "MaDoiTac": rt.cfg.partner_code,
            "MaThamChieu": reference, "SoTien": 150000, "MaTienTe": "VND",
            "MaGiaoDich": f"GD{uuid.uuid4().hex[:12]}", "MaNganHang": "VCB",
            "ThoiGianGD": "20250101084512", "ThongTinGiaoDich": "Lệ phí hồ sơ"}


def seal_callback(hub: Hub, body: dict[str, Any]) -> dict[str, Any]:
    rt = payment_runtime(hub)
    return checksum.sign(body, rt.mapping.checksum_orders["callback"], SECRET)


def postal_webhook(hub: Hub, code: str) -> dict[str, Any]:
    """A tracking entry of an order this hub placed."""
    rt = postal_runtime(hub)
    waybill = f"EB{uuid.uuid4().int % 10**9:09d}VN"
    rt.orders.add(orders.Order(
        waybill=waybill, order_key=str(uuid.uuid4()), order_number=code,
        customer_code=rt.cfg.customer_code, dossier_code=code, direction="return",
        agency="000.00.00.H56", procedure="2.002492", request_id=str(uuid.uuid4()),
        correlation_id=None, created_at=datetime.now(UTC)))
    return {"OrderNumber": code, "ItemCode": waybill, "State": "2", "Time": "20250102090000",
            "Note": "Đang phát"}


def province_update(hub: Hub, code: str) -> dict[str, Any]:
    return {"loaiCapNhat": "TRANG_THAI", "maHoSo": code, "trangThai": "DA_TIEP_NHAN",
            "thoiGian": "02/01/2025 09:00:00", "canBo": "Phạm Văn Đức", "soThuTu": 2,
            "ghiChu": "đã tiếp nhận"}


ROUTES = [
    Route("/v1/dossiers", SUBMITTED, lambda hub, code: dossier(code),
          times=("submitted_at", "received_at", "due_at", "resolved_at", "returned_at",
                 "refused_at"),
          texts=("procedure_name", "note", "handling_unit", "applicant.name"),
          numbers=("channel",), dates=("applicant.birth_date",)),
    Route("/v1/dossiers/{code}/status", STATUS,
          lambda hub, code: {"dossier_code": code, "status": 2, "at": "2025-01-01T08:00:00"},
          times=("at",), texts=("officer", "note"), numbers=("status",)),
    Route("/v1/dossiers/{code}/progress", PROGRESS,
          lambda hub, code: {"dossier_code": code, "officer": "Lê Thị B",
                             "content": "thẩm định", "status": 2,
                             "at": "2025-01-02T09:00:00+07:00"},
          times=("at", "started_at", "due_at"), texts=("officer", "content", "department"),
          numbers=("status",)),
    Route("/v1/dossiers/{code}/payments", PAYMENT, lambda hub, code: payment(dossier_code=code),
          texts=("description", "payer.name"), numbers=("amount",),
          dates=("payer.birth_date",)),
    Route("/v1/dossiers/{code}/postal-orders", POSTAL,
          lambda hub, code: postal_order(dossier_code=code),
          texts=("description", "receiver.address"), numbers=("cod_amount",)),
    Route("/v1/citizens/verifications", VERIFICATION,
          lambda hub, code: verification(dossier_code=code),
          texts=("name",), numbers=("birth_year",), dates=("birth_date",),
          years=("birth_year",)),
    Route("/v1/callbacks/provincial", None, province_update, times=("thoiGian",),
          time_format=province, texts=("canBo", "ghiChu"), numbers=("soThuTu",),
          credentials=(("X-API-Key", API_KEY),)),
    Route("/v1/callbacks/payment", None, gateway_callback, times=("ThoiGianGD",),
          time_format=compact, texts=("ThongTinGiaoDich",), numbers=("SoTien",),
          seal=seal_callback),
    Route("/v1/callbacks/postal", None, postal_webhook, times=("Time",), time_format=compact,
          texts=("Note",), numbers=("State",), credentials=(("X-Postal-Token", POSTAL_TOKEN),)),
]

# -- what makes a body hostile ---------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(
    lambda c: f"\\u{c:04x}" if c % 3 else f"\\u{c:04X}")
texts_around = st.sampled_from(["", "a", "Nguyễn", "\\ud83d\\ude00"])  # a valid pair too
deep_values = st.tuples(st.sampled_from(["[", '{"a":']),
                        st.integers(1, 40) | st.integers(40, 5000))
raw_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000,
                               "1e-400", "-0", "123456789012345678901234567890"])
KINDS = ["time", "date", "year", "surrogate", "surrogate name", "deep", "number"]


def _set(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


class Raw:
    """Placeholders for what json.dumps cannot write (or would escape): raw JSON text."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        token = f"@@raw{len(self.parts)}@@"
        self.parts[token] = text
        return token

    def substitute(self, content: bytes) -> bytes:
        for token, text in self.parts.items():
            content = content.replace(f'"{token}"'.encode(), text.encode())
        return content


def hostile_body(data: st.DataObject, hub: Hub, route: Route, code: str) -> bytes:
    body = route.body(hub, code)
    raw = Raw()
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True),
                      label="kinds")
    for kind in kinds:
        if kind == "time" and route.times:
            where = data.draw(st.sampled_from(route.times), label="time field")
            _set(body, where, route.time_format(data.draw(moments, label="moment"),
                                                data.draw(offsets, label="offset")))
        elif kind == "date" and route.dates:
            day = data.draw(st.sampled_from([m.date() for m in EDGE_MOMENTS]) | st.dates(),
                            label="date")
            _set(body, data.draw(st.sampled_from(route.dates)), day.isoformat())
        elif kind == "year" and route.years:
            _set(body, data.draw(st.sampled_from(route.years)),
                 data.draw(st.sampled_from([0, -1, 1, 1849, 1850, 2200, 2201, 9999, 10_000])
                           | st.integers(), label="year"))
        elif kind == "surrogate" and route.texts:
            text = (data.draw(texts_around, label="before") + data.draw(surrogates)
                    + data.draw(texts_around, label="after"))
            _set(body, data.draw(st.sampled_from(route.texts), label="text field"),
                 raw(f'"{text}"'))
        elif kind == "surrogate name":
            body[raw(f'"x{data.draw(surrogates)}"')] = 1
        elif kind == "deep":
            opener, depth = data.draw(deep_values, label="nesting")
            closer = "]" if opener == "[" else "}"
            inner = opener * depth + ("" if opener == "[" else "1") + closer * depth
            where = data.draw(st.sampled_from(["x", *route.texts]), label="deep field")
            _set(body, where, raw(inner))
        elif kind == "number" and route.numbers:
            _set(body, data.draw(st.sampled_from(route.numbers), label="number field"),
                 raw(data.draw(raw_numbers, label="number")))
    event(f"{route.path}: {'+'.join(sorted(kinds))}")
    body = route.seal(hub, body)
    ascii_only = data.draw(st.booleans(), label="ensure_ascii")
    return raw.substitute(json.dumps(body, ensure_ascii=ascii_only).encode())


@pytest.fixture
def hub(make_hub: Callable[..., Hub], monkeypatch: pytest.MonkeyPatch) -> Hub:
    # The installed adapters (payment, postal, provincial take callbacks), as `lienthong
    # serve` runs them; the gateway's checksum secret and the postal webhook's token (their
    # doors are shut without them), the province calling as a client (requests_registry).
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    monkeypatch.setenv("LIENTHONG_POSTAL_WEBHOOK_TOKEN", POSTAL_TOKEN)
    return make_hub(registry=requests_registry(), adapters=None)


def _post(hub: Hub, route: Route, code: str, content: bytes) -> Any:
    """``content`` to ``route`` for dossier ``code``, signed and with the API key when the
    route takes an upstream's event, with the caller's credentials for a callback."""
    headers = {"Content-Type": "application/json", **dict(route.credentials)}
    if route.event_type is not None:
        headers["X-API-Key"] = API_KEY
        headers["X-Signature"] = sign(hub.client_signer, content, route.event_type)
    return hub.http.post(route.path.replace("{code}", code), content=content, headers=headers)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_hostile_body_makes_the_hub_fail(hub: Hub, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(ROUTES), label="route")
    code = new_code()
    content = hostile_body(data, hub, route, code)
    answer = _post(hub, route, code, content)
    event(f"{route.path} -> {answer.status_code}")
    assert answer.status_code < 500, (answer.status_code, answer.text, content[:300])
    if answer.status_code >= 400:
        problem = answer.json()
        assert problem["code"] and problem["origin"] == "hub" and problem["message"]


@pytest.mark.parametrize("route", ROUTES, ids=[r.path for r in ROUTES])
def test_the_valid_bodies_are_taken(hub: Hub, route: Route) -> None:
    """The bodies the property run makes hostile are valid: what it finds is the hostility."""
    code = new_code()
    content = json.dumps(route.seal(hub, route.body(hub, code)), ensure_ascii=False).encode()
    answer = _post(hub, route, code, content)
    assert answer.status_code == 202, answer.text
