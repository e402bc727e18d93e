"""Population adapter: the worker's handler on the hub's contract (an ``Event`` in, canonical
envelopes out) and the simulator on a real socket (no broker: the end-to-end test does that,
where the consumer signs what the handler returns)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from adapters.population import adapter
from adapters.population.simulator import PopulationSimulator
from adapters.population.worker import VERIFIED, VerificationHandler
from hub.adapters import GROUP, AdapterContext, Event
from hub.envelope import Envelope, routing_key
from hub.errors import InvalidMessage, RetryableError
from hub.model import CitizenVerified
from hub.settings import PROJECT_ROOT, Settings

UPSTREAM = "VN:GOV:000.00.00.H56:igate"
DOSSIER = "000.00.00.H56-250101-0001"


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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def context(settings: Settings, url: str, **changes: Any) -> AdapterContext:
    with (PROJECT_ROOT / "mappings" / "population" / "config.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    raw.update(url=url, url_env="", **changes)
    raw["policy"] = {"timeout": 30.0, "attempts": 1, "breaker_failures": 100,
                     "rate_per_second": 0.0}
    return AdapterContext(settings=settings, config=raw)


def delivery(data: dict[str, Any], type: str = "vn.gov.citizen.verification-requested") -> Event:
    return Event(Envelope.new(source=UPSTREAM, type=type, subject=DOSSIER, data=data,
                              agency="000.00.00.H56", procedure="2.002492"))


AN = {"dossier_code": DOSSIER, "identity_number": "001090012345", "name": "Nguyễn Văn An",
      "birth_date": "1990-01-15"}


def handle(ctx: AdapterContext, d: Event) -> list[Envelope]:
    async def main() -> list[Envelope]:
        handler = VerificationHandler(ctx)
        try:
            return await handler(d)
        finally:
            await handler.aclose()

    return asyncio.run(main())


def test_verified_event_is_the_hubs_and_minimal(
    sim: PopulationSimulator, settings: Settings
) -> None:
    d = delivery(AN)
    [env] = handle(context(settings, sim.url), d)
    assert (env.type, env.source, env.subject) == (VERIFIED, settings.hub_id, DOSSIER)
    assert env.causationid == d.envelope.id
    assert routing_key(env) == "citizen.verified.000_00_00_H56.2_002492"
    body = CitizenVerified.model_validate(env.data)
    assert (body.dossier_code, body.identity_number, body.matched) == (DOSSIER, "001090012345",
                                                                        True)
    assert set(env.data) == {"dossier_code", "identity_number", "matched", "checked_at"}
    assert sim.calls == ["XacThucThongTinCongDan"]


def test_no_match(sim: PopulationSimulator, settings: Settings) -> None:
    [env] = handle(context(settings, sim.url, lookup=True),
                   delivery({**AN, "birth_date": None, "birth_year": 1989}))
    data = env.data
    assert data["matched"] is False
    assert "record" not in data
    assert sim.calls == ["XacThucThongTinCongDan"]  # no look-up after a mismatch


def test_lookup_when_configured(sim: PopulationSimulator, settings: Settings) -> None:
    [env] = handle(context(settings, sim.url, lookup=True),
                   delivery({"identity_number": "172345678", "name": "Lê Thị Bình",
                             "birth_year": 1995}))
    body = CitizenVerified.model_validate(env.data)
    assert body.matched is True
    assert body.dossier_code == DOSSIER  # from the subject when the body has none
    assert body.record is not None
    assert body.record.identity_number == "038195004321"
    assert sim.calls == ["XacThucThongTinCongDan", "TraCuuThongTinCongDan"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**AN, "identity_number": "00109001234"}, "identity_number"),
        ({**AN, "identity_number": "0010900123456"}, "identity_number"),
        ({**AN, "birth_date": None}, "birth_date"),
        ({k: v for k, v in AN.items() if k != "name"}, "name"),
        ({**AN, "dossier_code": "H56-1"}, "dossier_code"),
    ],
    ids=["11-digits", "13-digits", "no-birth", "no-name", "bad-dossier"],
)
def test_bad_request_is_invalid_before_any_call(
    sim: PopulationSimulator, settings: Settings, data: dict[str, Any],
    field: str, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(InvalidMessage) as info:
        handle(context(settings, sim.url), delivery(data))
    assert info.value.field == field
    assert "00109001234" not in str(info.value)
    assert "00109001234" not in caplog.text
    assert sim.calls == []


def test_other_event_types_are_invalid(settings: Settings, sim: PopulationSimulator) -> None:
    with pytest.raises(InvalidMessage) as info:
        handle(context(settings, sim.url),
               delivery({"dossier_code": DOSSIER}, type="vn.gov.dossier.withdrawn"))
    assert (info.value.code, info.value.field) == ("client.unexpected_type", "type")


def test_system_down_is_retryable(sim: PopulationSimulator, settings: Settings) -> None:
    sim.pause()
    try:
        with pytest.raises(RetryableError) as info:
            handle(context(settings, sim.url), delivery(AN))
    finally:
        sim.resume()
    assert info.value.code == "system.unavailable"


def test_registry_builds_the_handler(sim: PopulationSimulator, settings: Settings) -> None:
    # Through the entry point the registry uses (not discover(): other adapters may be
    # half-built while this runs).
    [entry] = entry_points(group=GROUP, name="population")
    spec = entry.load()
    assert spec is adapter
    assert spec.bindings == ["citizen.verification-requested.#"]

    async def main() -> list[Envelope]:
        handler = spec.make_handler(context(settings, sim.url))
        assert isinstance(handler, VerificationHandler)
        try:
            return list(await handler(delivery(AN)))
        finally:
            await handler.aclose()

    [env] = asyncio.run(main())
    assert env.data["matched"] is True


def test_empty_context_config_reads_the_file(settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_POPULATION_URL", "http://127.0.0.1:1/DanCuService")
    ctx = AdapterContext(settings=settings, config={})
    handler = VerificationHandler(ctx)
    assert handler.client.config.url == "http://127.0.0.1:1/DanCuService"
    assert handler.client.config.integration_code == "LIENTHONG-HUB"
    asyncio.run(handler.aclose())


def test_registry_import_stays_light() -> None:
    # The registry imports every adapter: zeep, lxml and FastAPI load only when a worker or a
    # simulator is built.
    code = ("import sys, adapters.population; "
            "print(sorted(m for m in ('zeep', 'lxml', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
