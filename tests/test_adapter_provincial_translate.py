"""The provincial translation, both ways, checked against schemas/provincial (pure functions)."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from provincial_support import (
    progress_to_wire,
    sample_dossier,
    sample_progress,
    sample_status,
    status_change_to_wire,
    wire_to_dossier,
)

from adapters.provincial.mapping import ProvincialMapping, load_mapping
from adapters.provincial.translate import (
    PROGRESS_REPORTED,
    STATUS_CHANGED,
    dossier_to_wire,
    status_from_wire,
    wire_to_update,
)
from hub.contracts import load_contract
from hub.errors import ConfigError, ValidationError
from hub.model import Applicant, Channel, Status
from hub.settings import PROJECT_ROOT

MAPPINGS = PROJECT_ROOT / "mappings" / "provincial"
contract = load_contract(PROJECT_ROOT / "schemas" / "provincial")
STATUS_WORDS = tomllib.loads((MAPPINGS / "status.toml").read_text())["to_national"]


@pytest.fixture(scope="module")
def m() -> ProvincialMapping:
    return load_mapping(MAPPINGS)


def test_dossier_round_trip_and_contract(m: ProvincialMapping) -> None:
    dossier = sample_dossier()
    doc = dossier_to_wire(dossier, m)
    contract.validate("dossier", doc)
    assert doc["maHoSo"] == dossier.code and doc["coQuan"] == "000.20.31.H56"
    assert doc["chuHoSo"] == {
        "soDinhDanh": "038095001234", "hoTen": "Lê Thị Hoa", "loaiDoiTuong": "CONG_DAN",
        "ngaySinh": "14/03/1995", "diaChi": "Thôn 3, xã Quảng Phú, Thanh Hóa",
        "soDienThoai": "0912345678", "email": "hoa@example.vn",
    }
    assert doc["kenhNop"] == "TRUC_TUYEN" and doc["trangThai"] == "CHO_TIEP_NHAN"
    assert doc["phiLePhi"] == [{"maPhi": "LP-XD", "tenPhi": "Lệ phí cấp phép xây dựng",
                                "soTien": 75000, "loaiPhi": 2}]
    assert wire_to_dossier(doc, m) == dossier


def test_minimal_dossier_round_trip(m: ProvincialMapping) -> None:
    dossier = sample_dossier(
        procedure_name=None, field_code=None, field_name=None, handling_unit=None,
        submitted_at=None, due_at=None, attachments=(), fees=(),
        applicant=Applicant(identity_number="123456789", name="Vũ D"),
    )
    doc = dossier_to_wire(dossier, m)
    contract.validate("dossier", doc)
    assert set(doc["chuHoSo"]) == {"soDinhDanh", "hoTen", "loaiDoiTuong"}
    assert "ngayNop" not in doc
    assert wire_to_dossier(doc, m) == dossier


def test_codes_the_province_pads_are_read_without_the_blanks(m: ProvincialMapping) -> None:
    """The canonical model refuses a code with blanks around it, as the REST contract does;
    what the province's own system writes is the adapter's to read, as it always has."""
    dossier = sample_dossier()
    doc = dossier_to_wire(dossier, m)
    for name in ("maHoSo", "maThuTuc", "coQuan"):
        doc[name] = f" {doc[name]} "
    doc["chuHoSo"]["soDinhDanh"] += "\n"
    assert wire_to_dossier(doc, m) == dossier
    step = sample_progress()
    update = progress_to_wire(step, m, procedure_code="1.010708")
    update["maHoSo"], update["maThuTuc"] = f"{update['maHoSo']} ", " 1.010708"
    read = wire_to_update(update, m)
    assert read.body == step and read.procedure == "1.010708"


@pytest.mark.parametrize("status", list(Status))
def test_every_national_status_both_ways(m: ProvincialMapping, status: Status) -> None:
    doc = dossier_to_wire(sample_dossier(status=status), m)
    contract.validate("dossier", doc)
    assert wire_to_dossier(doc, m).status is status
    change = status_change_to_wire(sample_status(status), m)
    contract.validate("status-change", change)
    update = wire_to_update(change, m)
    assert update.event_type == STATUS_CHANGED and update.body.status is status
    step = sample_progress().model_copy(update={"status": status})
    progress = progress_to_wire(step, m)
    contract.validate("progress", progress)
    assert wire_to_update(progress, m).body.status is status


@pytest.mark.parametrize(("word", "national"), sorted(STATUS_WORDS.items()))
def test_every_provincial_status_word(m: ProvincialMapping, word: str, national: str) -> None:
    assert status_from_wire(word, m, "trangThai") is Status[national]
    doc = {"loaiCapNhat": "TRANG_THAI", "maHoSo": "000.00.00.H56-250101-0001",
           "trangThai": word, "thoiGian": "02/01/2025 09:00:00"}
    contract.validate("status-change", doc)
    assert wire_to_update(doc, m).body.status is Status[national]


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_both_ways(m: ProvincialMapping, channel: Channel) -> None:
    doc = dossier_to_wire(sample_dossier(channel=channel), m)
    assert wire_to_dossier(doc, m).channel is channel


def test_dates_are_vietnam_time_both_ways(m: ProvincialMapping) -> None:
    doc = dossier_to_wire(sample_dossier(), m)
    assert doc["ngayNop"] == "01/01/2025 00:45:05"  # 17:45:05 UTC the day before
    assert doc["ngayHenTra"] == "15/01/2025 17:00:00"
    back = wire_to_dossier(doc, m)
    assert back.submitted_at == datetime(2024, 12, 31, 17, 45, 5, tzinfo=UTC)
    assert back.submitted_at is not None
    assert back.submitted_at.tzinfo == ZoneInfo("Asia/Ho_Chi_Minh")
    assert back.applicant.birth_date == date(1995, 3, 14)
    naive = dossier_to_wire(sample_dossier(due_at=datetime(2025, 2, 1, 16, 30)), m)
    assert naive["ngayHenTra"] == "01/02/2025 16:30:00"


def test_progress_round_trip(m: ProvincialMapping) -> None:
    step = sample_progress()
    doc = progress_to_wire(step, m, sequence=7, procedure_code="1.010708")
    contract.validate("progress", doc)
    assert doc["thoiDiemXuLy"] == "03/01/2025 11:00:00" and doc["hanXuLy"] == "10/01/2025 17:00:00"
    update = wire_to_update(doc, m)
    assert update.event_type == PROGRESS_REPORTED
    assert update.body == step
    assert (update.sequence, update.procedure) == (7, "1.010708")


def test_status_change_round_trip(m: ProvincialMapping) -> None:
    change = sample_status(Status.RESOLVED, Status.PROCESSING)
    doc = status_change_to_wire(change, m, sequence=12)
    assert doc["trangThai"] == "DA_CO_KET_QUA" and doc["trangThaiTruoc"] == "DANG_XU_LY"
    update = wire_to_update(doc, m)
    assert update.body == change and update.sequence == 12 and update.procedure is None


def status_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"loaiCapNhat": "TRANG_THAI", "maHoSo": "000.00.00.H56-250101-0001",
                           "trangThai": "DA_TIEP_NHAN", "thoiGian": "02/01/2025 09:00:00"}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"trangThai": "XONG"}, "trangThai", "client.schema_invalid"),
        ({"trangThai": None}, "trangThai", "client.schema_invalid"),
        ({"thoiGian": "2025-01-02T09:00:00"}, "thoiGian", "client.schema_invalid"),
        ({"thoiGian": "2/1/2025 09:00:00"}, "thoiGian", "client.schema_invalid"),
        ({"maHoSo": "H56-1"}, "maHoSo", "client.bad_code"),
        ({"maHoSo": None}, "maHoSo", "client.schema_invalid"),
        ({"soThuTu": -1}, "soThuTu", "client.schema_invalid"),
        ({"soThuTu": "3"}, "soThuTu", "client.schema_invalid"),
        ({"maThuTuc": "1010708"}, "maThuTuc", "client.bad_code"),
        ({"loaiCapNhat": "KHAC"}, "loaiCapNhat", "client.schema_invalid"),
        ({"trangThaiTruoc": "DA_TRA_KET_QUA"}, "trangThai", "client.bad_transition"),
    ],
)
def test_bad_updates_name_the_province_field(
    m: ProvincialMapping, changes: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ValidationError) as err:
        wire_to_update(status_doc(**changes), m)
    assert err.value.field == field
    assert err.value.code == code


def test_bad_dossier_fields_are_named(m: ProvincialMapping) -> None:
    doc = dossier_to_wire(sample_dossier(), m)
    doc["chuHoSo"]["soDinhDanh"] = "12345"
    with pytest.raises(ValidationError) as err:
        wire_to_dossier(doc, m)
    assert err.value.field == "chuHoSo.soDinhDanh"
    assert "12345" in err.value.message or err.value.code == "client.bad_code"
    doc = dossier_to_wire(sample_dossier(), m)
    doc["tepDinhKem"][0]["maBam"] = "xyz"
    with pytest.raises(ValidationError) as err:
        wire_to_dossier(doc, m)
    assert err.value.field == "tepDinhKem[0].maBam"
    doc = dossier_to_wire(sample_dossier(), m)
    doc["kenhNop"] = "FAX"
    with pytest.raises(ValidationError) as err:
        wire_to_dossier(doc, m)
    assert err.value.field == "kenhNop"


def test_contract_names_the_field() -> None:
    m = load_mapping(MAPPINGS)
    doc = dossier_to_wire(sample_dossier(), m)
    doc["chuHoSo"]["tuoi"] = 30
    with pytest.raises(ValidationError) as err:
        contract.validate("dossier", doc)
    assert err.value.field == "chuHoSo.tuoi"


def copy_mappings(tmp_path: Path) -> Path:
    target = tmp_path / "provincial"
    shutil.copytree(MAPPINGS, target)
    return target


def test_inconsistent_status_mapping_is_refused(tmp_path: Path) -> None:
    target = copy_mappings(tmp_path)
    status = target / "status.toml"
    status.write_text(status.read_text().replace('RESOLVED = "DA_CO_KET_QUA"',
                                                 'RESOLVED = "DANG_XU_LY"'))
    with pytest.raises(ConfigError) as err:
        load_mapping(target)
    assert err.value.field == "status.toml [from_national].RESOLVED"

    target = copy_mappings(tmp_path / "b")
    status = target / "status.toml"
    status.write_text(status.read_text().replace('WITHDRAWN = "CONG_DAN_RUT_HO_SO"\n', ""))
    with pytest.raises(ConfigError) as err:
        load_mapping(target)
    assert "WITHDRAWN" in err.value.message


def test_vendor_with_other_field_names(tmp_path: Path) -> None:
    target = copy_mappings(tmp_path)
    fields = target / "fields.toml"
    fields.write_text(fields.read_text().replace('code = "maHoSo"', 'code = "soHoSo"')
                      .replace('name = "hoTen"', 'name = "hoVaTen"'))
    m = load_mapping(target)
    doc = dossier_to_wire(sample_dossier(), m)
    assert doc["soHoSo"] == "000.00.00.H56-250101-0001" and doc["chuHoSo"]["hoVaTen"]
    assert wire_to_dossier(doc, m) == sample_dossier()
    unknown_key = copy_mappings(tmp_path / "b")
    fields = unknown_key / "fields.toml"
    fields.write_text(fields.read_text().replace("[reply]\n", '[reply]\ncolour = "mau"\n'))
    with pytest.raises(ConfigError) as err:
        load_mapping(unknown_key)
    assert err.value.field == "fields.toml [reply].colour"
