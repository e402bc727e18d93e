"""Faults in the form of each SOAP version, with the hub's error in the detail."""

from __future__ import annotations

import pytest
from lxml import etree

from hub.api.errors import BodyTooLarge, UnsupportedMediaType
from hub.api.soap.contract import NS, Contract
from hub.api.soap.envelope import SOAP11, SOAP12, MustUnderstand, SoapVersion, VersionMismatch
from hub.api.soap.faults import fault_envelope, http_status
from hub.errors import HubError, InvalidMessage, RetryableError, ValidationError
from hub.settings import Settings

S11 = {"s": SOAP11.namespace, "lt": NS}
S12 = {"s": SOAP12.namespace, "lt": NS}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(Settings().schemas_dir / "soap")


def _detail_is_valid(detail: etree._Element, contract: Contract) -> None:
    hub_fault = detail.find("lt:HubFault", namespaces=S11)
    assert hub_fault is not None
    copy = etree.fromstring(etree.tostring(hub_fault))
    assert contract.schema().validate(copy), contract.schema().error_log


def test_soap11_fault(contract: Contract) -> None:
    error = InvalidMessage("the signature does not verify", code="client.bad_signature",
                           field="Signature")
    root = etree.fromstring(fault_envelope(SOAP11, error))
    assert root.tag == SOAP11.tag("Envelope")
    fault = root.find("s:Body/s:Fault", namespaces=S11)
    assert fault is not None
    assert [c.tag for c in fault] == ["faultcode", "faultstring", "detail"]
    code = fault.findtext("faultcode")
    assert code is not None
    prefix, local = code.split(":")
    assert fault.nsmap[prefix] == SOAP11.namespace and local == "Client"
    reason = fault.find("faultstring")
    assert reason is not None and reason.get(XML_LANG) == "en"
    assert "client.bad_signature" in (reason.text or "")
    detail = fault.find("detail")
    assert detail is not None
    assert detail.findtext("lt:HubFault/lt:code", namespaces=S11) == "client.bad_signature"
    assert detail.findtext("lt:HubFault/lt:field", namespaces=S11) == "Signature"
    assert detail.findtext("lt:HubFault/lt:origin", namespaces=S11) == "hub"
    _detail_is_valid(detail, contract)
    assert http_status(SOAP11, error) == 500


def test_soap12_fault(contract: Contract) -> None:
    error = ValidationError("too long", field="dossier/applicant/name")
    root = etree.fromstring(fault_envelope(SOAP12, error))
    fault = root.find("s:Body/s:Fault", namespaces=S12)
    assert fault is not None
    assert [etree.QName(c).localname for c in fault] == ["Code", "Reason", "Detail"]
    value = fault.findtext("s:Code/s:Value", namespaces=S12)
    assert value is not None
    prefix, local = value.split(":")
    assert fault.nsmap[prefix] == SOAP12.namespace and local == "Sender"
    sub = fault.find("s:Code/s:Subcode/s:Value", namespaces=S12)
    assert sub is not None and sub.text is not None
    sub_prefix, sub_local = sub.text.split(":")
    assert sub.nsmap[sub_prefix] == NS and sub_local == "client.schema_invalid"
    text = fault.find("s:Reason/s:Text", namespaces=S12)
    assert text is not None and text.get(XML_LANG) == "en"
    detail = fault.find("s:Detail", namespaces=S12)
    assert detail is not None
    assert detail.findtext("lt:HubFault/lt:field", namespaces=S12) == "dossier/applicant/name"
    _detail_is_valid(detail, contract)
    assert http_status(SOAP12, error) == 400


@pytest.mark.parametrize("version", [SOAP11, SOAP12])
def test_hub_failures_are_receiver_faults(version: SoapVersion) -> None:
    error = RetryableError("the store is down", code="server.store_unavailable")
    root = etree.fromstring(fault_envelope(version, error))
    ns = {"s": version.namespace, "lt": NS}
    code = (root.findtext("s:Body/s:Fault/faultcode", namespaces=ns) if version is SOAP11
            else root.findtext("s:Body/s:Fault/s:Code/s:Value", namespaces=ns))
    assert code == f"soap:{version.receiver_code}"
    assert http_status(version, error) == 500
    assert root.find(".//lt:HubFault/lt:field", namespaces=ns) is None


def test_origin_of_a_system_behind_the_hub_is_kept() -> None:
    error = HubError("portal refused", code="server.permanent_failure", origin="system:npsp")
    root = etree.fromstring(fault_envelope(SOAP11, error))
    assert root.findtext(".//lt:origin", namespaces=S11) == "system:npsp"


def test_version_mismatch_fault() -> None:
    error = VersionMismatch("wrong namespace", field="Envelope")
    r11 = etree.fromstring(fault_envelope(SOAP11, error))
    assert r11.findtext("s:Body/s:Fault/faultcode", namespaces=S11) == "soap:VersionMismatch"
    r12 = etree.fromstring(fault_envelope(SOAP12, error))
    assert r12.findtext("s:Body/s:Fault/s:Code/s:Value", namespaces=S12) == "soap:VersionMismatch"
    supported = r12.findall("s:Header/s:Upgrade/s:SupportedEnvelope", namespaces=S12)
    resolved = []
    for el in supported:
        prefix, local = el.get("qname", "").split(":")
        resolved.append(etree.QName(el.nsmap[prefix], local).text)
    assert resolved == [SOAP12.tag("Envelope"), SOAP11.tag("Envelope")]
    assert http_status(SOAP12, error) == 500  # not a Sender fault
    assert http_status(SOAP11, error) == 500


def test_must_understand_fault_names_the_blocks() -> None:
    error = MustUnderstand("not understood", blocks=["{urn:wsse}Security", "Plain"])
    r11 = etree.fromstring(fault_envelope(SOAP11, error))
    assert r11.findtext("s:Body/s:Fault/faultcode", namespaces=S11) == "soap:MustUnderstand"
    r12 = etree.fromstring(fault_envelope(SOAP12, error))
    names = []
    for el in r12.findall("s:Header/s:NotUnderstood", namespaces=S12):
        prefix, _, local = el.get("qname", "").rpartition(":")
        names.append(etree.QName(el.nsmap[prefix] if prefix else None, local).text)
    assert names == ["{urn:wsse}Security", "Plain"]
    assert http_status(SOAP12, error) == 500


def test_statuses_of_sender_faults() -> None:
    too_large = BodyTooLarge("too large")
    assert http_status(SOAP11, too_large) == 500
    assert http_status(SOAP12, too_large) == 400
    assert http_status(SOAP11, UnsupportedMediaType("not soap")) == 415


def test_messages_are_escaped() -> None:
    error = ValidationError("bad <value> & ]]> \"quoted\"", field="a<b")
    root = etree.fromstring(fault_envelope(SOAP11, error))
    assert root.findtext(".//lt:message", namespaces=S11) == "bad <value> & ]]> \"quoted\""
    assert root.findtext(".//lt:field", namespaces=S11) == "a<b"
