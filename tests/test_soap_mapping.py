"""Request elements become the canonical model's dicts; the model's field names map back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from lxml import etree
from pydantic import BaseModel

from hub.api.soap.contract import NS, Contract
from hub.api.soap.dispatch import OPERATIONS
from hub.api.soap.mapping import (
    APPLICANT,
    ATTACHMENT,
    DOSSIER,
    FEE,
    PROGRESS_STEP,
    STATUS_CHANGE,
    Shape,
    created_at,
)
from hub.errors import ValidationError
from hub.model import (
    VN_TZ,
    ApplicantKind,
    Channel,
    Dossier,
    ProgressStep,
    Status,
    StatusChange,
    parse_event_data,
)
from hub.settings import Settings

FULL_DOSSIER = f"""<lt:SubmitDossier xmlns:lt="{NS}"><lt:idempotencyKey>k-1</lt:idempotencyKey>
<lt:createdAt>2025-01-01T08:10:00.250+07:00</lt:createdAt>
<lt:dossier>
  <lt:code>000.00.00.H56-250101-0001</lt:code>
  <lt:procedureCode>2.002492</lt:procedureCode>
  <lt:procedureName>Cấp giấy phép xây dựng</lt:procedureName>
  <lt:fieldCode>XD</lt:fieldCode>
  <lt:fieldName>Xây dựng</lt:fieldName>
  <lt:agencyCode>000.00.00.H56</lt:agencyCode>
  <lt:applicant>
    <lt:identityNumber>038090001234</lt:identityNumber>
    <lt:name>Nguyễn Văn An</lt:name>
    <lt:birthDate>1990-05-01</lt:birthDate>
    <lt:kind>2</lt:kind>
    <lt:address>Thanh Hóa</lt:address>
    <lt:phone>0912345678</lt:phone>
    <lt:email>an@example.vn</lt:email>
  </lt:applicant>
  <lt:channel>3</lt:channel>
  <lt:status>2</lt:status>
  <lt:submittedAt>2025-01-01T08:00:00</lt:submittedAt>
  <lt:receivedAt>2025-01-01T08:05:00+07:00</lt:receivedAt>
  <lt:dueAt>2025-01-15T10:00:00Z</lt:dueAt>
  <lt:resultByPost> true </lt:resultByPost>
  <lt:handlingUnit>Bộ phận một cửa</lt:handlingUnit>
  <lt:note></lt:note>
  <lt:attachments>
    <lt:attachment><lt:id>a1</lt:id><lt:name>don.pdf</lt:name>
      <lt:url>https://files.example.vn/a1</lt:url><lt:size>1234</lt:size>
      <lt:sha256>{"ab" * 32}</lt:sha256><lt:componentCode>TP1</lt:componentCode>
      <lt:digitized>1</lt:digitized></lt:attachment>
    <lt:attachment><lt:id>a2</lt:id><lt:name>cccd.pdf</lt:name>
      <lt:url>http://files.example.vn/a2</lt:url><lt:size>0</lt:size>
      <lt:sha256>{"cd" * 32}</lt:sha256></lt:attachment>
  </lt:attachments>
  <lt:fees><lt:fee><lt:code>LP1</lt:code><lt:name>Lệ phí</lt:name>
    <lt:amount>75000.50</lt:amount><lt:kind>2</lt:kind><lt:method>1</lt:method></lt:fee></lt:fees>
  <lt:paidOnline>false</lt:paidOnline>
</lt:dossier></lt:SubmitDossier>"""


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(Settings().schemas_dir / "soap")


def _data(xml: str, tag: str) -> etree._Element:
    element = etree.fromstring(xml.encode()).find(f"{{{NS}}}{tag}")
    assert element is not None
    return element


def test_a_full_dossier_reads_into_the_canonical_model(contract: Contract) -> None:
    contract.validate(etree.fromstring(FULL_DOSSIER.encode()))
    data = DOSSIER.read(_data(FULL_DOSSIER, "dossier"))
    assert data["applicant"]["identity_number"] == "038090001234"
    assert data["channel"] == 3 and data["result_by_post"] is True
    assert data["attachments"][0]["size"] == 1234 and data["attachments"][0]["digitized"] is True
    assert data["fees"][0]["amount"] == "75000.50"  # every digit, no float
    model = parse_event_data("vn.gov.dossier.submitted", data)
    assert isinstance(model, Dossier)
    assert model.channel is Channel.POSTAL and model.status is Status.RECEIVED
    assert model.applicant.kind is ApplicantKind.BUSINESS
    assert model.applicant.birth_date == date(1990, 5, 1)
    assert model.submitted_at is not None and model.submitted_at.tzinfo == VN_TZ
    assert model.due_at is not None and model.due_at.utcoffset() is not None
    assert model.note == ""
    assert [a.id for a in model.attachments] == ["a1", "a2"]
    assert model.fees[0].amount == Decimal("75000.50") and model.fees[0].method == 1
    # The signing time is the request's, not the dossier's: read beside it, never into it.
    assert "created_at" not in data
    assert created_at(etree.fromstring(FULL_DOSSIER.encode())) == datetime(
        2025, 1, 1, 1, 10, 0, 250000, tzinfo=UTC)


def test_a_minimal_dossier_leaves_optional_fields_out() -> None:
    xml = (f'<lt:SubmitDossier xmlns:lt="{NS}"><lt:dossier><lt:code>000.00.00.H56-250101-0002'
           "</lt:code><lt:procedureCode>2.002492</lt:procedureCode><lt:agencyCode>000.00.00.H56"
           "</lt:agencyCode><lt:applicant><lt:identityNumber>123456789</lt:identityNumber>"
           "<lt:name>A</lt:name></lt:applicant><lt:channel>1</lt:channel></lt:dossier>"
           "</lt:SubmitDossier>")
    data = DOSSIER.read(_data(xml, "dossier"))
    assert data == {
        "code": "000.00.00.H56-250101-0002", "procedure_code": "2.002492",
        "agency_code": "000.00.00.H56", "applicant": {"identity_number": "123456789",
                                                       "name": "A"}, "channel": 1,
    }
    assert isinstance(parse_event_data("vn.gov.dossier.submitted", data), Dossier)


def test_status_change_and_progress_read(contract: Contract) -> None:
    status = (f'<lt:ReportStatus xmlns:lt="{NS}"><lt:createdAt>2025-01-02T02:00:00Z'
              "</lt:createdAt><lt:statusChange><lt:dossierCode>"
              "000.00.00.H56-250101-0001</lt:dossierCode><lt:status>4</lt:status>"
              "<lt:previousStatus>2</lt:previousStatus><lt:at>2025-01-02T09:00:00</lt:at>"
              "<lt:officer>Trần B</lt:officer><lt:note>ok</lt:note></lt:statusChange>"
              "</lt:ReportStatus>")
    contract.validate(etree.fromstring(status.encode()))
    change = parse_event_data("vn.gov.dossier.status-changed",
                              STATUS_CHANGE.read(_data(status, "statusChange")))
    assert isinstance(change, StatusChange)
    assert change.status is Status.PROCESSING and change.previous_status is Status.RECEIVED
    progress = (f'<lt:ReportProgress xmlns:lt="{NS}"><lt:createdAt>2025-01-02T02:00:00Z'
                "</lt:createdAt><lt:progress><lt:dossierCode>"
                "000.00.00.H56-250101-0001</lt:dossierCode><lt:officer>Trần B</lt:officer>"
                "<lt:officerTitle>Chuyên viên</lt:officerTitle><lt:department>Phòng QLĐT"
                "</lt:department><lt:content>Thẩm định</lt:content><lt:status>4</lt:status>"
                "<lt:at>2025-01-02T09:00:00</lt:at><lt:startedAt>2025-01-02T08:00:00"
                "</lt:startedAt><lt:dueAt>2025-01-05T17:00:00</lt:dueAt></lt:progress>"
                "</lt:ReportProgress>")
    contract.validate(etree.fromstring(progress.encode()))
    step = parse_event_data("vn.gov.dossier.progress-reported",
                            PROGRESS_STEP.read(_data(progress, "progress")))
    assert isinstance(step, ProgressStep)
    assert step.department == "Phòng QLĐT" and step.started_at is not None


def _created(text: str) -> etree._Element:
    return etree.fromstring(f'<lt:ReportStatus xmlns:lt="{NS}"><lt:createdAt>{text}'
                            "</lt:createdAt></lt:ReportStatus>".encode())


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-03-01T08:00:00Z", datetime(2025, 3, 1, 8, tzinfo=UTC)),
    (" 2025-03-01T15:00:00+07:00\n", datetime(2025, 3, 1, 15, tzinfo=timezone(timedelta(
        hours=7)))),
    ("2025-03-01T08:00:00.1234567-00:00", datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)),
    ("2025-02-28T24:00:00+07:00", datetime(2025, 3, 1, tzinfo=timezone(timedelta(hours=7)))),
    ("2025-02-28T24:00:00.000Z", datetime(2025, 3, 1, tzinfo=UTC)),
])
def test_created_at_reads_as_an_aware_time(text: str, expected: datetime) -> None:
    value = created_at(_created(text))
    assert value == expected and value.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["12025-03-01T08:00:00Z", "9999-12-31T24:00:00Z", ""])
def test_created_at_beyond_what_a_datetime_holds(text: str) -> None:
    # Valid xs:dateTime values Python cannot hold are refused, naming the element.
    with pytest.raises(ValidationError) as info:
        created_at(_created(text))
    assert info.value.field == "createdAt" and "time zone" in info.value.message


def test_every_element_of_the_xsd_is_mapped(contract: Contract) -> None:
    """The table and the XSD list the same child elements for each complex type."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    doc = etree.parse(str(contract.xsd_path)).getroot()
    shapes = {"Dossier": DOSSIER, "StatusChange": STATUS_CHANGE, "ProgressStep": PROGRESS_STEP,
              "Applicant": APPLICANT, "Attachment": ATTACHMENT, "Fee": FEE}
    for name, shape in shapes.items():
        ctype = doc.find(f"{xs}complexType[@name='{name}']")
        assert ctype is not None, name
        in_xsd = [e.get("name") for e in ctype.iter(f"{xs}element")]
        assert in_xsd == [f.xml for f in shape.fields], name


def test_every_canonical_field_is_mapped() -> None:
    models: dict[Shape, type[BaseModel]] = {
        DOSSIER: Dossier, STATUS_CHANGE: StatusChange, PROGRESS_STEP: ProgressStep}
    for shape, model in models.items():
        assert [f.name for f in shape.fields] == list(model.model_fields), model


@pytest.mark.parametrize(
    ("dotted", "xml"),
    [
        ("code", "code"),
        ("applicant.identity_number", "applicant/identityNumber"),
        ("attachments.0.sha256", "attachments/attachment[1]/sha256"),
        ("fees.2.amount", "fees/fee[3]/amount"),
        ("applicant.unknown.deeper", "applicant/unknown/deeper"),
        ("attachments", "attachments"),
    ],
)
def test_xml_path(dotted: str, xml: str) -> None:
    assert DOSSIER.xml_path(dotted) == xml


def test_xml_path_of_names_outside_the_model() -> None:
    assert DOSSIER.xml_path("type") is None
    assert STATUS_CHANGE.xml_path("agency_code") is None
    assert STATUS_CHANGE.xml_path("dossier_code") == "dossierCode"


def test_operations_map_to_their_event_types() -> None:
    assert {op.name: op.event_type for op in OPERATIONS} == {
        "SubmitDossier": "vn.gov.dossier.submitted",
        "ReportStatus": "vn.gov.dossier.status-changed",
        "ReportProgress": "vn.gov.dossier.progress-reported",
    }


def _status_at(at: str) -> str:
    return (f'<lt:ReportStatus xmlns:lt="{NS}"><lt:createdAt>2025-01-02T02:00:00Z'
            "</lt:createdAt><lt:statusChange><lt:dossierCode>000.00.00.H56-250101-0001"
            f"</lt:dossierCode><lt:status>2</lt:status><lt:at>{at}</lt:at></lt:statusChange>"
            "</lt:ReportStatus>")


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-01-02T09:00:00", datetime(2025, 1, 2, 9, tzinfo=VN_TZ)),
    # .NET writes seven digits of fraction; the JSON contracts' DateTime takes six at most.
    ("2025-01-02T09:00:00.1234567+07:00",
     datetime(2025, 1, 2, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=7)))),
    ("2025-01-01T24:00:00Z", datetime(2025, 1, 2, tzinfo=UTC)),
    ("2025-01-02T02:00:00-00:00", datetime(2025, 1, 2, 2, tzinfo=UTC)),
])
def test_every_xs_datetime_the_xsd_takes_reaches_the_model(contract: Contract, text: str,
                                                           expected: datetime) -> None:
    """The model holds a time's text to the JSON contracts' form; SOAP's is xs:dateTime, read
    into a datetime before the model sees it."""
    xml = _status_at(text)
    contract.validate(etree.fromstring(xml.encode()))
    change = parse_event_data("vn.gov.dossier.status-changed",
                              STATUS_CHANGE.read(_data(xml, "statusChange")))
    assert isinstance(change, StatusChange)
    assert change.at == expected and change.at.utcoffset() == expected.utcoffset()


def test_an_xs_datetime_no_datetime_holds_is_refused_naming_the_element(
        contract: Contract) -> None:
    xml = _status_at("12025-01-02T09:00:00")
    contract.validate(etree.fromstring(xml.encode()))
    with pytest.raises(ValidationError) as info:
        parse_event_data("vn.gov.dossier.status-changed",
                         STATUS_CHANGE.read(_data(xml, "statusChange")))
    assert info.value.field == "at" and STATUS_CHANGE.xml_path("at") == "at"
