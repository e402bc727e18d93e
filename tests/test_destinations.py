"""What every destination's handler does, whatever its system (hub.destinations,
hub.lastapplied.AppliedSequences) and the envelopes of what a system reports
(hub.dossierreports): pure logic without a store, the sequence kept in memory."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from hub.adapters import Event
from hub.broker.metrics import REGISTRY
from hub.destinations import event_body, mapping_checked
from hub.dossierreports import Report, batch
from hub.envelope import SYSTEM_SEQUENCE, Envelope
from hub.errors import InvalidMessage, ValidationError
from hub.lastapplied import AppliedSequences
from hub.model import Status, StatusChange

CODE = "000.00.00.H56-250101-0001"
CHANGED = "vn.gov.dossier.status-changed"
HUB = "VN:GOV:000.00.00.G22:lienthong"
IDS = uuid.UUID("00000000-0000-5000-8000-000000000001")


def change(sequence: int | None = None, status: int = 2) -> Envelope:
    return Envelope.new(source=HUB, type=CHANGED, subject=CODE, sequence=sequence,
                        data={"dossier_code": CODE, "status": status,
                              "at": "2025-01-02T09:00:00+07:00"})


def test_an_event_body_of_a_type_not_handled_or_invalid_is_never_retried() -> None:
    body = event_body(change(), (CHANGED,), "the test worker")
    assert isinstance(body, StatusChange) and body.status is Status.RECEIVED
    with pytest.raises(InvalidMessage) as other:
        event_body(change(), ("vn.gov.dossier.submitted",), "the test worker")
    assert other.value.code == "client.unsupported_type" and other.value.field == "type"
    with pytest.raises(InvalidMessage) as invalid:
        event_body(change(status=99), (CHANGED,), "the test worker")
    assert invalid.value.field == "status"


def test_a_request_breaking_the_contract_is_a_broken_mapping() -> None:
    with pytest.raises(InvalidMessage) as err, mapping_checked("sys", "the request"):
        raise ValidationError("is not one of ['1', '2']", field="data[0].TrangThai")
    assert err.value.code == "client.mapping_failed" and err.value.field == "data[0].TrangThai"
    assert "schemas/sys" in err.value.message and "mappings/sys" in err.value.message


def skipped(reason: str) -> float:
    value = REGISTRY.get_sample_value("lienthong_skipped_total",
                                      {"destination": "ordered-test", "reason": reason})
    return value or 0.0


def test_an_event_not_newer_than_the_last_applied_is_skipped_and_counted() -> None:
    sequences = AppliedSequences(None, "ordered-test", "the test system")
    before = skipped("already_applied"), skipped("stale_sequence")

    async def go() -> list[bool]:
        seen = [await sequences.superseded(change(4), CODE)]
        await sequences.applied(Event(change(4)), CODE)
        for sequence in (4, 3, 5):
            seen.append(await sequences.superseded(change(sequence), CODE))
        seen.append(await sequences.superseded(change(None), CODE))  # no sequence: sent
        return seen

    assert asyncio.run(go()) == [False, True, True, False, False]
    assert (skipped("already_applied") - before[0], skipped("stale_sequence") - before[1]) == (
        1, 1)


def report(sequence: int | None, status: Status = Status.RECEIVED) -> Report:
    body = StatusChange(dossier_code=CODE, status=status,
                        at=datetime(2025, 1, 2, 2, 0, 0, 250000, tzinfo=UTC))
    return Report(CHANGED, body, sequence, None)


def test_a_report_pushed_twice_is_one_message_and_its_counter_travels_apart() -> None:
    once, again = report(5001).envelope(HUB, IDS), report(5001).envelope(HUB, IDS)
    assert once.id == again.id and once.source == HUB and once.sequence is None
    assert once.extensions[SYSTEM_SEQUENCE] == "5001" and once.agency == "000.00.00.H56"
    assert report(5002).envelope(HUB, IDS).id != once.id
    untimed = report(None)
    assert untimed.order() == int(untimed.at.timestamp() * 1000)
    assert SYSTEM_SEQUENCE not in untimed.envelope(HUB, IDS).extensions
    assert report(None, Status.PROCESSING).envelope(HUB, IDS).id != untimed.envelope(
        HUB, IDS).id


def test_a_batch_is_one_report_or_a_bounded_list_of_them() -> None:
    assert batch({"a": 1}, "danhSach", 2) == ([{"a": 1}], "")
    assert batch({"danhSach": [1, 2]}, "danhSach", 2) == ([1, 2], "danhSach")
    with pytest.raises(ValidationError) as empty:
        batch({"danhSach": []}, "danhSach", 2)
    assert empty.value.field == "danhSach"
    with pytest.raises(ValidationError) as many:
        batch({"danhSach": [1, 2, 3]}, "danhSach", 2)
    assert many.value.code == "client.too_many"
