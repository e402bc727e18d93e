"""Population adapter: translation canonical <-> SOAP bodies, the mapping and fault tables, the
configuration and the masking helpers. Pure logic: no socket."""

from __future__ import annotations

import tomllib
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree
from population_support import (
    element_names,
    exists_to_reply,
    from_request,
    record_to_citizen,
    record_to_reply,
)

from adapters.population.client import BINDING
from adapters.population.config import PopulationConfig
from adapters.population.mapping import Mapping, load_mapping, parse_mapping
from adapters.population.translate import (
    Caller,
    citizen_to_record,
    exists_from_reply,
    record_from_reply,
    to_request,
)
from hub.errors import ConfigError, InvalidMessage, PermanentError, RetryableError
from hub.model import (
    Address,
    CitizenRecord,
    CitizenVerification,
    CitizenVerified,
    Gender,
    PersonName,
    Relative,
)
from hub.privacy import initials, mask_identity, scrub
from hub.settings import PROJECT_ROOT
from hub.transport.soap import SETTINGS
from hub.transport.soapfaults import load_faults, parse_faults

MAPPINGS = PROJECT_ROOT / "mappings" / "population"
SCHEMAS = PROJECT_ROOT / "schemas" / "population"
NS = "http://dancuquocgia.bca"
CALLER = Caller(request_id="3f1c8d2e-0000-4000-8000-000000000001", service_code="2.002492",
                integration_code="LIENTHONG-HUB", officer="CB-0001")


@pytest.fixture(scope="module")
def m() -> Mapping:
    return load_mapping(MAPPINGS)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "dancu.xsd"), parser))


@pytest.fixture(scope="module")
def soap() -> tuple[Any, Any]:
    client: Any = zeep.Client(  # type: ignore[no-untyped-call]
        str(SCHEMAS / "dancu.wsdl"), settings=SETTINGS
    )
    return client, client.create_service(BINDING, "http://127.0.0.1:9/DanCuService")


def full_record(**changes: Any) -> CitizenRecord:
    fields: dict[str, Any] = {
        "identity_number": "001090012345",
        "old_identity_number": "012345678",
        "name": PersonName(family="NGUYỄN", middle="VĂN", given="AN"),
        "gender": Gender.MALE,
        "ethnicity_code": "01",
        "ethnicity": "Kinh",
        "nationality": "VN",
        "birth_date": date(1990, 1, 15),
        "birth_year": 1990,
        "hometown": Address(province_code="01", district_code="001", commune_code="00004",
                            detail="Phường Ba Đình"),
        "permanent_address": Address(province_code="01", commune_code="00004",
                                     detail="Số 1 phố Thử Nghiệm"),
        "current_address": Address(province_code="79"),
        "father": Relative(name="NGUYỄN VĂN BÌNH", identity_number="001060054321"),
        "mother": Relative(name="TRẦN THỊ CÚC"),
        "spouse": Relative(name="LÊ THỊ DUNG", identity_number="038195004321"),
    }
    fields.update(changes)
    return CitizenRecord(**fields)


# --- request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "number_element", "birth"),
    [
        (CitizenVerification(identity_number="001090012345", name="Nguyễn Văn An",
                             birth_date=date(1990, 1, 15)),
         "SoDinhDanh", {"NgayThangNam": "19900115"}),
        (CitizenVerification(identity_number="172345678", name="Lê Thị Bình", birth_year=1995),
         "SoCMND", {"Nam": "1995"}),
    ],
    ids=["12-digit-date", "9-digit-year"],
)
def test_request_round_trip(
    m: Mapping, who: CitizenVerification, number_element: str, birth: dict[str, str]
) -> None:
    body = to_request(who, CALLER, m)
    assert body[number_element] == who.identity_number
    assert body["NgayThangNamSinh"] == birth
    assert body["MaYeuCau"] == CALLER.request_id
    assert body["MaDVC"] == "2.002492"
    back, caller = from_request(body, m)
    assert back == who
    assert caller == CALLER


@pytest.mark.parametrize(
    "who",
    [
        CitizenVerification(identity_number="001090012345", name="Nguyễn Văn An",
                            birth_date=date(1990, 1, 15)),
        CitizenVerification(identity_number="172345678", name="Lê Thị Bình", birth_year=1995),
    ],
    ids=["12-digit-date", "9-digit-year"],
)
def test_request_is_valid_against_the_xsd(
    m: Mapping, soap: tuple[Any, Any], schema: etree.XMLSchema, who: CitizenVerification
) -> None:
    client, service = soap
    for operation in ("XacThucThongTinCongDan", "TraCuuThongTinCongDan"):
        envelope = client.create_message(service, operation, **to_request(who, CALLER, m))
        payload = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
        assert etree.QName(payload).localname == operation
        assert schema.validate(payload), schema.error_log


def test_request_name_is_composed_and_single_spaced(m: Mapping) -> None:
    decomposed = unicodedata.normalize("NFD", "  Nguyễn   Văn\tAn ")
    who = CitizenVerification(identity_number="001090012345", name=decomposed,
                              birth_date=date(1990, 1, 15))
    assert to_request(who, CALLER, m)["HoVaTen"] == "Nguyễn Văn An"


def test_request_with_date_and_agreeing_year_sends_the_date(m: Mapping) -> None:
    who = CitizenVerification(identity_number="001090012345", name="A B",
                              birth_date=date(1990, 1, 15), birth_year=1990)
    assert to_request(who, CALLER, m)["NgayThangNamSinh"] == {"NgayThangNam": "19900115"}


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"birth_date": None, "birth_year": None}, "birth_date", "neither birth_date"),
        ({"birth_year": 1991}, "birth_year", "not the year of birth_date"),
        ({"birth_date": None, "birth_year": 1700}, "birth_year", "out of range"),
        ({"birth_date": date(2999, 1, 1)}, "birth_date", "out of range"),
        ({"name": "   "}, "name", "is empty"),
        ({"name": "A" * 201}, "name", "limit is 200"),
        ({"identity_number": "00109001234"}, "identity_number", "not an identity number"),
        ({"identity_number": "0010900123456"}, "identity_number", "not an identity number"),
    ],
)
def test_bad_canonical_data_names_the_field(
    m: Mapping, changes: dict[str, Any], field: str, fragment: str
) -> None:
    base: dict[str, Any] = {"identity_number": "001090012345", "name": "Nguyễn Văn An",
                            "birth_date": date(1990, 1, 15), "birth_year": None}
    # model_construct: the data a buggy producer could send past the model's own checks.
    who = CitizenVerification.model_construct(**{**base, **changes})
    with pytest.raises(InvalidMessage) as info:
        to_request(who, CALLER, m)
    assert info.value.field == field
    assert fragment in info.value.message
    # A wrong identity number may still be someone's: it is masked in the message.
    assert "00109001234" not in info.value.message


def test_caller_codes_are_checked(m: Mapping) -> None:
    who = CitizenVerification(identity_number="001090012345", name="A B", birth_year=1990)
    with pytest.raises(InvalidMessage) as info:
        to_request(who, Caller("r", "", "LT", "CB"), m)
    assert info.value.field == "service_code"
    with pytest.raises(InvalidMessage) as info:
        to_request(who, Caller("r", "s", "LT", "C" * 101), m)
    assert info.value.field == "officer"


# --- replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exists", [True, False])
def test_exists_round_trip(m: Mapping, exists: bool) -> None:
    reply = exists_to_reply(exists, CALLER.request_id, m)
    assert exists_from_reply(reply, CALLER.request_id, m) is exists


def test_exists_reply_without_the_boolean_is_malformed(m: Mapping) -> None:
    with pytest.raises(RetryableError) as info:
        exists_from_reply({"MaYeuCau": CALLER.request_id, "TonTai": None}, CALLER.request_id, m)
    assert info.value.code == "system.malformed_reply"
    assert info.value.field == "TonTai"
    assert info.value.origin == "system:population"


def test_reply_to_another_request_is_refused(m: Mapping) -> None:
    with pytest.raises(RetryableError) as info:
        exists_from_reply({"MaYeuCau": "other", "TonTai": True}, CALLER.request_id, m)
    assert info.value.field == "MaYeuCau"
    with pytest.raises(RetryableError):
        exists_from_reply(None, CALLER.request_id, m)


@pytest.mark.parametrize(
    "record",
    [
        full_record(),
        full_record(birth_date=None, birth_year=1948, old_identity_number=None, hometown=None,
                    permanent_address=None, current_address=None, father=None, mother=None,
                    spouse=None, ethnicity_code=None, ethnicity=None, nationality=None,
                    name=PersonName(family="PHẠM", given="HÙNG")),
    ],
    ids=["complete", "minimal-year-only"],
)
def test_record_round_trip(m: Mapping, record: CitizenRecord) -> None:
    assert citizen_to_record(record_to_citizen(record, m), m) == record
    reply = record_to_reply(record, CALLER.request_id, m)
    assert record_from_reply(reply, CALLER.request_id, m) == record


def test_record_reply_is_valid_against_the_xsd(
    m: Mapping, soap: tuple[Any, Any], schema: etree.XMLSchema
) -> None:
    client, _ = soap
    element = client.get_element(f"{{{NS}}}TraCuuThongTinCongDanResponse")
    reply = record_to_reply(full_record(), CALLER.request_id, m)
    node = etree.Element("wrapper")
    element.render(node, element(**reply))
    assert schema.validate(node[0]), schema.error_log


def test_no_citizen_is_none(m: Mapping) -> None:
    reply = record_to_reply(None, CALLER.request_id, m)
    assert reply == {"MaYeuCau": CALLER.request_id}
    assert record_from_reply(reply, CALLER.request_id, m) is None


@pytest.mark.parametrize("code", ["0", "1", "2"])
def test_every_gender_code_round_trips(m: Mapping, code: str) -> None:
    citizen = record_to_citizen(full_record(), m)
    citizen["GioiTinh"] = code
    record = citizen_to_record(citizen, m)
    assert record.gender.value == m.genders[code]
    assert record_to_citizen(record, m)["GioiTinh"] == code


def test_unknown_gender_code_is_a_mapping_failure(m: Mapping) -> None:
    citizen = record_to_citizen(full_record(), m)
    citizen["GioiTinh"] = "9"
    with pytest.raises(InvalidMessage) as info:
        citizen_to_record(citizen, m)
    assert info.value.code == "client.mapping_failed"
    assert info.value.field == "mapping.toml [gender]"
    assert "'9'" in info.value.message


def test_ethnicity_is_decoded_and_an_unknown_code_kept(m: Mapping) -> None:
    citizen = record_to_citizen(full_record(), m)
    citizen["DanToc"] = "06"
    assert citizen_to_record(citizen, m).ethnicity == "Mường"
    citizen["DanToc"] = "99"
    record = citizen_to_record(citizen, m)
    assert (record.ethnicity_code, record.ethnicity) == ("99", None)
    assert len(m.ethnicities) == 54


@pytest.mark.parametrize(
    ("mutate", "element"),
    [
        (lambda c: c.update(NgayThangNamSinh={"NgayThangNam": "1990-01-15"}), "NgayThangNam"),
        (lambda c: c.update(NgayThangNamSinh={}), "NgayThangNamSinh"),
        (lambda c: c.update(NgayThangNamSinh=None), "NgayThangNamSinh"),
        (lambda c: c.update(HoVaTen=None), "HoVaTen"),
        (lambda c: c.update(GioiTinh=None), "GioiTinh"),
        (lambda c: c.update(SoDinhDanh="00109001234"), "SoDinhDanh"),
        (lambda c: c["ThuongTru"].update(MaTinhThanh="Hà Nội"), "ThuongTru"),
    ],
    ids=["date-format", "no-birth", "birth-absent", "no-name", "no-gender", "short-id",
         "address-code"],
)
def test_malformed_citizen_names_the_element(m: Mapping, mutate: Any, element: str) -> None:
    citizen = record_to_citizen(full_record(), m)
    mutate(citizen)
    with pytest.raises(RetryableError) as info:
        citizen_to_record(citizen, m)
    assert info.value.code == "system.malformed_reply"
    assert info.value.field == element
    assert "00109001234" not in info.value.message


# --- mapping, faults, configuration ----------------------------------------------------------


def test_every_mapped_element_exists_in_the_xsd(m: Mapping) -> None:
    doc = etree.parse(str(SCHEMAS / "dancu.xsd"))
    declared = {e.get("name") for e in doc.iter("{http://www.w3.org/2001/XMLSchema}element")}
    assert element_names(m) - declared == set()


def _raw_mapping() -> dict[str, Any]:
    with (MAPPINGS / "mapping.toml").open("rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["request"].pop("name"), "mapping.toml [request].name"),
        (lambda r: r["request"].update(nome="X"), "mapping.toml [request]"),
        (lambda r: r["citizen"].update(gender="Gioi Tinh"), "mapping.toml [citizen].gender"),
        (lambda r: r["gender"].update({"3": "other"}), "mapping.toml [gender].3"),
        (lambda r: r.pop("dates"), "mapping.toml [dates]"),
        (lambda r: r["dates"].update(birth_date=""), "mapping.toml [dates].birth_date"),
    ],
    ids=["missing", "unknown", "not-an-element", "bad-gender", "no-dates", "empty-format"],
)
def test_mapping_errors_name_the_key(mutate: Any, field: str) -> None:
    raw = _raw_mapping()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_mapping(raw)
    assert info.value.field == field


def test_missing_mapping_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path)


def _detail(code: str, text: str = "lỗi") -> etree._Element:
    return etree.fromstring(
        f'<detail><Loi xmlns="{NS}"><MaLoi>{code}</MaLoi><MoTaLoi>{text}</MoTaLoi></Loi></detail>'
    )


@pytest.mark.parametrize(
    ("faultcode", "code", "cls", "hub_code"),
    [
        ("soap:Client", "DC001", PermanentError, "system.rejected"),
        ("soap:Client", "DC002", PermanentError, "system.unauthorized"),
        ("soap:Server", "DC003", RetryableError, "system.busy"),
        ("soap:Server", "DC004", RetryableError, "system.unavailable"),
        ("soap:Client", "DC005", PermanentError, "system.rejected"),
        ("soap:Client", "DC999", PermanentError, "system.rejected"),
        ("soap:Server", "DC999", RetryableError, "system.unavailable"),
        ("soap:Client.Auth", None, PermanentError, "system.rejected"),
        ("soap:VersionMismatch", None, RetryableError, "system.fault"),
        (None, None, RetryableError, "system.fault"),
    ],
)
def test_fault_table(
    faultcode: str | None, code: str | None, cls: type[Exception], hub_code: str
) -> None:
    table = load_faults(MAPPINGS)
    error = table.for_fault(faultcode, _detail(code) if code else None, "fault string")
    assert type(error) is cls
    assert error.code == hub_code
    assert error.origin == "system:population"
    assert (code or faultcode or "?") in error.message


def test_fault_text_is_scrubbed() -> None:
    table = load_faults(MAPPINGS)
    error = table.for_fault("soap:Client", _detail("DC005", "cán bộ tra 001090012345"), None)
    assert "001090012345" not in error.message
    assert "0010******45" in error.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"codes": {"X": {"kind": "sometimes", "code": "system.x"}}}, "faults.toml [codes.X].kind"),
        ({"codes": {"X": {"kind": "permanent", "code": "rejected"}}}, "faults.toml [codes.X].code"),
        ({"codes": {"X": {"kind": "permanent", "code": "system.x", "oops": 1}}},
         "faults.toml [codes.X]"),
        ({"faultcode": {}}, "faults.toml [faultcode]"),
    ],
)
def test_fault_table_errors_name_the_key(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_faults(raw)
    assert info.value.field == field


def _raw_config() -> dict[str, Any]:
    with (MAPPINGS / "config.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_config_reads_the_file_and_the_environment() -> None:
    config = PopulationConfig.from_mapping(_raw_config(), environ={})
    assert config.url == "http://127.0.0.1:8503/DanCuService"
    assert config.lookup is False
    assert config.username is None
    env = {"LIENTHONG_POPULATION_URL": "https://dancu.example/DanCuService",
           "LIENTHONG_POPULATION_USERNAME": "hub", "LIENTHONG_POPULATION_PASSWORD": "pw"}
    config = PopulationConfig.from_mapping(_raw_config(), environ=env)
    assert config.url == "https://dancu.example/DanCuService"
    assert (config.username, config.password) == ("hub", "pw")


@pytest.mark.parametrize(
    ("changes", "env", "field"),
    [
        ({"colour": "blue"}, {}, "colour"),
        ({"url": "ftp://x"}, {}, "url"),
        ({"lookup": "yes"}, {}, "lookup"),
        ({"officer": ""}, {}, "officer"),
        ({"max_connections": 0}, {}, "max_connections"),
        ({}, {"LIENTHONG_POPULATION_USERNAME": "hub"}, "auth"),
        ({"policy": {"timeout": 1.0, "retries": 3}}, {}, "policy.retries"),
    ],
)
def test_config_errors_name_the_key(
    changes: dict[str, Any], env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        PopulationConfig.from_mapping({**_raw_config(), **changes}, environ=env)
    assert info.value.field == field


# --- models and masking ----------------------------------------------------------------------


def test_record_refuses_a_year_that_contradicts_the_date() -> None:
    with pytest.raises(ValueError, match="differs from the year"):
        full_record(birth_year=1991)


def test_verified_event_body_serialises_minimal() -> None:
    body = CitizenVerified(dossier_code="000.00.00.H56-250101-0001",
                           identity_number="001090012345", matched=True,
                           checked_at="2025-07-01T08:00:00")  # type: ignore[arg-type]
    data = body.model_dump(mode="json", exclude_none=True)
    assert set(data) == {"dossier_code", "identity_number", "matched", "checked_at"}
    assert data["checked_at"].endswith("+07:00")
    assert CitizenVerified.model_validate(data) == body


@pytest.mark.parametrize(
    ("value", "masked"),
    [("001090012345", "0010******45"), ("172345678", "1723***78"), ("12", "**"), (None, "-")],
)
def test_mask_identity(value: str | None, masked: str) -> None:
    assert mask_identity(value) == masked


def test_initials_and_scrub() -> None:
    assert initials("Nguyễn Văn An") == "N.V.A."
    assert initials("Đặng  thị   ánh") == "Đ.T.A."
    assert initials("") == "-"
    text = "ids 001090012345 and 172345678, year 1990, counter 0001, long 12345678901234"
    assert scrub(text) == ("ids 0010******45 and 1723***78, year 1990, counter 0001, "
                           "long 1234********34")
