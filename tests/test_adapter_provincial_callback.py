"""What a province pushes to the hub, turned into canonical envelopes: the callback parser
alone, and through the hub's own ``POST /v1/callbacks/provincial`` (the real app on a socket)
that the simulator pushes to. The province calls as a client of the hub allowed that callback,
and only for the dossiers of the agencies it may act for; anything else is refused and kept
nowhere."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_api_support import (  # noqa: F401 - fixtures
    API_KEY,
    OTHER_KEY,
    Keys,
    build_hub,
    clients_config,
    keys_fixture,
    new_code,
)

from adapters.provincial import adapter
from adapters.provincial.simulator import (
    ProvincialSimulator,
    progress_update,
    status_update,
)
from hub.adapters import AdapterContext, load_config
from hub.api.auth import ClientRegistry
from hub.envelope import Envelope
from hub.errors import ClientError, HubError, ValidationError
from hub.model import ProgressStep, Status, StatusChange, parse_event_data
from hub.settings import PROJECT_ROOT, Settings
from hub.simulation import SimulatorServer
from hub.store import Store
from hub.testing.waiting import wait_for

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


@dataclass
class ProvincialHub:
    """The hub's entry point with the provincial adapter installed, on a socket of its own:
    igate (H56) may call the provincial callback, the other client (H41) may not."""

    settings: Settings
    store: Store
    server: SimulatorServer

    @property
    def url(self) -> str:
        return self.server.base_url + "/v1/callbacks/provincial"

    @property
    def kept(self) -> list[Envelope]:
        """What the hub kept, in order (its outbox: the relay is off)."""
        exchange = f"{self.settings.name_prefix}.events"
        return [Envelope.from_bytes(item.body)
                for item in self.store.outbox_pending(100_000, lease=None)
                if item.exchange == exchange]

    def kept_nothing(self, *codes: str) -> bool:
        return self.kept == [] and all(
            self.store.timeline(c) == [] and self.store.log_rows(subject=c) == []
            for c in codes)


@pytest.fixture
def hub(store_url: str, tmp_path: Path, keys: Keys) -> Iterator[ProvincialHub]:
    config = clients_config()
    config["clients"][0]["callbacks"] = ["provincial"]
    settings = Settings(data_dir=tmp_path, name_prefix=f"lt{uuid.uuid4().hex[:8]}")
    built = build_hub(settings, keys, store_url, adapters={"provincial": adapter},
                      registry=ClientRegistry.from_dict(config))
    server = SimulatorServer(built.app, lifespan="on")
    server.start()
    try:
        yield ProvincialHub(settings, built.store, server)
    finally:
        server.stop()
        built.store.close()


IGATE = {"X-API-Key": API_KEY}


def test_simulator_pushes_in_the_provincial_format(hub: ProvincialHub) -> None:
    code = new_code()
    with ProvincialSimulator(push_headers=IGATE) as sim:
        ok = sim.push(hub.url, [status_update(code, "DA_CO_KET_QUA", previous="DANG_XU_LY",
                                              sequence=5),
                                progress_update(code, "Đã ký giấy phép", status="DA_CO_KET_QUA")])
        assert ok.status_code == 202, ok.text
        assert [e.type for e in hub.kept] == ["vn.gov.dossier.status-changed",
                                              "vn.gov.dossier.progress-reported"]
        assert [e.event_type for e in hub.store.timeline(code)] == [
            "vn.gov.dossier.status-changed", "vn.gov.dossier.progress-reported"]
        bad = sim.push(hub.url, status_update(code, "DA_CO_KET_QUA", previous="DA_TRA_KET_QUA"))
        assert bad.status_code == 422
        assert bad.json()["code"] == "client.bad_transition"
        assert bad.json()["field"] == "trangThai"
        assert [p["status"] for p in sim.pushes] == [202, 422]
        assert len(hub.kept) == 2


def test_simulator_pushes_received_when_a_dossier_arrives(hub: ProvincialHub) -> None:
    from provincial_support import sample_dossier

    from adapters.provincial.mapping import load_mapping
    from adapters.provincial.translate import dossier_to_wire

    code = new_code()
    dossier = sample_dossier(code)
    doc = dossier_to_wire(dossier, load_mapping(PROJECT_ROOT / "mappings" / "provincial"))
    with ProvincialSimulator(auto_push_url=hub.url, push_headers=IGATE) as sim:
        import httpx

        assert httpx.post(sim.base_url + "/api/v1/hoso", json=doc).status_code == 201
        wait_for(lambda: hub.kept, timeout=5, message="the automatic 'received' push")
    [env] = hub.kept
    change = parse_event_data(env.type, env.data)
    assert isinstance(change, StatusChange)
    assert change.dossier_code == code and change.status is Status.RECEIVED


def test_an_unauthenticated_push_is_refused_and_keeps_nothing(hub: ProvincialHub) -> None:
    code = new_code()
    update = status_update(code, "DA_TIEP_NHAN", previous="CHO_TIEP_NHAN", sequence=2)
    with ProvincialSimulator() as sim:
        for headers, status, problem in (
                ({}, 401, "client.unauthenticated"),
                ({"X-API-Key": "not-a-key"}, 401, "client.unauthenticated"),
                ({"X-API-Key": OTHER_KEY}, 403, "client.access_denied")):  # not granted it
            answer = sim.push(hub.url, update, headers)
            assert (answer.status_code, answer.json()["code"]) == (status, problem)
    assert hub.kept_nothing(code)


def test_a_province_updates_only_its_agencies_dossiers(hub: ProvincialHub) -> None:
    mine, theirs = new_code("000.00.00.H56"), new_code("000.00.00.H57")
    with ProvincialSimulator(push_headers=IGATE) as sim:
        answer = sim.push(hub.url, status_update(theirs, "DA_TIEP_NHAN",
                                                 previous="CHO_TIEP_NHAN"))
        assert answer.status_code == 403, answer.text
        assert (answer.json()["code"], answer.json()["field"]) == ("client.access_denied",
                                                                   "agency")
        assert "000.00.00.H57" in answer.json()["message"]
        # One update of another agency's dossier in a batch refuses the whole batch.
        batch = [status_update(mine, "DA_TIEP_NHAN", previous="CHO_TIEP_NHAN"),
                 status_update(theirs, "DA_TIEP_NHAN", previous="CHO_TIEP_NHAN")]
        assert sim.push(hub.url, batch).status_code == 403
        assert hub.kept_nothing(mine, theirs)
        assert sim.push(hub.url, batch[:1]).status_code == 202
    [env] = hub.kept
    assert env.subject == mine
