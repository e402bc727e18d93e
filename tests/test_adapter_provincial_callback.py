"""What a province pushes to the hub, turned into canonical envelopes: the callback parser
alone, and behind a real HTTP endpoint the simulator pushes to over a socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.provincial import adapter
from adapters.provincial.simulator import (
    ProvincialSimulator,
    progress_update,
    status_update,
)
from hub.adapters import AdapterContext, load_config
from hub.envelope import Envelope
from hub.errors import ClientError, HubError, ValidationError
from hub.model import ProgressStep, Status, StatusChange, parse_event_data
from hub.settings import PROJECT_ROOT, Settings
from hub.simulation import SimulatorServer

CODE = "000.00.00.H56-250101-0001"
AT = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)  # 09:00 in Vietnam


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def callback(settings: Settings) -> Any:
    assert adapter.make_callback is not None
    ctx = AdapterContext(settings=settings,
                         config=load_config(PROJECT_ROOT / "mappings", "provincial"))
    return adapter.make_callback(ctx)


def body(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def test_one_status_change(callback: Any, settings: Settings) -> None:
    update = status_update(CODE, "DA_TIEP_NHAN", previous="CHO_TIEP_NHAN", at=AT,
                           sequence=2, officer="Phạm Văn Đức", procedure_code="1.010708")
    [env] = callback(body(update), {"content-type": "application/json"})
    assert isinstance(env, Envelope)
    assert env.type == "vn.gov.dossier.status-changed"
    assert env.source == settings.hub_id
    # The hub numbers the dossier's events when it keeps them; the province's own counter
    # travels apart, as a string (CloudEvents extension).
    assert (env.subject, env.agency, env.procedure, env.sequence) == (
        CODE, "000.00.00.H56", "1.010708", None)
    assert env.extensions["systemsequence"] == "2"
    assert json.loads(env.to_bytes())["systemsequence"] == "2"
    change = parse_event_data(env.type, env.data)
    assert isinstance(change, StatusChange)
    assert change.status is Status.RECEIVED and change.previous_status is Status.NEW
    assert change.at == AT
    assert change.officer == "Phạm Văn Đức"
    # The envelope is ready for the wire.
    assert Envelope.from_bytes(env.to_bytes()).data == env.data
    # The same update pushed again is the same message; another one is not.
    [again] = callback(body(update), {})
    assert again.id == env.id
    [other] = callback(body(update | {"ghiChu": "khác"}), {})
    assert other.id != env.id


def test_batch_of_status_and_progress(callback: Any) -> None:
    later = datetime(2025, 1, 3, 4, 0, tzinfo=UTC)
    updates = {"danhSach": [
        status_update(CODE, "DANG_XU_LY", at=AT),
        progress_update(CODE, "Thẩm định hồ sơ", at=later, department="Phòng KT-HT",
                        title="Chuyên viên"),
    ]}
    first, second = callback(body(updates), {})
    assert first.type == "vn.gov.dossier.status-changed"
    assert second.type == "vn.gov.dossier.progress-reported"
    step = parse_event_data(second.type, second.data)
    assert isinstance(step, ProgressStep)
    assert step.content == "Thẩm định hồ sơ" and step.status is Status.PROCESSING
    # Without the province's own counter there is no systemsequence (the time is no counter),
    # and no sequence: the hub gives it.
    assert first.sequence is None and second.sequence is None
    assert "systemsequence" not in first.extensions | second.extensions
    # The same update (same time, same facts) is still the same message.
    assert callback(body(updates), {})[0].id == first.id


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"danhSach": [status_update(CODE, "DA_TIEP_NHAN"),
                       status_update(CODE, "DA_TIEP_NHAN") | {"thoiGian": "hôm qua"}]},
         "danhSach[1].thoiGian"),
        ({"danhSach": [status_update(CODE, "HUY")]}, "danhSach[0].trangThai"),
        ({"danhSach": [progress_update(CODE, "x") | {"mauSac": "đỏ"}]}, "danhSach[0].mauSac"),
        ({"danhSach": [progress_update(CODE, "")]}, "danhSach[0].noiDung"),
        ({"danhSach": []}, "danhSach"),
        ({"danhSach": ["TRANG_THAI"]}, "danhSach[0]"),
        (status_update(CODE, "DA_TIEP_NHAN") | {"maHoSo": "H56-xyz"}, "maHoSo"),
        ({"loaiCapNhat": "THANH_TOAN"}, "loaiCapNhat"),
    ],
)
def test_bad_bodies_name_the_field(callback: Any, doc: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        callback(body(doc), {})
    assert err.value.field == field
    assert err.value.http_status == 422


def test_unparseable_and_oversized_bodies(callback: Any) -> None:
    with pytest.raises(ClientError) as err:
        callback(b"{not json", {})
    assert err.value.code == "client.unparseable"
    too_many = {"danhSach": [status_update(CODE, "DANG_XU_LY")] * 501}
    with pytest.raises(HubError) as too:
        callback(body(too_many), {})
    assert too.value.code == "client.too_many" and too.value.field == "danhSach"


class HubStub:
    """A stand-in for the hub's callback endpoint, running the adapter's real callback."""

    def __init__(self, callback: Any) -> None:
        self.received: list[Envelope] = []
        app = FastAPI()

        @app.post("/v1/callbacks/provincial")
        async def receive(request: Request) -> JSONResponse:
            try:
                envelopes = callback(await request.body(), dict(request.headers))
            except HubError as exc:
                return JSONResponse(exc.to_dict(), status_code=exc.http_status)
            self.received.extend(envelopes)
            return JSONResponse({"accepted": [e.id for e in envelopes]}, status_code=202)

        self.server = SimulatorServer(app)

    @property
    def url(self) -> str:
        return self.server.base_url + "/v1/callbacks/provincial"


@pytest.fixture
def hub(callback: Any) -> Iterator[HubStub]:
    stub = HubStub(callback)
    stub.server.start()
    yield stub
    stub.server.stop()


def test_simulator_pushes_in_the_provincial_format(hub: HubStub) -> None:
    with ProvincialSimulator() as sim:
        ok = sim.push(hub.url, [status_update(CODE, "DA_CO_KET_QUA", previous="DANG_XU_LY",
                                              sequence=5),
                                progress_update(CODE, "Đã ký giấy phép", status="DA_CO_KET_QUA")])
        assert ok.status_code == 202
        assert [e.type for e in hub.received] == ["vn.gov.dossier.status-changed",
                                                  "vn.gov.dossier.progress-reported"]
        bad = sim.push(hub.url, status_update(CODE, "DA_CO_KET_QUA", previous="DA_TRA_KET_QUA"))
        assert bad.status_code == 422
        assert bad.json()["code"] == "client.bad_transition"
        assert bad.json()["field"] == "trangThai"
        assert [p["status"] for p in sim.pushes] == [202, 422]


def test_simulator_pushes_received_when_a_dossier_arrives(hub: HubStub) -> None:
    from adapters.provincial.examples import sample_dossier
    from adapters.provincial.mapping import load_mapping
    from adapters.provincial.translate import dossier_to_wire

    doc = dossier_to_wire(sample_dossier(), load_mapping(PROJECT_ROOT / "mappings" / "provincial"))
    with ProvincialSimulator(auto_push_url=hub.url) as sim:
        import httpx

        assert httpx.post(sim.base_url + "/api/v1/hoso", json=doc).status_code == 201
        wait_for(lambda: hub.received, timeout=5, message="the automatic 'received' push")
    [env] = hub.received
    change = parse_event_data(env.type, env.data)
    assert isinstance(change, StatusChange)
    assert change.dossier_code == CODE and change.status is Status.RECEIVED
