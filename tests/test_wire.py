"""Reading and writing a system's records (hub.wiredates, hub.wirerecord) and the mapping-file
tables the adapters read them by (hub.tomlmap: wire_dates, words, distinct_words): pure
functions, so plain values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import IntEnum
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from hub import codes, tomlmap
from hub import wirerecord as wr
from hub.errors import ConfigError, ValidationError
from hub.model import StatusChange, validate_model
from hub.wiredates import WireDates

VN = ZoneInfo("Asia/Ho_Chi_Minh")
PORTAL = WireDates("%Y%m%d%H%M%S", VN)
PROVINCE = WireDates("%d/%m/%Y %H:%M:%S", VN, "%d/%m/%Y")


def test_dates_are_written_in_the_wire_zone_and_read_back_aware() -> None:
    at = datetime(2025, 1, 1, 1, 30, tzinfo=UTC)
    assert PORTAL.write(at) == "20250101083000"
    assert PORTAL.write(datetime(2025, 1, 1, 8, 30)) == "20250101083000"  # naive: already local
    assert PORTAL.read("20250101083000", "at") == at
    assert PROVINCE.write_date(date(1995, 3, 14)) == "14/03/1995"
    assert PROVINCE.read_date("14/03/1995", "birth") == date(1995, 3, 14)


@pytest.mark.parametrize("text", ["2025111083000", "20250101 83000", "2025-01-01", 20250101083000])
def test_a_date_off_the_fixed_width_is_refused_naming_the_field(text: object) -> None:
    with pytest.raises(ValidationError) as err:
        PORTAL.read(text, "ThoiGian")
    assert err.value.field == "ThoiGian"
    assert "yyyyMMddHHmmss" in err.value.message


def test_a_record_read_field_by_field_names_the_system_field() -> None:
    doc = {"ma": "  000.00.00.H56-250101-0001 ", "ten": "", "kenh": "TRUC_TUYEN", "so": -1}
    assert wr.code(doc, "ma", "ds[0].") == "000.00.00.H56-250101-0001"
    with pytest.raises(ValidationError) as missing:
        wr.required(doc, "ten", "ds[0].")
    assert missing.value.field == "ds[0].ten"
    assert wr.word({"TRUC_TUYEN": 2}, doc["kenh"], "kenh", "channel") == 2
    with pytest.raises(ValidationError) as word:
        wr.word({"TRUC_TUYEN": 2}, "FAX", "kenh", "channel")
    assert "TRUC_TUYEN" in word.value.message and word.value.field == "kenh"
    with pytest.raises(ValidationError) as counter:
        wr.counter(doc, "so", "")
    assert counter.value.field == "so"
    with pytest.raises(ValidationError):
        wr.counter({"so": True}, "so", "")
    assert wr.counter({}, "so", "") is None
    assert wr.optional_time({"t": ""}, "t", PORTAL, "") is None
    assert wr.optional_str({"x": None}, "x", "") is None
    with pytest.raises(ValidationError) as text:
        wr.optional_str({"x": 5}, "x", "a.")
    assert text.value.field == "a.x"


def test_a_hub_code_is_read_in_its_canonical_form_or_refused_at_the_field() -> None:
    assert wr.parsed_code(codes.parse_procedure, {"tt": " 1.010708 "}, "tt", "") == "1.010708"
    assert wr.parsed_code(codes.parse_procedure, {}, "tt", "") is None
    with pytest.raises(ValidationError) as err:
        wr.parsed_code(codes.parse_procedure, {"tt": "abc"}, "tt", "ds[1].")
    assert err.value.field == "ds[1].tt"


def test_a_canonical_validation_names_the_system_field() -> None:
    data = {"dossier_code": "000.00.00.H56-250101-0001", "status": 99, "at": datetime.now(UTC)}
    with pytest.raises(ValidationError) as err:
        wr.validated(lambda: validate_model(StatusChange, data),
                     lambda field: {"status": "trangThai"}.get(field, field))
    assert err.value.field == "trangThai"


def test_set_attributes_are_written_under_their_wire_names_unset_ones_left_out() -> None:
    source = SimpleNamespace(note="ghi chú", field_code=None, due_at=datetime(2025, 1, 6, 3, 0,
                                                                              tzinfo=UTC))
    out: wr.Doc = {}
    wr.put_set(out, {"note": "GhiChu", "field_code": "MaLinhVuc"}, source, ("note", "field_code"))
    wr.put_set(out, {"due_at": "NgayHenTra"}, source, ("due_at",), PORTAL.write)
    assert out == {"GhiChu": "ghi chú", "NgayHenTra": "20250106100000"}
    assert wr.amount(Decimal("8000.00")) == 8000 and wr.amount(Decimal("0.5")) == 0.5


class Colour(IntEnum):
    RED = 1
    GREEN = 2


def test_words_read_several_and_write_one_that_reads_back() -> None:
    doc = {"read": {"DO": "RED", "DO_TUOI": "RED", "XANH": "GREEN"},
           "write": {"RED": "DO", "GREEN": "XANH"}}
    readable, written = tomlmap.words(doc, "read", "write", Colour, "colours.toml")
    assert readable["DO_TUOI"] is Colour.RED and written[Colour.RED] == "DO"
    doc["write"]["RED"] = "XANH"
    with pytest.raises(ConfigError) as wrong:
        tomlmap.words(doc, "read", "write", Colour, "colours.toml")
    assert wrong.value.field == "colours.toml [write].RED"
    del doc["write"]["RED"]
    with pytest.raises(ConfigError) as lacking:
        tomlmap.words(doc, "read", "write", Colour, "colours.toml")
    assert "RED" in lacking.value.message


def test_distinct_words_and_wire_dates_tables() -> None:
    assert tomlmap.distinct_words({"b": {"true": "1", "false": "0"}}, "b", ("true", "false"),
                                  "codes.toml") == {"true": "1", "false": "0"}
    with pytest.raises(ConfigError) as same:
        tomlmap.distinct_words({"b": {"true": "1", "false": "1"}}, "b", ("true", "false"),
                               "codes.toml")
    assert same.value.field == "codes.toml [b]"
    with pytest.raises(ConfigError) as missing:
        tomlmap.distinct_words({"b": {"true": "1"}}, "b", ("true", "false"), "codes.toml")
    assert missing.value.field == "codes.toml [b].false"
    dates = tomlmap.wire_dates({"dates": {"datetime": "%d/%m/%Y %H:%M:%S", "date": "%d/%m/%Y",
                                          "timezone": "Asia/Ho_Chi_Minh"}},
                               "codes.toml", time="datetime", date="date")
    assert dates == PROVINCE
    with pytest.raises(ConfigError) as bad:
        tomlmap.wire_dates({"dates": {"format": "yyyyMMdd", "timezone": "UTC"}}, "codes.toml")
    assert bad.value.field == "codes.toml [dates].format"
