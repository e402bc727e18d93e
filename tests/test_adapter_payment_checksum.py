"""MaXacThuc of each message kind against vectors computed by hand (printf '...' | sha256sum),
with the field orders read from mappings/payment/checksums.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.payment import mapping
from adapters.payment.mapping import checksum
from hub.errors import ConfigError
from hub.settings import PROJECT_ROOT

SECRET = "s3cr3t"
INFO = "Nộp phí hồ sơ 000.00.00.H56-250101-0001"


@pytest.fixture(scope="module")
def orders() -> dict[str, tuple[str, ...]]:
    return mapping.load(PROJECT_ROOT / "mappings").checksum_orders


def test_init_vector(orders: dict[str, tuple[str, ...]]) -> None:
    message = {
        "LoaiBanTin": "INIT",
        "PhienBan": "1.0.6",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "SoTien": 150000,
        "LoaiHinhThanhToan": "PAY",
        "MaKenhThanhToan": "DVCQG",
        "MaThietBi": "WEB",
        "NgonNgu": "vi-VN",
        "MaTienTe": "VND",
        "MaNganHang": "",
        "ThongTinGiaoDich": INFO,
        "ThoiGianGD": "20250101083000",
        "Ip": "10.0.0.1",
        "ThongTinBienLai": {"MaDichVu": 2},
    }
    assert checksum.plain_text(message, orders["init"], SECRET) == (
        "INIT|1.0.6|LIENTHONG|REF-0001|150000|PAY|DVCQG|WEB|vi-VN|VND||"
        + INFO
        + "|20250101083000|10.0.0.1|s3cr3t"
    )
    assert checksum.compute(message, orders["init"], SECRET) == (
        "6437f85884c77aa394232980f19df1c6363350e361986705960744228cbc4ed0"
    )


def test_callback_vector(orders: dict[str, tuple[str, ...]]) -> None:
    digest = "4a18b79ede96144e8cb6cb553981fd5761fa50409b0f723d35fa203c8fefcc7b"
    message: dict[str, object] = {
        "LoaiBanTin": "PAY",
        "MaLoi": "00",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "SoTien": 150000,
        "MaTienTe": "VND",
        "MaGiaoDich": "GD0000000001",
        "MaNganHang": "VCB",
        "ThoiGianGD": "20250101084512",
        "ThongTinGiaoDich": INFO,
        "MaXacThuc": digest,
    }
    assert checksum.matches(message, orders["callback"], SECRET)
    # The gateway may send the hex in upper case.
    assert checksum.matches({**message, "MaXacThuc": digest.upper()}, orders["callback"], SECRET)
    assert not checksum.matches({**message, "SoTien": 150001}, orders["callback"], SECRET)
    assert not checksum.matches(message, orders["callback"], "other secret")
    assert not checksum.matches({**message, "MaXacThuc": None}, orders["callback"], SECRET)


def test_query_vector(orders: dict[str, tuple[str, ...]]) -> None:
    message = {
        "LoaiBanTin": "QUERY",
        "PhienBan": "1.0.6",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "ThoiGianGD": "20250101093000",
    }
    signed = checksum.sign(message, orders["query"], SECRET)
    assert signed["MaXacThuc"] == (
        "de77fafd061fdc7b2dbbf712d735733ab22c1906cb93fc04c6180dfc31859407"
    )
    assert "MaXacThuc" not in message  # sign returns a new dict


def test_reply_vectors(orders: dict[str, tuple[str, ...]]) -> None:
    init_reply = {
        "LoaiBanTin": "INIT",
        "MaLoi": "00",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "UrlThanhToan": "https://pay.example.vn/p/REF-0001",
        "ThoiGianGD": "20250101083001",
    }
    assert checksum.compute(init_reply, orders["init_reply"], SECRET) == (
        "6fb0078125efa950ee5e6420e25dc6a8bf1ab4208bc6884a4762ac472908dcfb"
    )
    query_reply = {
        "LoaiBanTin": "QUERY",
        "MaLoi": "00",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
        "TrangThaiGD": "1",
        "SoTien": 150000,
        "MaGiaoDich": "GD0000000001",
        "ThoiGianGD": "20250101084512",
    }
    assert checksum.compute(query_reply, orders["query_reply"], SECRET) == (
        "a0dbea733eff0d2c9e5795cec7bb4fde2a5aba3e66c79ef39a3f7013e01754cd"
    )


def test_absent_field_counts_as_empty(orders: dict[str, tuple[str, ...]]) -> None:
    message = {
        "LoaiBanTin": "QUERY",
        "PhienBan": "1.0.6",
        "MaDoiTac": "LIENTHONG",
        "MaThamChieu": "REF-0001",
    }
    assert checksum.plain_text(message, orders["query"], "k") == "QUERY|1.0.6|LIENTHONG|REF-0001||k"


def test_order_must_place_the_secret_once(tmp_path: Path) -> None:
    doc = {kind: {"order": ["LoaiBanTin", "{secret}"]} for kind in mapping.MESSAGE_KINDS}
    assert mapping.parse_checksums(doc)["query"] == ("LoaiBanTin", "{secret}")
    doc["callback"] = {"order": ["LoaiBanTin", "MaLoi"]}
    with pytest.raises(ConfigError) as err:
        mapping.parse_checksums(doc)
    assert err.value.field == "callback.order"
    assert "{secret}" in err.value.message
    doc["callback"] = {"order": ["MaLoi", "MaLoi", "{secret}"]}
    with pytest.raises(ConfigError, match="twice"):
        mapping.parse_checksums(doc)
    del doc["callback"]
    with pytest.raises(ConfigError) as err:
        mapping.parse_checksums(doc)
    assert err.value.field == "callback"


def test_broken_mapping_file_names_the_file(tmp_path: Path) -> None:
    base = tmp_path / "payment"
    base.mkdir()
    for name in ("checksums.toml", "fields.toml", "codes.toml", "beneficiaries.toml"):
        (base / name).write_bytes((PROJECT_ROOT / "mappings" / "payment" / name).read_bytes())
    (base / "codes.toml").write_text('[errors]\n"01" = { meaning = "x" }\n[transaction_states]\n')
    with pytest.raises(ConfigError, match="00"):
        mapping.load(tmp_path)
    (base / "codes.toml").write_text(
        '[errors]\n"00" = { meaning = "ok" }\n[transaction_states]\n"1" = "settled"\n'
    )
    with pytest.raises(ConfigError) as err:
        mapping.load(tmp_path)
    assert err.value.field == "transaction_states.1"
    (base / "fields.toml").write_text("time_format = [")
    with pytest.raises(ConfigError, match=r"fields\.toml"):
        mapping.load(tmp_path)
