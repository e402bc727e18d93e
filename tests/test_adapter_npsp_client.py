"""The portal's client against its simulator over a real socket: session, calls, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from npsp_support import sample_dossier, sample_progress

from adapters.npsp import simulator as sim_mod
from adapters.npsp.client import AlreadyExists, DossierUnknown, NpspClient
from adapters.npsp.config import NpspConfig
from adapters.npsp.mapping import load_mapping
from adapters.npsp.simulator import NpspSimulator
from adapters.npsp.translate import dossier_to_record, progress_to_record
from hub.adapters import load_config
from hub.contracts import load_contract
from hub.errors import ConfigError, PermanentError, RetryableError, ValidationError
from hub.settings import PROJECT_ROOT

T = TypeVar("T")
MAPPING = load_mapping(PROJECT_ROOT / "mappings" / "npsp")
CONTRACT = load_contract(PROJECT_ROOT / "schemas" / "npsp")
AGENCY = "000.00.00.H56"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "secret")


@pytest.fixture
def sim() -> Iterator[NpspSimulator]:
    s = NpspSimulator(username="hub", password="secret")
    s.start()
    yield s
    s.stop()


def make_client(sim: NpspSimulator, **policy: Any) -> NpspClient:
    raw = load_config(PROJECT_ROOT / "mappings", "npsp")
    raw["base_url"] = sim.base_url
    raw["policy"] = {"timeout": 30.0, "attempts": 1, "backoff_initial": 0.001,
                     "backoff_max": 0.002, "breaker_failures": 5, "breaker_reset": 60.0,
                     **policy}
    return NpspClient(NpspConfig.from_mapping(raw), MAPPING, CONTRACT)


def run(sim: NpspSimulator, go: Callable[[NpspClient], Awaitable[T]], **policy: Any) -> T:
    async def main() -> T:
        client = make_client(sim, **policy)
        try:
            return await go(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def record(n: int = 1) -> dict[str, Any]:
    return dossier_to_record(sample_dossier(f"000.00.00.H56-250101-{n:04d}"), MAPPING)


def test_login_then_insert_keeps_the_session(sim: NpspSimulator) -> None:
    async def go(client: NpspClient) -> list[str]:
        return [await client.upsert_dossier(record(1), agency=AGENCY),
                await client.upsert_dossier(record(2), agency=AGENCY)]

    assert run(sim, go) == ["inserted", "inserted"]
    assert sim.logins == 1
    assert sim.dossier("000.00.00.H56-250101-0001") == record(1)
    calls = sim.calls("DongBoHoSoMC")
    assert [c["isUpdating"] for c in calls] == ["False", "False"]
    assert calls[0]["madonvi"] == AGENCY


def test_the_simulator_lists_the_calls_after_those_read(sim: NpspSimulator) -> None:
    """What bench/e2e.py polls while a backlog drains: only the calls it has not read."""
    async def go(client: NpspClient) -> None:
        for n in (1, 2, 3):
            await client.upsert_dossier(record(n), agency=AGENCY)

    run(sim, go)
    every = httpx.get(f"{sim.base_url}/_sim/calls", timeout=30).json()
    later = httpx.get(f"{sim.base_url}/_sim/calls", params={"since": 1}, timeout=30).json()
    assert every["total"] == later["total"] == 3
    assert [c["codes"] for c in later["calls"]] == [c["codes"] for c in every["calls"][1:]]
    assert [c["codes"] for c in every["calls"]] == [[f"000.00.00.H56-250101-{n:04d}"]
                                                    for n in (1, 2, 3)]
    none = httpx.get(f"{sim.base_url}/_sim/calls", params={"since": 3}, timeout=30).json()
    assert none["calls"] == [] and none["total"] == 3


def test_relogin_when_the_session_expires(sim: NpspSimulator) -> None:
    async def go(client: NpspClient) -> int:
        await client.upsert_dossier(record(1), agency=AGENCY)
        sim.expire_sessions()
        await client.upsert_dossier(record(2), agency=AGENCY)
        return client.session.logins

    assert run(sim, go) == 2
    assert sim.logins == 2
    assert sim.dossier("000.00.00.H56-250101-0002") is not None


def test_session_refused_again_after_relogin_is_retryable() -> None:
    with NpspSimulator(session_ttl=0.0) as sim:  # every session is already expired
        with pytest.raises(RetryableError) as err:
            run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY))
        assert err.value.code == "system.session_expired"
        assert sim.logins == 2  # logged in once more, then gave up


def test_insert_then_update_when_it_already_exists(sim: NpspSimulator) -> None:
    async def go(client: NpspClient) -> list[str]:
        first = await client.upsert_dossier(record(1), agency=AGENCY)
        changed = record(1) | {"GhiChu": "Bổ sung giấy tờ"}
        second = await client.upsert_dossier(changed, agency=AGENCY)
        return [first, second]

    assert run(sim, go) == ["inserted", "updated"]
    assert [c["isUpdating"] for c in sim.calls("DongBoHoSoMC")] == ["False", "False", "True"]
    stored = sim.dossier("000.00.00.H56-250101-0001")
    assert stored is not None and stored["GhiChu"] == "Bổ sung giấy tờ"


def test_already_exists_switch_and_plain_insert_error(sim: NpspSimulator) -> None:
    sim.report_exists_next()

    async def go(client: NpspClient) -> None:
        with pytest.raises(AlreadyExists):
            await client.sync_dossiers([record(1)], update=False, agency=AGENCY)
        # The dossier is not really there: the update the upsert falls back to is "not found",
        # which waits for the dossier's own sync.
        sim.report_exists_next()
        with pytest.raises(DossierUnknown) as err:
            await client.upsert_dossier(record(1), agency=AGENCY)
        assert isinstance(err.value, RetryableError)

    run(sim, go)


def test_lookup_and_progress(sim: NpspSimulator) -> None:
    async def go(client: NpspClient) -> tuple[Any, Any]:
        await client.upsert_dossier(record(1), agency=AGENCY)
        found = await client.lookup("000.00.00.H56-250101-0001", agency=AGENCY)
        missing = await client.lookup("000.00.00.H56-250101-0999", agency=AGENCY)
        await client.report_progress([progress_to_record(sample_progress(), MAPPING)],
                                     agency=AGENCY)
        return found, missing

    found, missing = run(sim, go)
    assert found == record(1)
    assert missing is None
    steps = sim.progress_of("000.00.00.H56-250101-0001")
    assert steps and steps[0]["NoiDungXuLy"] == "Đã kiểm tra hồ sơ, chuyển lãnh đạo ký"


def test_progress_of_unknown_dossier_is_retryable(sim: NpspSimulator) -> None:
    with pytest.raises(DossierUnknown) as err:
        run(sim, lambda c: c.report_progress([progress_to_record(sample_progress(), MAPPING)],
                                             agency=AGENCY))
    assert err.value.origin == "system:npsp"


def test_down_is_retryable_and_opens_the_breaker(sim: NpspSimulator) -> None:
    sim.pause()
    try:
        async def go(client: NpspClient) -> None:
            for _ in range(2):
                with pytest.raises(RetryableError) as err:
                    await client.upsert_dossier(record(1), agency=AGENCY)
                assert err.value.code == "system.unavailable"
                assert err.value.origin == "system:npsp"
            assert client.outbound.policy.breaker.state == "open"
            with pytest.raises(RetryableError) as err:
                await client.upsert_dossier(record(1), agency=AGENCY)
            assert err.value.code == "server.circuit_open"

        run(sim, go, breaker_failures=2)
    finally:
        sim.resume()


def test_slow_portal_times_out(sim: NpspSimulator) -> None:
    sim.faults.slow_seconds = 1.0
    with pytest.raises(RetryableError) as err:
        run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY), timeout=0.2)
    assert err.value.code == "system.timeout"


def test_5xx_is_retried_then_succeeds_or_stays_retryable(sim: NpspSimulator) -> None:
    sim.faults.fail_next = 2  # login fails twice, the third try goes through
    assert run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY), attempts=3) == "inserted"
    sim.faults.fail_next, sim.faults.fail_status = 10, 502
    with pytest.raises(RetryableError) as err:
        run(sim, lambda c: c.upsert_dossier(record(2), agency=AGENCY), attempts=2)
    assert err.value.code == "system.unavailable" and "502" in err.value.message


@pytest.mark.parametrize(
    ("error_code", "kind", "code"),
    [(2, PermanentError, "system.rejected"), (5, PermanentError, "system.rejected"),
     (77, PermanentError, "system.rejected"), (9, RetryableError, "system.unavailable"),
     (-1, RetryableError, "system.unavailable")],
)
def test_error_codes_map_to_retryable_or_permanent(
    sim: NpspSimulator, error_code: int, kind: type[Exception], code: str
) -> None:
    sim.reject_next(error_code, "Thông điệp của Cổng", count=5)
    with pytest.raises(kind) as err:
        run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY))
    assert getattr(err.value, "code", None) == code
    assert "Thông điệp của Cổng" in str(err.value)
    assert sim.dossier("000.00.00.H56-250101-0001") is None


def test_http_refusal_is_permanent() -> None:
    with NpspSimulator(dstcode="VN:GOV:000.00.00.G22:another") as sim:
        with pytest.raises(PermanentError) as err:
            run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY))
        # 401 and 403 say the hub's credentials are at fault, and where to look.
        assert err.value.code == "system.unauthorized" and "403" in err.value.message
        assert "dstcode" in err.value.message


def test_bad_credentials_and_missing_credentials(
    sim: NpspSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPSP_PASSWORD", "wrong")
    with pytest.raises(PermanentError) as err:
        run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY))
    assert err.value.code == "system.login_failed"
    monkeypatch.delenv("NPSP_PASSWORD")
    with pytest.raises(ConfigError) as cfg:
        run(sim, lambda c: c.upsert_dossier(record(1), agency=AGENCY))
    assert cfg.value.field == "NPSP_PASSWORD"


def test_request_breaking_the_contract_is_not_sent(sim: NpspSimulator) -> None:
    bad = record(1) | {"TrangThaiHoSo": "11"}
    with pytest.raises(ValidationError) as err:
        run(sim, lambda c: c.upsert_dossier(bad, agency=AGENCY))
    assert err.value.field == "data[0].TrangThaiHoSo"
    assert sim.calls("DongBoHoSoMC") == []


def test_simulator_replies_follow_the_contract(sim: NpspSimulator) -> None:
    headers = {"dstcode": sim_mod.DSTCODE}
    with httpx.Client(base_url=sim.base_url, headers=headers) as http:
        login = http.post(sim_mod.AUTH_PATH, json={"username": "hub", "password": "secret"}).json()
        CONTRACT.validate("login.reply", login)
        session = login["session"]
        body = {"session": session, "madonvi": AGENCY, "service": "DongBoHoSoMC",
                "isUpdating": "False", "data": [record(1)]}
        CONTRACT.validate("DongBoHoSoMC.request", body)
        CONTRACT.validate("reply", http.post(sim_mod.INTEGRATION_PATH, json=body).json())
        lookup = {"session": session, "madonvi": AGENCY, "service": "TraCuuHoSo",
                  "mahoso": "000.00.00.H56-250101-0001"}
        CONTRACT.validate("TraCuuHoSo.request", lookup)
        found = http.post(sim_mod.INTEGRATION_PATH, json=lookup).json()
        CONTRACT.validate("TraCuuHoSo.reply", found)
        assert found["result"] == [record(1)]
        # The simulator checks requests against the same contract.
        body["data"][0]["KenhThucHien"] = "online"
        refused = http.post(sim_mod.INTEGRATION_PATH, json=body).json()
        assert refused["error_code"] == sim_mod.INVALID
        assert "data[0].KenhThucHien" in refused["message"]
        bad_login = http.post(sim_mod.AUTH_PATH, json={"username": "x", "password": "y"}).json()
        CONTRACT.validate("login.reply", bad_login)
        assert bad_login["error_code"] == sim_mod.BAD_LOGIN


def test_simulator_http_switches(sim: NpspSimulator) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        http.post("/_sim/reject", json={"error_code": 2, "message": "Sai", "count": 1})
        http.post("/_sim/already-exists", json={"count": 1})
        http.post("/_sim/faults", json={"fail_next": 1, "fail_status": 503})
    assert sim.faults.fail_next == 1
    assert sim.state.exists_next == 1 and sim.state.rejections[0].error_code == 2
