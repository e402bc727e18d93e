"""Population adapter: the real SOAP client (zeep AsyncClient over httpx) against the simulator
on a real socket, through the call policy. Every failure switch of the simulator is mapped to
the hub's error class; citizen data never shows in the logs."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Any, TypeVar

import pytest

from adapters.population.client import PopulationClient
from adapters.population.config import PopulationConfig
from adapters.population.mapping import load_mapping, parse_mapping
from adapters.population.simulator import PopulationSimulator
from adapters.population.translate import Caller
from hub.errors import ConfigError, HubError, InvalidMessage, PermanentError, RetryableError
from hub.model import CitizenVerification, Gender
from hub.settings import PROJECT_ROOT
from hub.testing.waiting import wait_for
from hub.transport.soapfaults import load_faults

T = TypeVar("T")
MAPPINGS = PROJECT_ROOT / "mappings" / "population"
WSDL = PROJECT_ROOT / "schemas" / "population" / "dancu.wsdl"
CALLER = Caller(request_id="3f1c8d2e-0000-4000-8000-000000000002", service_code="2.002492",
                integration_code="LIENTHONG-HUB", officer="CB-0001")

AN = CitizenVerification(identity_number="001090012345", name="Nguyễn Văn An",
                         birth_date=date(1990, 1, 15))
BINH_OLD_ID = CitizenVerification(identity_number="172345678", name="LÊ THỊ BÌNH",
                                  birth_date=date(1995, 3, 20))
HUNG_YEAR = CitizenVerification(identity_number="079088000111", name="Phạm Hùng",
                                birth_year=1948)


@pytest.fixture(scope="module")
def sim() -> Iterator[PopulationSimulator]:
    with PopulationSimulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _clean(sim: PopulationSimulator) -> Iterator[None]:
    sim.reset()
    sim.calls.clear()
    yield
    sim.reset()


def config(url: str, environ: dict[str, str] | None = None, **policy: Any) -> PopulationConfig:
    with (MAPPINGS / "config.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    raw["url"] = url
    raw["policy"] = {"timeout": 30.0, "attempts": 1, "backoff_initial": 0.001,
                     "backoff_max": 0.002, "breaker_failures": 100, "rate_per_second": 0.0,
                     **policy}
    return PopulationConfig.from_mapping(raw, environ=environ or {})


def run(sim: PopulationSimulator, use: Callable[[PopulationClient], Awaitable[T]],
        environ: dict[str, str] | None = None, **policy: Any) -> T:
    """Build a client inside a fresh event loop, use it, close it."""

    async def main() -> T:
        client = PopulationClient(config(sim.url, environ, **policy), load_mapping(MAPPINGS),
                                  load_faults(MAPPINGS), wsdl=WSDL)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def fails(sim: PopulationSimulator, who: CitizenVerification = AN, **policy: Any) -> HubError:
    async def use(client: PopulationClient) -> bool:
        return await client.verify(who, CALLER)

    with pytest.raises(HubError) as info:
        run(sim, use, **policy)
    return info.value


# --- answers ---------------------------------------------------------------------------------


def test_verify_true_and_false(sim: PopulationSimulator) -> None:
    async def use(client: PopulationClient) -> list[bool]:
        return [
            await client.verify(AN, CALLER),
            await client.verify(AN.model_copy(update={"name": "Nguyễn Văn Ân"}), CALLER),
            await client.verify(AN.model_copy(update={"birth_date": date(1990, 1, 16)}), CALLER),
            await client.verify(AN.model_copy(update={"identity_number": "001090099999"}),
                                CALLER),
        ]

    assert run(sim, use) == [True, False, False, False]
    assert sim.calls == ["XacThucThongTinCongDan"] * 4


def test_lookup_found(sim: PopulationSimulator) -> None:
    async def use(client: PopulationClient) -> Any:
        return await client.lookup(AN, CALLER)

    record = run(sim, use)
    assert record is not None
    assert record.identity_number == "001090012345"
    assert (record.name.family, record.name.middle, record.name.given) == ("NGUYỄN", "VĂN", "AN")
    assert record.gender is Gender.MALE
    assert (record.ethnicity_code, record.ethnicity, record.nationality) == ("01", "Kinh", "VN")
    assert (record.birth_date, record.birth_year) == (date(1990, 1, 15), 1990)
    assert record.permanent_address is not None
    assert record.permanent_address.province_code == "01"
    assert record.permanent_address.district_code is None  # districts are gone since 2025
    assert record.father is not None and record.father.identity_number == "001060054321"
    assert record.mother is not None and record.mother.identity_number is None
    assert record.spouse is None
    assert sim.calls == ["TraCuuThongTinCongDan"]


def test_lookup_not_found(sim: PopulationSimulator) -> None:
    async def use(client: PopulationClient) -> Any:
        return await client.lookup(AN.model_copy(update={"name": "Someone Else"}), CALLER)

    assert run(sim, use) is None


def test_old_nine_digit_id(sim: PopulationSimulator) -> None:
    async def use(client: PopulationClient) -> tuple[bool, Any]:
        return await client.verify(BINH_OLD_ID, CALLER), await client.lookup(BINH_OLD_ID, CALLER)

    exists, record = run(sim, use)
    assert exists is True
    assert record.identity_number == "038195004321"
    assert record.old_identity_number == "172345678"
    assert record.gender is Gender.FEMALE
    assert record.hometown.district_code == "380"
    assert record.spouse.name == "HOÀNG MINH ĐỨC"


def test_birth_year_only(sim: PopulationSimulator) -> None:
    async def use(client: PopulationClient) -> tuple[bool, bool, bool, Any]:
        an_by_year = AN.model_copy(update={"birth_date": None, "birth_year": 1990})
        return (
            await client.verify(an_by_year, CALLER),
            await client.verify(an_by_year.model_copy(update={"birth_year": 1991}), CALLER),
            await client.verify(HUNG_YEAR, CALLER),
            await client.lookup(HUNG_YEAR, CALLER),
        )

    by_year, wrong_year, hung, record = run(sim, use)
    assert (by_year, wrong_year, hung) == (True, False, True)
    assert (record.birth_date, record.birth_year) == (None, 1948)
    assert record.name.middle is None


def test_bad_identity_number_fails_before_any_call(sim: PopulationSimulator) -> None:
    bad = CitizenVerification.model_construct(identity_number="00109001234X",
                                              name="Nguyễn Văn An", birth_date=date(1990, 1, 15),
                                              birth_year=None, dossier_code=None)
    error = fails(sim, bad)
    assert isinstance(error, InvalidMessage)
    assert error.field == "identity_number"
    assert sim.calls == []


# --- failures --------------------------------------------------------------------------------


def test_down_is_retryable_and_recovers(sim: PopulationSimulator) -> None:
    sim.pause()
    try:
        error = fails(sim)
    finally:
        sim.resume()
    assert isinstance(error, RetryableError)
    assert (error.code, error.origin) == ("system.unavailable", "system:population")

    async def use(client: PopulationClient) -> bool:
        return await client.verify(AN, CALLER)

    assert run(sim, use) is True


def test_slow_is_a_timeout(sim: PopulationSimulator) -> None:
    # The margin between the answer (2 s) and the timeout (0.5 s) is wide: on a loaded machine
    # the request must still reach the simulator before the timeout, or the wait below for
    # the abandoned request to finish would wait for one never sent.
    sim.slow(2.0)
    error = fails(sim, timeout=0.5)
    assert isinstance(error, RetryableError)
    assert error.code == "system.timeout"
    # Let the simulator finish the abandoned request before the next test.
    wait_for(lambda: sim.calls, timeout=30, message="the slow request to finish")


@pytest.mark.parametrize(("status", "cls", "code"), [
    (503, RetryableError, "system.unavailable"),
    (502, RetryableError, "system.unavailable"),
    (429, RetryableError, "system.busy"),
])
def test_http_error_pages(
    sim: PopulationSimulator, status: int, cls: type[HubError], code: str
) -> None:
    sim.fail_http(status, times=5)
    error = fails(sim, attempts=2)
    assert type(error) is cls
    assert error.code == code
    assert sim.faults.fail_next == 3  # the policy tried twice


def test_5xx_then_success_within_the_policy(sim: PopulationSimulator) -> None:
    sim.fail_http(503, times=1)

    async def use(client: PopulationClient) -> bool:
        return await client.verify(AN, CALLER)

    assert run(sim, use, attempts=2) is True


def test_authentication(sim: PopulationSimulator) -> None:
    sim.require_auth("hub", "s3cret")
    error = fails(sim)
    assert isinstance(error, PermanentError)
    assert error.code == "system.unauthorized"

    async def use(client: PopulationClient) -> bool:
        return await client.verify(AN, CALLER)

    environ = {"LIENTHONG_POPULATION_USERNAME": "hub", "LIENTHONG_POPULATION_PASSWORD": "s3cret"}
    assert run(sim, use, environ=environ) is True


@pytest.mark.parametrize(
    ("code", "faultcode", "cls", "hub_code"),
    [
        ("DC001", "Client", PermanentError, "system.rejected"),
        ("DC002", "Client", PermanentError, "system.unauthorized"),
        ("DC003", "Server", RetryableError, "system.busy"),
        ("DC004", "Server", RetryableError, "system.unavailable"),
        ("DC005", "Client", PermanentError, "system.rejected"),
        ("XX42", "Client", PermanentError, "system.rejected"),
        ("XX42", "Server", RetryableError, "system.unavailable"),
    ],
)
def test_soap_faults(
    sim: PopulationSimulator, code: str, faultcode: str, cls: type[HubError], hub_code: str
) -> None:
    sim.fault(code, faultcode, times=1)
    error = fails(sim)
    assert type(error) is cls
    assert error.code == hub_code
    assert error.origin == "system:population"
    assert code in error.message


def test_fault_echoing_an_identity_number_is_scrubbed(sim: PopulationSimulator) -> None:
    sim.fault("DC005", "Client", message="cán bộ không được tra cứu 001090012345")
    error = fails(sim)
    assert "001090012345" not in str(error)
    assert "0010******45" in str(error)


def test_malformed_reply(sim: PopulationSimulator) -> None:
    # A reply the hub cannot decode is never read, nor tried again as it is.
    sim.malformed(times=5)
    error = fails(sim, attempts=2)
    assert isinstance(error, InvalidMessage)
    assert (error.code, error.origin) == ("system.bad_reply", "system:population")
    assert sim.calls == ["XacThucThongTinCongDan"]


def test_breaker_opens_on_a_dead_system(sim: PopulationSimulator) -> None:
    sim.fail_http(503, times=100)

    async def use(client: PopulationClient) -> list[str]:
        seen = []
        for _ in range(4):
            try:
                await client.verify(AN, CALLER)
            except RetryableError as exc:
                seen.append(exc.code)
        return seen

    codes = run(sim, use, breaker_failures=2, breaker_reset=60.0)
    assert codes == ["system.unavailable", "system.unavailable", "server.circuit_open",
                     "server.circuit_open"]
    assert len(sim.calls) == 0  # 5xx pages are answered before the body is read
    assert sim.faults.fail_next == 98


# --- personal data in logs -------------------------------------------------------------------


def test_no_citizen_data_in_logs(
    sim: PopulationSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.fault("DC005", "Client", message="cán bộ không được tra cứu 001090012345")

    async def use(client: PopulationClient) -> None:
        with pytest.raises(PermanentError):
            await client.verify(AN, CALLER)
        assert await client.verify(AN, CALLER)
        assert await client.lookup(AN, CALLER) is not None
        assert await client.lookup(BINH_OLD_ID, CALLER) is not None
        assert await client.verify(HUNG_YEAR, CALLER)

    with caplog.at_level(logging.DEBUG):
        run(sim, use)
    text = caplog.text
    assert "0010******45" in text  # the adapter did log the look-ups, masked
    assert "N.V.A." in text
    for clear in ("001090012345", "172345678", "038195004321", "079088000111", "001060054321",
                  "038090007777", "Nguyễn", "NGUYỄN", "Văn An", "VĂN AN", "LÊ THỊ", "BÌNH",
                  "Phạm", "PHẠM", "HOÀNG", "19900115", "19950320"):
        assert clear not in text, f"{clear!r} appears in the logs"


def test_requests_are_checked_against_the_xsd_before_sending(sim: PopulationSimulator) -> None:
    # A body that zeep serialises but that breaks a facet of dancu.xsd (the identity number's
    # pattern): refused before it leaves, naming the element, the number masked.
    async def use(client: PopulationClient) -> Any:
        body = {"MaYeuCau": "r1", "MaDVC": "2.002492", "MaTichHop": "LT", "MaCanBo": "CB",
                "SoDinhDanh": "0010900123", "HoVaTen": "Nguyễn Văn An",
                "NgayThangNamSinh": {"NgayThangNam": "19900115"}}
        return await client._call("XacThucThongTinCongDan", body)

    with pytest.raises(InvalidMessage) as info:
        run(sim, use)
    assert (info.value.code, info.value.field) == ("client.mapping_failed", "SoDinhDanh")
    assert "0010900123" not in info.value.message
    assert sim.calls == []


def test_mapping_naming_an_element_the_schema_lacks(sim: PopulationSimulator) -> None:
    with (MAPPINGS / "mapping.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    raw["request"]["name"] = "HoTenDayDu"
    mapping = parse_mapping(raw)

    async def main() -> None:
        client = PopulationClient(config(sim.url), mapping, load_faults(MAPPINGS), wsdl=WSDL)
        try:
            await client.verify(AN, CALLER)
        finally:
            await client.aclose()

    with pytest.raises(ConfigError) as info:
        asyncio.run(main())
    assert info.value.field == "mapping.toml [request]"
    assert "HoTenDayDu" in info.value.message
    assert sim.calls == []


def test_lookup_answered_with_another_citizen_is_refused(sim: PopulationSimulator) -> None:
    sim.mix_up(times=1)

    async def use(client: PopulationClient) -> Any:
        return await client.lookup(AN, CALLER)

    with pytest.raises(RetryableError) as info:
        run(sim, use)
    assert (info.value.code, info.value.field) == ("system.malformed_reply", "SoDinhDanh")
    assert "038195004321" not in info.value.message
