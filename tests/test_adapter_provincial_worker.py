"""The provincial worker and client against the simulator over a real socket: delivery, echo
avoidance, routing per province, and every kind of failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from provincial_support import (
    DOSSIER_CODE,
    PORTAL_SOURCE,
    PROVINCE_SOURCE,
    sample_dossier,
)

from adapters.provincial import adapter
from adapters.provincial.mapping import load_mapping
from adapters.provincial.simulator import ProvincialSimulator
from adapters.provincial.translate import dossier_to_wire
from adapters.provincial.worker import ProvincialHandler, make_handler
from hub.adapters import AdapterContext, Event, load_config
from hub.envelope import Envelope
from hub.errors import InvalidMessage, PermanentError, RetryableError
from hub.settings import PROJECT_ROOT, Settings

T = TypeVar("T")
MAPPING = load_mapping(PROJECT_ROOT / "mappings" / "provincial")


@pytest.fixture
def sim() -> Iterator[ProvincialSimulator]:
    with ProvincialSimulator() as s:
        yield s


def context(tmp_path: Path, base_url: str, **overrides: Any) -> AdapterContext:
    config = load_config(PROJECT_ROOT / "mappings", "provincial")
    config["base_url"] = base_url
    config["policy"] = {"timeout": 30.0, "attempts": 1, "backoff_initial": 0.001,
                        "backoff_max": 0.002, **overrides.pop("policy", {})}
    config.update(overrides)
    return AdapterContext(settings=Settings(data_dir=tmp_path), config=config)


def delivery(data: Any, *, source: str = PORTAL_SOURCE,
             event_type: str = "vn.gov.dossier.submitted") -> Event:
    return Event(Envelope.new(source=source, type=event_type, subject=DOSSIER_CODE, data=data,
                              agency="000.20.31.H56", procedure="1.010708"))


def submitted(code: str = DOSSIER_CODE, source: str = PORTAL_SOURCE, **changes: Any) -> Event:
    return delivery(sample_dossier(code, **changes).model_dump(mode="json"), source=source)


def run(ctx: AdapterContext, go: Callable[[ProvincialHandler], Awaitable[T]]) -> T:
    async def main() -> T:
        handler = make_handler(ctx)
        try:
            return await go(handler)
        finally:
            await handler.aclose()

    return asyncio.run(main())


def test_spec() -> None:
    assert adapter.name == "provincial" and list(adapter.bindings) == ["dossier.submitted.#"]
    assert adapter.make_callback is not None and adapter.make_simulator is not None


def test_dossier_from_the_portal_is_delivered(sim: ProvincialSimulator, tmp_path: Path) -> None:
    d = submitted()
    assert run(context(tmp_path, sim.base_url), lambda h: h(d)) == []
    assert sim.dossier(DOSSIER_CODE) == dossier_to_wire(sample_dossier(), MAPPING)
    assert sim.deliveries == [{"maHoSo": DOSSIER_CODE, "idempotency_key": d.envelope.id}]


def test_repeat_delivery_is_accepted(sim: ProvincialSimulator, tmp_path: Path) -> None:
    async def go(h: ProvincialHandler) -> None:
        await h(submitted())
        await h(submitted())

    run(context(tmp_path, sim.base_url), go)
    assert len(sim.deliveries) == 2 and sim.dossier(DOSSIER_CODE) is not None


def test_own_dossiers_are_not_echoed(sim: ProvincialSimulator, tmp_path: Path) -> None:
    run(context(tmp_path, sim.base_url), lambda h: h(submitted(source=PROVINCE_SOURCE)))
    # A lower unit of the same province is the province too.
    run(context(tmp_path, sim.base_url),
        lambda h: h(submitted(source="VN:GOV:000.20.31.H56:igate")))
    assert sim.deliveries == []


def test_merged_province_is_one_province(sim: ProvincialSimulator, tmp_path: Path) -> None:
    # Hậu Giang (H30) merged into Cần Thơ (H24): both codes point at one system.
    endpoints = {"H30": sim.base_url, "H24": sim.base_url}
    code = "000.00.00.H30-250101-0001"
    ctx = context(tmp_path, "http://127.0.0.1:9", endpoints=endpoints)
    run(ctx, lambda h: h(submitted(code, source="VN:GOV:000.00.00.H24:igate",
                                   agency_code="000.00.00.H30")))
    assert sim.deliveries == []
    run(ctx, lambda h: h(submitted(code, agency_code="000.00.00.H30")))
    assert [d["maHoSo"] for d in sim.deliveries] == [code]


def test_each_province_gets_its_own_dossiers(tmp_path: Path) -> None:
    with ProvincialSimulator() as thanh_hoa, ProvincialSimulator() as nghe_an:
        ctx = context(tmp_path, "http://127.0.0.1:9",
                      endpoints={"H56": thanh_hoa.base_url, "H41": nghe_an.base_url})

        async def go(h: ProvincialHandler) -> None:
            await h(submitted("000.00.00.H56-250101-0001"))
            await h(submitted("000.00.00.H41-250101-0007", agency_code="000.00.00.H41"))

        run(ctx, go)
        assert [d["maHoSo"] for d in thanh_hoa.deliveries] == ["000.00.00.H56-250101-0001"]
        assert [d["maHoSo"] for d in nghe_an.deliveries] == ["000.00.00.H41-250101-0007"]


def test_ministry_dossier_is_not_delivered(sim: ProvincialSimulator, tmp_path: Path) -> None:
    run(context(tmp_path, sim.base_url),
        lambda h: h(submitted("000.00.00.G09-250101-0001", agency_code="000.00.00.G09")))
    assert sim.deliveries == []


def test_down_is_retryable_and_opens_the_breaker(sim: ProvincialSimulator,
                                                 tmp_path: Path) -> None:
    sim.pause()
    try:
        async def go(h: ProvincialHandler) -> None:
            for _ in range(2):
                with pytest.raises(RetryableError) as err:
                    await h(submitted())
                assert err.value.code == "system.unavailable"
                assert err.value.origin == "system:provincial"
            with pytest.raises(RetryableError) as err:
                await h(submitted())
            assert err.value.code == "server.circuit_open"

        run(context(tmp_path, sim.base_url, policy={"breaker_failures": 2}), go)
    finally:
        sim.resume()


def test_slow_province_times_out(sim: ProvincialSimulator, tmp_path: Path) -> None:
    sim.faults.slow_seconds = 1.0
    with pytest.raises(RetryableError) as err:
        run(context(tmp_path, sim.base_url, policy={"timeout": 0.2}), lambda h: h(submitted()))
    assert err.value.code == "system.timeout"


def test_5xx_is_retryable_and_retried(sim: ProvincialSimulator, tmp_path: Path) -> None:
    sim.faults.fail_next = 1
    run(context(tmp_path, sim.base_url, policy={"attempts": 2}), lambda h: h(submitted()))
    assert sim.dossier(DOSSIER_CODE) is not None
    sim.faults.fail_next, sim.faults.fail_status = 5, 500
    with pytest.raises(RetryableError) as err:
        run(context(tmp_path, sim.base_url), lambda h: h(submitted()))
    assert err.value.code == "system.unavailable" and "500" in err.value.message


def test_rejection_is_permanent_with_the_province_message(sim: ProvincialSimulator,
                                                          tmp_path: Path) -> None:
    sim.reject_next("Thủ tục 1.010708 chưa được cấu hình tại đơn vị", "maThuTuc")
    with pytest.raises(PermanentError) as err:
        run(context(tmp_path, sim.base_url), lambda h: h(submitted()))
    assert err.value.code == "system.rejected" and err.value.origin == "system:provincial"
    assert err.value.field == "maThuTuc"
    assert "chưa được cấu hình" in err.value.message and "422" in err.value.message
    assert sim.dossier(DOSSIER_CODE) is None


def test_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ProvincialSimulator(api_key="k-123") as sim:
        with pytest.raises(PermanentError) as err:
            run(context(tmp_path, sim.base_url), lambda h: h(submitted()))
        assert "PROVINCIAL_API_KEY" in err.value.message
        monkeypatch.setenv("PROVINCIAL_API_KEY", "k-123")
        run(context(tmp_path, sim.base_url), lambda h: h(submitted()))
        assert sim.dossier(DOSSIER_CODE) is not None


def test_invalid_canonical_dossier(sim: ProvincialSimulator, tmp_path: Path) -> None:
    data = sample_dossier().model_dump(mode="json")
    data["channel"] = 9
    with pytest.raises(InvalidMessage) as err:
        run(context(tmp_path, sim.base_url), lambda h: h(delivery(data)))
    assert err.value.field == "channel"
    with pytest.raises(InvalidMessage) as err:
        run(context(tmp_path, sim.base_url),
            lambda h: h(delivery({}, event_type="vn.gov.dossier.status-changed")))
    assert err.value.code == "client.unsupported_type"
    assert sim.deliveries == []


def test_simulator_checks_the_contract(sim: ProvincialSimulator) -> None:
    import httpx

    doc = dossier_to_wire(sample_dossier(), MAPPING)
    doc["kenhNop"] = "FAX"
    refused = httpx.post(sim.base_url + "/api/v1/hoso", json=doc)
    assert refused.status_code == 400
    assert refused.json()["truong"] == "kenhNop"
    assert httpx.get(sim.base_url + f"/api/v1/hoso/{DOSSIER_CODE}").status_code == 404
