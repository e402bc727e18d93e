"""SOAP version negotiation and envelope checks."""

from __future__ import annotations

import pytest
from lxml import etree

from hub.api.errors import UnsupportedMediaType
from hub.api.soap.envelope import (
    SOAP11,
    SOAP11_NS,
    SOAP12,
    SOAP12_NS,
    EnvelopeInvalid,
    MustUnderstand,
    SoapVersion,
    VersionMismatch,
    negotiate,
    open_envelope,
    wrap,
)

REQUEST = '<lt:ReportStatus xmlns:lt="urn:lienthong:hub:v1"/>'


def _envelope(ns: str, body: str = REQUEST, header: str = "", after: str = "") -> etree._Element:
    text = (f'<s:Envelope xmlns:s="{ns}">{header}<s:Body>{body}</s:Body>{after}</s:Envelope>')
    return etree.fromstring(text.encode())


@pytest.mark.parametrize(
    ("content_type", "soap_action", "version", "action"),
    [
        ("text/xml", '"urn:a"', SOAP11, "urn:a"),
        ("text/xml; charset=utf-8", "urn:a", SOAP11, "urn:a"),
        ("TEXT/XML;charset=UTF-8", '""', SOAP11, None),
        ("text/xml", None, SOAP11, None),
        ("application/soap+xml", None, SOAP12, None),
        ('application/soap+xml; charset=utf-8; action="urn:b"', None, SOAP12, "urn:b"),
        ("application/soap+xml;action=urn:b;charset=utf-8", None, SOAP12, "urn:b"),
        ('application/soap+xml; ACTION="urn:b;c"', '"urn:ignored"', SOAP12, "urn:b;c"),
    ],
)
def test_negotiate(content_type: str, soap_action: str | None, version: SoapVersion,
                   action: str | None) -> None:
    announced = negotiate(content_type, soap_action)
    assert announced.version is version
    assert announced.action == action


@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain",
                                          "application/xml"])
def test_content_types_that_are_not_soap_are_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        negotiate(content_type, None)
    assert info.value.field == "Content-Type"
    assert "text/xml" in info.value.message and "application/soap+xml" in info.value.message


@pytest.mark.parametrize("version", [SOAP11, SOAP12])
def test_open_envelope_returns_the_request_element(version: SoapVersion) -> None:
    opened = open_envelope(_envelope(version.namespace, header="<s:Header/>"), version)
    assert opened.payload.tag == "{urn:lienthong:hub:v1}ReportStatus"
    assert opened.header is not None


def test_an_envelope_of_the_other_version_is_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatch) as info:
        open_envelope(_envelope(SOAP12_NS), SOAP11)
    assert "application/soap+xml" in info.value.message
    with pytest.raises(VersionMismatch):
        open_envelope(_envelope(SOAP11_NS), SOAP12)
    with pytest.raises(VersionMismatch) as info:
        open_envelope(_envelope("urn:not-soap"), SOAP11)
    assert SOAP11_NS in info.value.message


@pytest.mark.parametrize(
    "xml",
    [
        '<Request xmlns="urn:x"/>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"/>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Header/></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body/></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body>{REQUEST}{REQUEST}</s:Body></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body>text{REQUEST}</s:Body></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body>{REQUEST}</s:Body><x/></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}"><x/><s:Body>{REQUEST}</s:Body></s:Envelope>',
        f'<s:Envelope xmlns:s="{SOAP11_NS}">junk<s:Body>{REQUEST}</s:Body></s:Envelope>',
    ],
)
def test_malformed_envelopes_are_refused(xml: str) -> None:
    with pytest.raises(EnvelopeInvalid) as info:
        open_envelope(etree.fromstring(xml.encode()), SOAP11)
    assert info.value.code == "client.envelope_invalid"


def test_mandatory_header_blocks_for_the_hub_are_refused() -> None:
    header = ('<s:Header><w:Security xmlns:w="urn:wsse" s:mustUnderstand="1"/>'
              '<w:Other xmlns:w="urn:wsse" s:mustUnderstand="0"/></s:Header>')
    with pytest.raises(MustUnderstand) as info:
        open_envelope(_envelope(SOAP11_NS, header=header), SOAP11)
    assert info.value.blocks == ["{urn:wsse}Security"]
    assert info.value.code == "client.soap_must_understand"


def test_mandatory_blocks_for_other_roles_pass() -> None:
    soap11 = ('<s:Header><w:A xmlns:w="urn:w" s:mustUnderstand="1" '
              's:actor="urn:some-other-node"/></s:Header>')
    assert open_envelope(_envelope(SOAP11_NS, header=soap11), SOAP11).header is not None
    soap12 = ('<s:Header><w:A xmlns:w="urn:w" s:mustUnderstand="true" '
              's:role="http://www.w3.org/2003/05/soap-envelope/role/none"/></s:Header>')
    assert open_envelope(_envelope(SOAP12_NS, header=soap12), SOAP12).header is not None


@pytest.mark.parametrize("role", ["", ' s:role="http://www.w3.org/2003/05/soap-envelope/role/next"',
                                  ' s:role="http://www.w3.org/2003/05/soap-envelope/role/'
                                  'ultimateReceiver"'])
def test_mandatory_soap12_blocks_addressed_to_the_hub_are_refused(role: str) -> None:
    header = f'<s:Header><w:A xmlns:w="urn:w" s:mustUnderstand="true"{role}/></s:Header>'
    with pytest.raises(MustUnderstand):
        open_envelope(_envelope(SOAP12_NS, header=header), SOAP12)


@pytest.mark.parametrize("version", [SOAP11, SOAP12])
def test_wrap_splices_the_element_bytes_unchanged(version: SoapVersion) -> None:
    payload = b'<lt:X xmlns:lt="urn:lienthong:hub:v1" Id="r"><lt:y>1</lt:y></lt:X>'
    body = wrap(version, payload)
    assert payload in body
    root = etree.fromstring(body)
    assert open_envelope(root, version).payload.get("Id") == "r"
    assert version.content_type.startswith(version.media_type)
