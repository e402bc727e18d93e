"""The WSDL and XSD: valid, complete, served with the right addresses, errors located."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zeep
from lxml import etree

from hub.api.soap.contract import NS, XSD_NAME, Contract
from hub.api.soap.dispatch import OPERATIONS, ActionMismatch, UnknownOperation, dispatch
from hub.errors import ConfigError, ValidationError
from hub.settings import Settings

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BINDING = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_BINDING = "http://schemas.xmlsoap.org/wsdl/soap12/"
XS = "http://www.w3.org/2001/XMLSchema"
NSMAP = {"w": WSDL, "s11": SOAP11_BINDING, "s12": SOAP12_BINDING, "xs": XS}
STATUS = (f'<ReportStatus xmlns="{NS}" Id="r"><createdAt>2025-01-01T10:00:00+07:00</createdAt>'
          "<statusChange><dossierCode>"
          "000.00.00.H56-250101-0001</dossierCode><status>{status}</status>"
          "<at>2025-01-01T10:00:00</at></statusChange></ReportStatus>")


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(Settings().schemas_dir / "soap")


def test_zeep_reads_the_contract_from_disk(contract: Contract) -> None:
    client = zeep.Client(str(contract.wsdl_path))  # type: ignore[no-untyped-call]
    service = client.wsdl.services["IntakeService"]
    assert set(service.ports) == {"IntakeSoap11", "IntakeSoap12"}
    for port in service.ports.values():
        names = set(port.binding._operations)
        assert names == {op.name for op in OPERATIONS}
        for op in OPERATIONS:
            binding_op = port.binding._operations[op.name]
            assert binding_op.soapaction == op.action
            assert binding_op.input.body.qname == op.request_tag
            assert binding_op.output.body.qname == op.response_tag
    assert type(service.ports["IntakeSoap11"].binding).__name__ == "Soap11Binding"
    assert type(service.ports["IntakeSoap12"].binding).__name__ == "Soap12Binding"


def test_wsdl_is_document_literal(contract: Contract) -> None:
    doc = etree.parse(str(contract.wsdl_path))
    for prefix in ("s11", "s12"):
        assert doc.xpath(f"//{prefix}:binding/@style", namespaces=NSMAP) == ["document"]
        uses = doc.xpath(f"//{prefix}:body/@use | //{prefix}:fault/@use", namespaces=NSMAP)
        assert uses and set(uses) == {"literal"}
        faults = doc.xpath(f"//{prefix}:fault/@name", namespaces=NSMAP)
        assert faults == ["HubFault"] * len(OPERATIONS)


def test_served_wsdl_points_at_its_own_address(contract: Contract) -> None:
    address = "https://hub.example.vn:8443/prefix/soap/v1"
    doc = etree.fromstring(contract.wsdl(address))
    locations = doc.xpath("//s11:address/@location | //s12:address/@location", namespaces=NSMAP)
    assert locations == [address, address]
    imports = doc.xpath("//w:types//xs:import/@schemaLocation", namespaces=NSMAP)
    assert imports == [f"{address}?xsd={XSD_NAME}"]
    # The file on disk keeps its relative import, for tools reading it offline.
    assert b'schemaLocation="intake.xsd"' in contract.wsdl_path.read_bytes()


def test_the_address_is_escaped(contract: Contract) -> None:
    doc = etree.fromstring(contract.wsdl('http://h/soap/v1"><evil a="'))
    assert doc.xpath("//s11:address/@location", namespaces=NSMAP) == [
        'http://h/soap/v1"><evil a="']


def test_valid_and_invalid_requests(contract: Contract) -> None:
    contract.validate(etree.fromstring(STATUS.format(status=4).encode()))
    with pytest.raises(ValidationError) as info:
        contract.validate(etree.fromstring(STATUS.format(status=11).encode()))
    error = info.value
    assert error.code == "client.schema_invalid"
    assert error.field == "statusChange/status"
    assert "'11'" in error.message and "{" not in error.message


def test_error_paths_with_prefixes_and_repeated_elements(contract: Contract) -> None:
    xml = (f'<x:SubmitDossier xmlns:x="{NS}"><x:createdAt>2025-01-01T10:00:00Z</x:createdAt>'
           "<x:dossier><x:code>000.00.00.H56-250101-0001"
           "</x:code><x:procedureCode>2.002492</x:procedureCode><x:agencyCode>000.00.00.H56"
           "</x:agencyCode><x:applicant><x:identityNumber>038090001234</x:identityNumber>"
           "<x:name>A</x:name></x:applicant><x:channel>1</x:channel><x:attachments>"
           "<x:attachment><x:id>a</x:id><x:name>n</x:name><x:url>https://f/a</x:url>"
           f"<x:size>1</x:size><x:sha256>{'a' * 64}</x:sha256></x:attachment><x:attachment>"
           "<x:id>b</x:id><x:name>n</x:name><x:url>https://f/b</x:url><x:size>1</x:size>"
           "<x:sha256>NOT-HEX</x:sha256></x:attachment></x:attachments></x:dossier>"
           "</x:SubmitDossier>")
    with pytest.raises(ValidationError) as info:
        contract.validate(etree.fromstring(xml.encode()))
    assert info.value.field == "dossier/attachments/attachment[2]/sha256"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("<dossierCode>", "<bogus/><dossierCode>"), "statusChange/bogus"),
        (("<at>2025-01-01T10:00:00</at>", ""), "statusChange"),
        (('Id="r"', 'Id="1-not-an-ncname"'), None),
        (("000.00.00.H56-250101-0001", "H56-1"), "statusChange/dossierCode"),
    ],
)
def test_what_the_xsd_refuses(contract: Contract, change: tuple[str, str],
                              field: str | None) -> None:
    xml = STATUS.format(status=4).replace(*change)
    with pytest.raises(ValidationError) as info:
        contract.validate(etree.fromstring(xml.encode()))
    assert info.value.field == field


@pytest.mark.parametrize("created", [
    "2025-01-01T10:00:00Z", "2025-01-01T10:00:00+07:00", "2025-01-01T10:00:00.123456789-03:30",
    " 2025-01-01T10:00:00Z ", "2025-12-31T24:00:00Z"])
def test_created_at_with_a_time_zone(contract: Contract, created: str) -> None:
    contract.validate(etree.fromstring(STATUS.format(status=4).replace(
        "2025-01-01T10:00:00+07:00", created).encode()))


@pytest.mark.parametrize(("created", "problem"), [
    ("2025-01-01T10:00:00", "[0-9]{2}:[0-9]{2}"),  # no time zone: the pattern, quoted whole
    ("2025-01-01", "not a valid value"),
    ("1735725600", "not a valid value"),
    ("2025-01-01T10:00:00+15:00", "not a valid value"),
])
def test_created_at_without_a_time_zone_is_refused(contract: Contract, created: str,
                                                   problem: str) -> None:
    xml = STATUS.format(status=4).replace("2025-01-01T10:00:00+07:00", created)
    with pytest.raises(ValidationError) as info:
        contract.validate(etree.fromstring(xml.encode()))
    assert info.value.field == "createdAt"
    assert problem in info.value.message


def test_every_request_requires_created_at(contract: Contract) -> None:
    xsd = etree.parse(str(contract.xsd_path))
    for op in OPERATIONS:
        element = xsd.find(f"{{{XS}}}element[@name='{op.name}']")
        assert element is not None
        names = [(e.get("name"), e.get("minOccurs", "1"))
                 for e in element.iter(f"{{{XS}}}element") if e is not element]
        assert names == [("idempotencyKey", "0"), ("createdAt", "1"), (op.data, "1")]
    with pytest.raises(ValidationError) as info:
        contract.validate(etree.fromstring(STATUS.format(status=4).replace(
            "<createdAt>2025-01-01T10:00:00+07:00</createdAt>", "").encode()))
    assert "createdAt" in info.value.message


def test_identity_numbers(contract: Contract) -> None:
    def submit(identity: str) -> etree._Element:
        return etree.fromstring(
            (f'<SubmitDossier xmlns="{NS}"><createdAt>2025-01-01T10:00:00Z</createdAt>'
             "<dossier><code>000.00.00.H56-250101-0001</code>"
             "<procedureCode>2.002492</procedureCode><agencyCode>000.00.00.H56</agencyCode>"
             f"<applicant><identityNumber>{identity}</identityNumber><name>A</name></applicant>"
             "<channel>1</channel></dossier></SubmitDossier>").encode())

    contract.validate(submit("038090001234"))
    contract.validate(submit("123456789"))  # an old ID card
    for bad in ("03809000123", "0380900012345", "٠٣٨٠٩٠٠٠١٢٣٤", "03809000123x"):
        with pytest.raises(ValidationError):
            contract.validate(submit(bad))


def test_threads_validate_with_their_own_schema(contract: Contract) -> None:
    good = etree.fromstring(STATUS.format(status=4).encode())
    bad = STATUS.format(status=11).encode()
    errors: list[str | None] = []

    def work() -> None:
        for _ in range(200):
            contract.validate(good)
            try:
                contract.validate(etree.fromstring(bad))
            except ValidationError as exc:
                errors.append(exc.field)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["statusChange/status"] * 800


def test_dispatch() -> None:
    payload = etree.fromstring(STATUS.format(status=4).encode())
    assert dispatch(payload, None).name == "ReportStatus"
    assert dispatch(payload, f"{NS}:ReportStatus").name == "ReportStatus"
    with pytest.raises(ActionMismatch) as info:
        dispatch(payload, f"{NS}:SubmitDossier", "Content-Type")
    assert info.value.field == "Content-Type" and "SubmitDossier" in info.value.message
    with pytest.raises(UnknownOperation) as unknown:
        dispatch(etree.fromstring(f'<DeleteDossier xmlns="{NS}"/>'.encode()), None)
    assert "SubmitDossier" in unknown.value.message
    with pytest.raises(UnknownOperation) as wrong_ns:
        dispatch(etree.fromstring(b'<ReportStatus xmlns="urn:other"/>'), None)
    assert "urn:other" in wrong_ns.value.message


def test_a_missing_contract_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Contract(tmp_path)
