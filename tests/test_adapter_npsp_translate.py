"""The portal's translation, both ways, checked against schemas/npsp (pure functions)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from npsp_support import (
    mask_name,
    record_to_dossier,
    record_to_progress,
    sample_dossier,
    sample_progress,
    sample_status,
    status_from_wire,
)

from adapters.npsp.mapping import NpspMapping, load_mapping
from adapters.npsp.translate import (
    apply_status,
    dossier_to_record,
    progress_to_record,
    status_to_wire,
)
from hub.contracts import load_contract
from hub.errors import ConfigError, ValidationError
from hub.model import Applicant, ApplicantKind, Channel, Status
from hub.privacy import mask_identity
from hub.settings import PROJECT_ROOT

MAPPINGS = PROJECT_ROOT / "mappings" / "npsp"
SCHEMAS = PROJECT_ROOT / "schemas" / "npsp"


@pytest.fixture(scope="module")
def m() -> NpspMapping:
    return load_mapping(MAPPINGS)


contract = load_contract(SCHEMAS)


def test_dossier_round_trip_and_contract(m: NpspMapping) -> None:
    dossier = sample_dossier()
    record = dossier_to_record(dossier, m)
    contract.validate("dossier-record", record)
    assert record["MaHoSo"] == dossier.code
    assert record["SoGiayToChuHoSo"] == "001203004567"
    assert record["DinhDanhCHS"] == [{"LoaiDinhDanh": "1", "SoDinhDanh": "001203004567"}]
    assert record["HinhThuc"] == "1" and record["DuocThanhToanTrucTuyen"] == "1"
    assert record["DanhSachLePhi"][0]["Gia"] == 8000
    assert record_to_dossier(record, m) == dossier


def test_minimal_dossier_round_trip(m: NpspMapping) -> None:
    dossier = sample_dossier(
        procedure_name=None, field_code=None, field_name=None, handling_unit=None, note=None,
        submitted_at=None, due_at=None, attachments=(), fees=(), result_by_post=False,
        paid_online=False,
        applicant=Applicant(identity_number="123456789", name="Lê C", kind=ApplicantKind.OTHER),
    )
    record = dossier_to_record(dossier, m)
    contract.validate("dossier-record", record)
    assert "NgayNopHoSo" not in record and "TenTTHC" not in record
    assert record["DinhDanhCHS"][0]["LoaiDinhDanh"] == "2"  # 9 digits: old identity card
    assert record["LoaiDoiTuong"] == "4"
    assert record_to_dossier(record, m) == dossier


def test_codes_the_portal_pads_are_read_without_the_blanks(m: NpspMapping) -> None:
    """The canonical model refuses a code with blanks around it, as the REST contract does;
    what the portal's own records carry is the adapter's to read, as it always has."""
    dossier = sample_dossier()
    record = dossier_to_record(dossier, m)
    for name in ("MaHoSo", "MaTTHC", "SoGiayToChuHoSo"):
        record[name] = f" {record[name]}\t"
    # The portal writes its numbers as strings, a size too at times.
    record["TaiLieuNop"][0]["KichThuocTep"] = str(record["TaiLieuNop"][0]["KichThuocTep"])
    assert record_to_dossier(record, m) == dossier
    record["TaiLieuNop"][0]["KichThuocTep"] = "12 KB"
    with pytest.raises(ValidationError) as err:
        record_to_dossier(record, m)
    assert err.value.field == "TaiLieuNop[0].KichThuocTep"
    step = sample_progress()
    progress = progress_to_record(step, m)
    progress["MaHoSo"] += " "
    assert record_to_progress(progress, m) == step


@pytest.mark.parametrize("status", list(Status))
def test_every_status_both_ways(m: NpspMapping, status: Status) -> None:
    wire = status_to_wire(status, m)
    assert wire == str(int(status))  # the portal's codes are the national ones
    assert status_from_wire(wire, m) is status
    assert status_from_wire(int(wire), m) is status  # some replies carry numbers
    record = dossier_to_record(sample_dossier(status=status), m)
    contract.validate("dossier-record", record)
    assert record["TrangThaiHoSo"] == wire
    assert record_to_dossier(record, m).status is status
    step = sample_progress().model_copy(update={"status": status})
    progress = progress_to_record(step, m)
    contract.validate("progress-record", progress)
    assert record_to_progress(progress, m).status is status


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_both_ways(m: NpspMapping, channel: Channel) -> None:
    record = dossier_to_record(sample_dossier(channel=channel), m)
    assert record["KenhThucHien"] == str(int(channel))
    assert record_to_dossier(record, m).channel is channel


def test_dates_are_vietnam_time_both_ways(m: NpspMapping) -> None:
    dossier = sample_dossier(
        submitted_at=datetime(2025, 1, 1, 1, 30, tzinfo=UTC),  # aware UTC
        received_at=datetime(2024, 12, 31, 20, 5, 9, tzinfo=UTC),  # crosses midnight and year
        due_at=datetime(2025, 1, 6, 8, 0, tzinfo=timezone(timedelta(hours=9))),  # Tokyo
        resolved_at=datetime(2025, 1, 5, 16, 45),  # naive: already Vietnam time
    )
    record = dossier_to_record(dossier, m)
    assert record["NgayNopHoSo"] == "20250101083000"
    assert record["NgayTiepNhan"] == "20250101030509"
    assert record["NgayHenTra"] == "20250106060000"
    assert record["NgayKetThucXuLy"] == "20250105164500"
    back = record_to_dossier(record, m)
    assert back.submitted_at == datetime(2025, 1, 1, 1, 30, tzinfo=UTC)
    assert back.submitted_at is not None
    assert back.submitted_at.tzinfo == ZoneInfo("Asia/Ho_Chi_Minh")
    assert back.received_at == dossier.received_at
    assert back.due_at == dossier.due_at


@pytest.mark.parametrize("bad", ["2025-01-01 08:30", "202501010830", "20251301083000",
                                 "2025111083000X", "2025111830000"])
def test_bad_dates_name_the_field(m: NpspMapping, bad: str) -> None:
    record = dossier_to_record(sample_dossier(), m)
    record["NgayHenTra"] = bad
    with pytest.raises(ValidationError) as err:
        record_to_dossier(record, m)
    assert err.value.field == "NgayHenTra"
    assert "yyyyMMddHHmmss" in err.value.message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("TrangThaiHoSo", "11", "TrangThaiHoSo"),
        ("TrangThaiHoSo", None, "TrangThaiHoSo"),
        ("KenhThucHien", "9", "KenhThucHien"),
        ("MaHoSo", "H56-1", "MaHoSo"),
        ("MaTTHC", "2002492", "MaTTHC"),
        ("SoGiayToChuHoSo", "12345", "SoGiayToChuHoSo"),
        ("ChuHoSo", "", "ChuHoSo"),
        ("HinhThuc", "yes", "HinhThuc"),
        ("LoaiDoiTuong", "7", "LoaiDoiTuong"),
    ],
)
def test_bad_record_errors_name_the_portal_field(
    m: NpspMapping, field: str, value: object, expected: str
) -> None:
    record = dossier_to_record(sample_dossier(), m)
    record[field] = value
    with pytest.raises(ValidationError) as err:
        record_to_dossier(record, m)
    assert err.value.field == expected


def test_bad_nested_fields_are_named_with_their_index(m: NpspMapping) -> None:
    record = dossier_to_record(sample_dossier(), m)
    record["TaiLieuNop"][0]["MaBamTep"] = "not-a-digest"
    with pytest.raises(ValidationError) as err:
        record_to_dossier(record, m)
    assert err.value.field == "TaiLieuNop[0].MaBamTep"
    record = dossier_to_record(sample_dossier(), m)
    record["DanhSachLePhi"][0]["Gia"] = "tám nghìn"
    with pytest.raises(ValidationError) as err:
        record_to_dossier(record, m)
    assert err.value.field == "DanhSachLePhi[0].Gia"


def test_progress_round_trip_and_contract(m: NpspMapping) -> None:
    step = sample_progress()
    record = progress_to_record(step, m)
    contract.validate("progress-record", record)
    assert record["ThoiDiemXuLy"] == "20250102101500"
    assert record["NgayKetThucTheoQuyDinh"] == "20250106170000"
    assert record_to_progress(record, m) == step
    del record["NguoiXuLy"]
    with pytest.raises(ValidationError) as err:
        record_to_progress(record, m)
    assert err.value.field == "NguoiXuLy"


@pytest.mark.parametrize(
    ("status", "date_field"),
    [(Status.RECEIVED, "NgayTiepNhan"), (Status.NOT_RECEIVED, "NgayTuChoi"),
     (Status.RESOLVED, "NgayKetThucXuLy"), (Status.RESULT_RETURNED, "NgayTra"),
     (Status.PROCESSING, None)],
)
def test_status_change_applied_to_the_portal_record(
    m: NpspMapping, status: Status, date_field: str | None
) -> None:
    current = dossier_to_record(sample_dossier(), m)
    current["NoiBoCuaCong"] = "an internal field of the portal"
    change = sample_status(status, note="Đã xử lý")
    updated = apply_status(current, change, m)
    contract.validate("dossier-record", updated)
    assert updated["TrangThaiHoSo"] == str(int(status))
    assert updated["GhiChu"] == "Đã xử lý"
    assert "NoiBoCuaCong" not in updated
    assert updated["ChuHoSo"] == current["ChuHoSo"]  # the whole record, not a partial one
    if date_field:
        assert updated[date_field] == "20250102090000"


def test_contract_errors_name_the_field() -> None:
    record = dossier_to_record(sample_dossier(), load_mapping(MAPPINGS))
    del record["ChuHoSo"]
    with pytest.raises(ValidationError) as err:
        contract.validate("dossier-record", record)
    assert err.value.field == "ChuHoSo"
    record = dossier_to_record(sample_dossier(), load_mapping(MAPPINGS))
    body: dict[str, Any] = {"session": "s", "madonvi": "000.00.00.H56",
                            "service": "DongBoHoSoMC", "isUpdating": "Yes", "data": [record]}
    with pytest.raises(ValidationError) as err:
        contract.validate("DongBoHoSoMC.request", body)
    assert err.value.field == "isUpdating"
    body["isUpdating"] = "True"
    record["SoGiayToChuHoSo"] = "0012"
    with pytest.raises(ValidationError) as err:
        contract.validate("DongBoHoSoMC.request", body)
    assert err.value.field == "data[0].SoGiayToChuHoSo"
    assert "0012" not in err.value.message  # personal data stays out of error messages


def copy_mappings(tmp_path: Path) -> Path:
    target = tmp_path / "npsp"
    shutil.copytree(MAPPINGS, target)
    return target


def test_broken_mapping_names_the_key(tmp_path: Path) -> None:
    target = copy_mappings(tmp_path)
    fields = target / "fields.toml"
    fields.write_text(fields.read_text().replace('status = "TrangThaiHoSo"\n', ""))
    with pytest.raises(ConfigError) as err:
        load_mapping(target)
    assert "fields.toml [dossier]" in str(err.value.field)
    assert "status" in err.value.message

    target = copy_mappings(tmp_path / "b")
    status = target / "status.toml"
    status.write_text(status.read_text().replace('"10" = "RESULT_RETURNED"', '"10" = "DONE"'))
    with pytest.raises(ConfigError) as err:
        load_mapping(target)
    assert err.value.field == "status.toml [status].10"


def test_renamed_field_in_mapping_changes_the_wire(tmp_path: Path) -> None:
    target = copy_mappings(tmp_path)
    fields = target / "fields.toml"
    fields.write_text(fields.read_text().replace('note = "GhiChu"', 'note = "GhiChuHoSo"'))
    m = load_mapping(target)
    record = dossier_to_record(sample_dossier(), m)
    assert record["GhiChuHoSo"] == "Nộp trực tuyến" and "GhiChu" not in record
    assert record_to_dossier(record, m).note == "Nộp trực tuyến"


def test_masking_personal_data() -> None:
    assert mask_identity("001203004567") == "0012******67"
    assert mask_identity("123456789") == "1234***89"
    assert mask_name("Nguyễn Văn An") == "N. V. A."
