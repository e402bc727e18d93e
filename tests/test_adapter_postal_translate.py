"""Canonical PostalPickup -> create order, tracking entries -> canonical states: every field,
the contracts in schemas/postal/, every collection state, and bad input named by field."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from postal_support import sample_pickup

from adapters.postal import mapping, translate
from adapters.postal.config import PostalConfig
from adapters.postal.mapping import PostalMapping
from hub.adapters import load_config
from hub.contracts import load_contract
from hub.errors import ConfigError, InvalidMessage, ValidationError
from hub.model import VN_TZ, PostalPickup
from hub.settings import PROJECT_ROOT

SCHEMAS = PROJECT_ROOT / "schemas"
CONTRACT = load_contract(SCHEMAS / "postal")


@pytest.fixture(scope="module")
def cfg() -> PostalConfig:
    return PostalConfig.from_mapping(load_config(PROJECT_ROOT / "mappings", "postal"))


@pytest.fixture(scope="module")
def maps() -> PostalMapping:
    return mapping.load(PROJECT_ROOT / "mappings")


def pickup(**changes: Any) -> PostalPickup:
    return PostalPickup.model_validate(sample_pickup(**changes))


def test_order_message(cfg: PostalConfig, maps: PostalMapping) -> None:
    msg = translate.order_message(pickup(cod_amount="25000"), "EA123456785VN", cfg, maps)
    CONTRACT.validate("order", msg, error=InvalidMessage, code="client.mapping_failed")
    assert msg["CustomerCode"] == "LIENTHONG"
    assert msg["ItemCode"] == "EA123456785VN"
    assert msg["OrderNumber"] == "000.00.00.H56-250101-0001"
    assert msg["CODAmount"] == 25000
    assert msg["Sender"]["Name"] == "Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa"
    assert msg["Receiver"] == {
        "Name": "Nguyễn Văn A",
        "Address": "1 Lê Lợi, Sầm Sơn",
        "Tel": "0912345678",
        "Province": "Thanh Hóa",
        "District": "Sầm Sơn",
        "Email": "a@example.vn",
    }
    assert msg["Description"] == "Ho so 000.00.00.H56-250101-0001 (tra ket qua)"


def test_optional_party_fields_are_left_out(cfg: PostalConfig, maps: PostalMapping) -> None:
    data = sample_pickup(direction="pickup", description="Nhận hồ sơ tại nhà")
    data["sender"] = {"name": "Nguyễn Văn A", "address": "1 Lê Lợi", "phone": "0912345678"}
    msg = translate.order_message(PostalPickup.model_validate(data), "VNP0001", cfg, maps)
    assert msg["Sender"] == {"Name": "Nguyễn Văn A", "Address": "1 Lê Lợi", "Tel": "0912345678"}
    assert msg["Description"] == "Nhận hồ sơ tại nhà"
    CONTRACT.validate("order", msg, error=InvalidMessage, code="client.mapping_failed")


def test_order_number_format(maps: PostalMapping) -> None:
    raw = load_config(PROJECT_ROOT / "mappings", "postal")
    cfg = PostalConfig.from_mapping({**raw, "order_number": "{dossier_code}-{direction}"})
    assert translate.order_number(pickup(), cfg) == "000.00.00.H56-250101-0001-return"
    with pytest.raises(ConfigError) as err:
        PostalConfig.from_mapping({**raw, "order_number": "{dossier}"})
    assert err.value.field == "order_number"


def test_fractional_cod_is_refused(cfg: PostalConfig, maps: PostalMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.order_message(pickup(cod_amount="10.5"), "VNP0001", cfg, maps)
    assert err.value.field == "cod_amount"


def test_contract_names_the_field_without_repeating_the_value(
    cfg: PostalConfig, maps: PostalMapping
) -> None:
    msg = translate.order_message(pickup(), "VNP0001", cfg, maps)
    msg["Receiver"]["Tel"] = "call me 0912345678"
    with pytest.raises(InvalidMessage) as err:
        CONTRACT.validate("order", msg, error=InvalidMessage, code="client.mapping_failed")
    assert err.value.field == "Receiver.Tel"
    assert "0912345678" not in err.value.message


@pytest.mark.parametrize(("wire", "state"), [("0", 0), ("1", 1), (2, 2), ("3", 3), ("4", 4)])
def test_every_collection_state(maps: PostalMapping, wire: Any, state: int) -> None:
    item = translate.track_item(
        {"ItemCode": "VNP0001", "State": wire, "Time": "20250102093000", "Note": ""}, maps
    )
    assert item.state == state
    assert item.note is None
    assert item.at == datetime(2025, 1, 2, 9, 30, tzinfo=VN_TZ)


def test_unknown_state_names_the_field(maps: PostalMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.track_item(
            {"ItemCode": "X", "State": "9", "Time": "20250102093000"}, maps, "Items.3"
        )
    assert err.value.field == "Items.3.State"
    assert "statuses.toml" in err.value.message


def test_bad_time_names_the_field(maps: PostalMapping) -> None:
    with pytest.raises(ValidationError) as err:
        translate.track_item({"ItemCode": "X", "State": "1", "Time": "02/01/2025"}, maps)
    assert err.value.field == "Time"


def test_mapping_errors_name_the_key(tmp_path: Path, cfg: PostalConfig) -> None:
    base = tmp_path / "postal"
    base.mkdir()
    for name in ("fields.toml", "statuses.toml", "messages.toml"):
        (base / name).write_bytes((PROJECT_ROOT / "mappings" / "postal" / name).read_bytes())
    text = (base / "statuses.toml").read_text()
    (base / "statuses.toml").write_text(text.replace('"4" = 4', '"4" = 7'))
    with pytest.raises(ConfigError) as err:
        mapping.load(tmp_path)
    assert err.value.field == "collection_state.4"
    (base / "statuses.toml").write_text(text.replace('outcome = "rejected"', 'outcome = "nope"'))
    with pytest.raises(ConfigError) as err:
        mapping.load(tmp_path)
    assert err.value.field == "order_status.103"
    (base / "statuses.toml").write_text(text)
    fields = (base / "fields.toml").read_text()
    (base / "fields.toml").write_text(fields.replace('waybill = "ItemCode"', ""))
    with pytest.raises(ConfigError) as err:
        mapping.load(tmp_path)
    assert err.value.field == "waybill"
    (base / "fields.toml").write_text(fields)
    (base / "messages.toml").write_text(
        (base / "messages.toml").read_text().replace('"$cod_amount"', '"$cod"'))
    with pytest.raises(ConfigError) as err:
        translate.order_message(pickup(), "VNP0001", cfg, mapping.load(tmp_path))
    assert err.value.field == "messages.toml [order]" and "$cod" in err.value.message


def test_config_errors_name_the_key() -> None:
    raw = load_config(PROJECT_ROOT / "mappings", "postal")
    with pytest.raises(ConfigError) as err:
        PostalConfig.from_mapping({**raw, "page_size": 0})
    assert err.value.field == "page_size"
    with pytest.raises(ConfigError) as err:
        PostalConfig.from_mapping({**raw, "pool": {"ranges": [{"first": "VNP1"}]}})
    assert err.value.field == "pool.ranges.0.last"
    cfg = PostalConfig.from_mapping(
        {**raw, "pool": {"ranges": [{"first": "VNP0001", "last": "VNP0009"}]}}
    )
    assert cfg.ranges[0].last == "VNP0009"
