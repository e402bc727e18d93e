"""Canonical PaymentRequest -> INIT, callbacks and QUERY replies -> PaymentCompleted: every
field, the contract in schemas/payment/, and bad input named by field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.payment import ledger, mapping, translate
from adapters.payment.config import PaymentConfig
from adapters.payment.mapping import PaymentMapping, checksum
from hub.adapters import load_config
from hub.contracts import load_contract
from hub.errors import ConfigError, InvalidMessage, ValidationError
from hub.model import VN_TZ, PaymentCompleted, PaymentRequest
from hub.settings import PROJECT_ROOT

SECRET = "s3cr3t"
SCHEMAS = PROJECT_ROOT / "schemas"
CONTRACT = load_contract(SCHEMAS / "payment")
NOW = datetime(2025, 1, 1, 8, 30, 0, tzinfo=VN_TZ)


@pytest.fixture(scope="module")
def cfg() -> PaymentConfig:
    return PaymentConfig.from_mapping(load_config(PROJECT_ROOT / "mappings", "payment"))


@pytest.fixture(scope="module")
def maps() -> PaymentMapping:
    return mapping.load(PROJECT_ROOT / "mappings")


def request(**changes: Any) -> PaymentRequest:
    data: dict[str, Any] = {
        "dossier_code": "000.00.00.H56-250101-0001",
        "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56",
        "reference": "REF-0001",
        "amount": "150000",
        "fees": [
            {"code": "LP01", "name": "Lệ phí cấp giấy", "amount": "100000", "kind": 2},
            {"code": "P01", "name": "Phí thẩm định", "amount": "50000", "kind": 1},
        ],
        "payer": {
            "identity_number": "001234567867",
            "name": "Nguyễn Văn A",
            "address": "1 Lê Lợi, Thanh Hóa",
        },
        "description": "",
    }
    data.update(changes)
    return PaymentRequest.model_validate(data)


def test_init_message_fields(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    msg = translate.init_message(request(), cfg, maps, SECRET, NOW)
    CONTRACT.validate("init", msg, error=InvalidMessage, code="client.mapping_failed")
    assert {
        k: msg[k]
        for k in (
            "LoaiBanTin",
            "PhienBan",
            "MaDoiTac",
            "MaThamChieu",
            "SoTien",
            "LoaiHinhThanhToan",
            "NgonNgu",
            "MaTienTe",
            "ThoiGianGD",
        )
    } == {
        "LoaiBanTin": "INIT",
        "PhienBan": "1.0.6",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "SoTien": 150000,
        "LoaiHinhThanhToan": "PAY",
        "NgonNgu": "vi-VN",
        "MaTienTe": "VND",
        "ThoiGianGD": "20250101083000",
    }
    assert msg["ThongTinGiaoDich"] == "Nop phi, le phi ho so 000.00.00.H56-250101-0001"
    receipt = msg["ThongTinBienLai"]
    assert receipt["MaDichVu"] == 2
    assert receipt["MaTTHC"] == "2.002492"
    assert receipt["MaDonVi"] == "000.00.00.H56"
    assert receipt["MaHoSo"] == "000.00.00.H56-250101-0001"
    # H56 has its own beneficiary account in beneficiaries.toml.
    assert receipt["TKThuHuong"] == "3511.0.1056001.00000"
    assert receipt["PhiLePhi"] == [
        {
            "LoaiPhiLePhi": 2,
            "MaPhiLePhi": "LP01",
            "TenPhiLePhi": "Lệ phí cấp giấy",
            "SoTien": 100000,
        },
        {"LoaiPhiLePhi": 1, "MaPhiLePhi": "P01", "TenPhiLePhi": "Phí thẩm định", "SoTien": 50000},
    ]
    assert receipt["HoTenNguoiNop"] == "Nguyễn Văn A"
    assert receipt["SoCMNDNguoiNop"] == "001234567867"
    assert checksum.matches(msg, maps.checksum_orders["init"], SECRET)


def test_time_is_sent_in_vietnam_time(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    utc_time = datetime.fromisoformat("2025-01-01T01:30:00+00:00")
    assert translate.init_message(request(), cfg, maps, SECRET, utc_time)["ThoiGianGD"] == (
        "20250101083000"
    )


def test_without_fee_lines_one_line_carries_the_amount(
    cfg: PaymentConfig, maps: PaymentMapping
) -> None:
    msg = translate.init_message(
        request(fees=[], description="Phí hồ sơ", agency_code="000.00.00.H41"),
        cfg,
        maps,
        SECRET,
        NOW,
    )
    assert msg["ThongTinGiaoDich"] == "Phí hồ sơ"
    assert msg["ThongTinBienLai"]["PhiLePhi"] == [
        {"LoaiPhiLePhi": 1, "MaPhiLePhi": "2.002492", "TenPhiLePhi": "Phí hồ sơ", "SoTien": 150000}
    ]
    # H41 has no account of its own: the default one.
    assert msg["ThongTinBienLai"]["TKThuHuong"] == "3511.0.1234567.00000"


def test_fractional_dong_is_refused(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.init_message(request(amount="150000.5", fees=[]), cfg, maps, SECRET, NOW)
    assert err.value.field == "amount"
    assert "whole numbers" in err.value.message


def test_fee_lines_must_add_up(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.init_message(request(amount="160000"), cfg, maps, SECRET, NOW)
    assert err.value.field == "fees"
    assert "150000" in err.value.message and "160000" in err.value.message


def test_agency_without_beneficiary(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    bare = PaymentMapping(**{**maps.__dict__, "beneficiaries": {}})
    with pytest.raises(ValidationError) as err:
        translate.init_message(request(), cfg, bare, SECRET, NOW)
    assert err.value.field == "agency_code"
    assert err.value.code == translate.MAPPING_FAILED
    assert "beneficiaries.toml" in err.value.message


def test_contract_names_the_bad_field(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    msg = translate.init_message(request(), cfg, maps, SECRET, NOW)
    msg["ThongTinBienLai"]["SoCMNDNguoiNop"] = "12AB"
    with pytest.raises(InvalidMessage) as err:
        CONTRACT.validate("init", msg, error=InvalidMessage, code="client.mapping_failed")
    assert err.value.field == "ThongTinBienLai.SoCMNDNguoiNop"
    assert err.value.code == "client.mapping_failed"


def test_query_message(cfg: PaymentConfig, maps: PaymentMapping) -> None:
    msg = translate.query_message("REF-0001", cfg, maps, SECRET, NOW)
    CONTRACT.validate("query", msg, error=InvalidMessage, code="client.mapping_failed")
    assert msg == {
        "LoaiBanTin": "QUERY",
        "PhienBan": "1.0.6",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "ThoiGianGD": "20250101083000",
        "MaXacThuc": checksum.compute(msg, maps.checksum_orders["query"], SECRET),
    }


def callback(**changes: Any) -> dict[str, Any]:
    doc = {
        "LoaiBanTin": "PAY",
        "MaLoi": "00",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "SoTien": 150000,
        "MaTienTe": "VND",
        "MaGiaoDich": "GD0000000001",
        "MaNganHang": "VCB",
        "ThoiGianGD": "20250101084512",
        "ThongTinGiaoDich": "x",
    }
    doc.update(changes)
    return doc


def from_callback(doc: dict[str, Any], maps: PaymentMapping) -> PaymentCompleted:
    """The event the callback route makes of ``doc`` for the payment it names."""
    payment = ledger.Transaction(
        reference="REF-0001", partner="LIENTHONG", amount=150000,
        dossier_code="000.00.00.H56-250101-0001", agency=None, procedure=None, request_id="r",
        correlation_id=None, created_at=NOW)
    report = ledger.reported(doc, paid=doc["MaLoi"] == "00", digest="-", source="callback",
                             outcome_field="MaLoi")
    return translate.completed(payment, report, maps, NOW, str(doc["MaLoi"]))


def test_callback_success(maps: PaymentMapping) -> None:
    done = from_callback(callback(), maps)
    assert done.paid is True
    assert done.error_code is None
    assert done.transaction_id == "GD0000000001"
    assert done.amount == Decimal(150000)
    assert done.at == datetime(2025, 1, 1, 8, 45, 12, tzinfo=VN_TZ)


def test_callback_failure_keeps_the_code(maps: PaymentMapping) -> None:
    done = from_callback(callback(MaLoi="51", SoTien="150000"), maps)
    assert done.paid is False
    assert done.error_code == "51"


def test_callback_bad_time_names_the_field(maps: PaymentMapping) -> None:
    with pytest.raises(ValidationError) as err:
        from_callback(callback(ThoiGianGD="2025-01-01"), maps)
    assert err.value.field == "ThoiGianGD"


def test_callback_contract() -> None:
    with pytest.raises(ValidationError) as err:
        CONTRACT.validate("callback", {k: v for k, v in callback().items() if k != "MaLoi"},
                          code="client.schema_invalid")
    assert "MaLoi" in err.value.message


@pytest.mark.parametrize(("state", "outcome"), [("1", "paid"), (3, "pending"), ("4", "failed")])
def test_query_states(maps: PaymentMapping, state: Any, outcome: str) -> None:
    assert translate.query_outcome({"TrangThaiGD": state}, maps) == outcome


def test_unknown_query_state(maps: PaymentMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.query_outcome({"TrangThaiGD": "7"}, maps)
    assert err.value.field == "TrangThaiGD"
    assert "codes.toml" in err.value.message


def test_config_errors_name_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = load_config(PROJECT_ROOT / "mappings", "payment")
    with pytest.raises(ConfigError) as err:
        PaymentConfig.from_mapping({**raw, "base_url": "ftp://x"})
    assert err.value.field == "base_url"
    with pytest.raises(ConfigError) as err:
        PaymentConfig.from_mapping({**raw, "reconcile_after_minutes": 0})
    assert err.value.field == "reconcile_after_minutes"
    with pytest.raises(ConfigError) as err:
        PaymentConfig.from_mapping({**raw, "policy": {"timeuot": 1}})
    assert err.value.field == "policy.timeuot"
    cfg = PaymentConfig.from_mapping({**raw, "secret_env": "LT_TEST_NO_SUCH_SECRET"})
    monkeypatch.delenv("LT_TEST_NO_SUCH_SECRET", raising=False)
    with pytest.raises(ConfigError) as err:
        cfg.secret()
    assert "LT_TEST_NO_SUCH_SECRET" in err.value.message
