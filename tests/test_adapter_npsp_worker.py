"""The portal's worker handler: canonical events in, portal calls out (real simulator, real
socket; the store for sequences is real SQLite)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from npsp_support import DOSSIER_CODE, sample_dossier, sample_progress, sample_status

from adapters.npsp import adapter
from adapters.npsp.simulator import NpspSimulator
from adapters.npsp.worker import make_handler
from hub.adapters import AdapterContext, Event, Handler, load_config, writes_to
from hub.broker.metrics import REGISTRY
from hub.envelope import Envelope
from hub.errors import InvalidMessage, RetryableError
from hub.model import Status
from hub.settings import PROJECT_ROOT, Settings
from hub.store.store import Store
from hub.store.timeline import SKIPPED

T = TypeVar("T")
PROVINCE = "VN:GOV:000.00.00.H56:igate"
PORTAL = "VN:GOV:000.00.00.G22:dvcqg"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPSP_USERNAME", "hub")
    monkeypatch.setenv("NPSP_PASSWORD", "secret")


@pytest.fixture
def sim() -> Iterator[NpspSimulator]:
    with NpspSimulator() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'hub.db'}") as s:
        yield s


def context(sim: NpspSimulator, store: Store | None, tmp_path: Path) -> AdapterContext:
    config = load_config(PROJECT_ROOT / "mappings", "npsp")
    config["base_url"] = sim.base_url
    config["policy"] = {"timeout": 30.0, "attempts": 1}
    return AdapterContext(settings=Settings(data_dir=tmp_path), config=config, store=store)


def delivery(event_type: str, data: Any, *, source: str = PROVINCE,
             sequence: int | None = None) -> Event:
    return Event(Envelope.new(source=source, type=event_type, subject=DOSSIER_CODE, data=data,
                              agency="000.00.00.H56", procedure="2.002492", sequence=sequence))


def submitted(sequence: int | None = 1, **kw: Any) -> Event:
    return delivery("vn.gov.dossier.submitted", sample_dossier().model_dump(mode="json"),
                    sequence=sequence, **kw)


def status(value: Status, sequence: int | None) -> Event:
    return delivery("vn.gov.dossier.status-changed",
                    sample_status(value, note="Cán bộ ghi chú").model_dump(mode="json"),
                    sequence=sequence)


def run(ctx: AdapterContext, go: Callable[[Handler], Awaitable[T]]) -> T:
    async def main() -> T:
        handler = make_handler(ctx)

        async def handle(event: Event) -> Sequence[Envelope]:
            # As a worker hands it over: what follows the call is recorded in the store.
            if ctx.store is not None:
                event = replace(event, recorder=writes_to(ctx.store))
            return await handler(event)

        try:
            return await go(handle)
        finally:
            await handler.aclose()

    return asyncio.run(main())


def test_spec_is_registered_with_its_bindings() -> None:
    assert adapter.name == "npsp" and adapter.ordered
    assert set(adapter.bindings) == {
        "dossier.submitted.#", "dossier.status-changed.#", "dossier.progress-reported.#"
    }
    assert adapter.make_simulator is not None


def test_submitted_dossier_is_synced(sim: NpspSimulator, store: Store, tmp_path: Path) -> None:
    out = run(context(sim, store, tmp_path), lambda h: h(submitted()))
    assert out == []
    record = sim.dossier(DOSSIER_CODE)
    assert record is not None
    assert record["TrangThaiHoSo"] == "1" and record["NgayNopHoSo"] == "20250101083000"
    assert store.last_sequence("npsp", DOSSIER_CODE) == 1


def test_dossier_from_the_portal_is_not_echoed(
    sim: NpspSimulator, store: Store, tmp_path: Path
) -> None:
    run(context(sim, store, tmp_path), lambda h: h(submitted(source=PORTAL)))
    assert sim.dossier(DOSSIER_CODE) is None
    assert sim.calls() == []


def test_status_changes_apply_in_sequence(sim: NpspSimulator, store: Store,
                                          tmp_path: Path) -> None:
    async def go(h: Handler) -> None:
        await h(submitted(sequence=1))
        await h(status(Status.RECEIVED, 2))
        await h(status(Status.RESOLVED, 4))
        # Sequence 3 waited in a retry tier while 4 went through: already superseded.
        await h(status(Status.PROCESSING, 3))
        # The submission itself, redelivered late, must not undo the statuses either.
        await h(submitted(sequence=1))

    run(context(sim, store, tmp_path), go)
    record = sim.dossier(DOSSIER_CODE)
    assert record is not None
    assert record["TrangThaiHoSo"] == "9"
    assert record["NgayTiepNhan"] == "20250102090000"
    assert record["NgayKetThucXuLy"] == "20250102090000"
    assert record["GhiChu"] == "Cán bộ ghi chú"
    assert record["ChuHoSo"] == "Nguyễn Văn An"  # the whole record was kept
    updates = [c for c in sim.calls("DongBoHoSoMC") if c["isUpdating"] == "True"]
    assert len(updates) == 2
    assert len(sim.calls("TraCuuHoSo")) == 2
    assert store.last_sequence("npsp", DOSSIER_CODE) == 4


def skipped_count(reason: str) -> float:
    value = REGISTRY.get_sample_value("lienthong_skipped_total",
                                      {"destination": "npsp", "reason": reason})
    return value or 0.0


def test_a_skipped_event_is_never_silent(sim: NpspSimulator, store: Store, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """An event the portal does not get leaves a WARNING, a count and a timeline entry of its
    dossier saying why; the same skip seen again (a redelivery) is one entry."""
    stale = status(Status.PROCESSING, 3)
    again = submitted(sequence=4)
    before = skipped_count("stale_sequence"), skipped_count("already_applied")

    async def go(h: Handler) -> None:
        await h(submitted(sequence=1))
        await h(again)
        await h(stale)
        await h(stale)  # redelivered: skipped again, counted again, entered once
        await h(again)

    with caplog.at_level(logging.WARNING, logger="hub.recorder"):
        run(context(sim, store, tmp_path), go)
    assert (skipped_count("stale_sequence") - before[0],
            skipped_count("already_applied") - before[1]) == (2, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert stale.envelope.id in warnings[0] and "stale_sequence" in warnings[0]
    assert "sequence 3 is older than sequence 4" in warnings[0]
    entries = [e for e in store.timeline(DOSSIER_CODE) if e.event_type == SKIPPED]
    assert [(e.summary["skipped_message_id"], e.summary["reason"]) for e in entries] == [
        (stale.envelope.id, "stale_sequence"), (again.envelope.id, "already_applied")]
    first = entries[0]
    assert first.source == "worker:npsp"
    assert first.summary | {"note": None} == {
        "destination": "npsp", "reason": "stale_sequence", "skipped_message_id":
        stale.envelope.id, "skipped_type": "vn.gov.dossier.status-changed", "sequence": 3,
        "last_applied": 4, "status": 4, "note": None}
    assert "move the portal's record backwards" in first.summary["note"]
    assert sim.dossier(DOSSIER_CODE)["TrangThaiHoSo"] == "1"  # type: ignore[index]


def test_status_without_sequence_is_applied(sim: NpspSimulator, tmp_path: Path) -> None:
    async def go(h: Handler) -> None:
        await h(submitted(sequence=None))
        await h(status(Status.RECEIVED, None))

    run(context(sim, None, tmp_path), go)  # no store: sequences kept in memory
    record = sim.dossier(DOSSIER_CODE)
    assert record is not None and record["TrangThaiHoSo"] == "2"


def test_status_of_unknown_dossier_is_retryable(sim: NpspSimulator, store: Store,
                                                tmp_path: Path) -> None:
    with pytest.raises(RetryableError) as err:
        run(context(sim, store, tmp_path), lambda h: h(status(Status.RECEIVED, 2)))
    assert err.value.code == "system.dossier_unknown"
    assert store.last_sequence("npsp", DOSSIER_CODE) is None  # not applied


def test_progress_is_reported(sim: NpspSimulator, store: Store, tmp_path: Path) -> None:
    async def go(h: Handler) -> None:
        await h(submitted())
        await h(delivery("vn.gov.dossier.progress-reported",
                         sample_progress().model_dump(mode="json")))

    run(context(sim, store, tmp_path), go)
    steps = sim.progress_of(DOSSIER_CODE)
    assert len(steps) == 1
    assert steps[0]["NguoiXuLy"] == "Trần Thị Bình" and steps[0]["TrangThai"] == "4"
    assert steps[0]["ThoiDiemXuLy"] == "20250102101500"


def test_bad_canonical_body_is_invalid(sim: NpspSimulator, tmp_path: Path) -> None:
    data = sample_status(Status.RECEIVED).model_dump(mode="json") | {"status": 11}
    with pytest.raises(InvalidMessage) as err:
        run(context(sim, None, tmp_path),
            lambda h: h(delivery("vn.gov.dossier.status-changed", data)))
    assert err.value.field == "status"
    assert sim.calls() == []


def test_unhandled_type_is_invalid(sim: NpspSimulator, tmp_path: Path) -> None:
    with pytest.raises(InvalidMessage) as err:
        run(context(sim, None, tmp_path),
            lambda h: h(delivery("vn.gov.payment.requested", {})))
    assert err.value.code == "client.unsupported_type"


def test_portal_rejection_is_permanent(sim: NpspSimulator, tmp_path: Path) -> None:
    from hub.errors import PermanentError

    sim.reject_next(5, "Đơn vị không có quyền đồng bộ hồ sơ này")
    with pytest.raises(PermanentError) as err:
        run(context(sim, None, tmp_path), lambda h: h(submitted()))
    assert err.value.origin == "system:npsp"
    assert "không có quyền" in err.value.message
