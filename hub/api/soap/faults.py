"""SOAP faults in each version's form, carrying the hub's error.

SOAP 1.1::

    <soap:Fault>
      <faultcode>soap:Client</faultcode>     (Client, Server, VersionMismatch, MustUnderstand)
      <faultstring xml:lang="en">...</faultstring>
      <detail><lt:HubFault>code, message, field, origin</lt:HubFault></detail>
    </soap:Fault>

SOAP 1.2::

    <env:Fault>
      <env:Code><env:Value>env:Sender</env:Value> (Sender, Receiver, VersionMismatch, ...)
        <env:Subcode><env:Value>lt:client.bad_signature</env:Value></env:Subcode></env:Code>
      <env:Reason><env:Text xml:lang="en">...</env:Text></env:Reason>
      <env:Detail><lt:HubFault>...</lt:HubFault></env:Detail>
    </env:Fault>

HTTP status: SOAP 1.1 faults are always 500 (WS-I Basic Profile R1126). SOAP 1.2 follows its
HTTP binding (part 2, section 7.4.2): a Sender fault is 400, every other fault 500. A SOAP 1.1
request whose content type is not SOAP at all is answered 415 (with a SOAP 1.1 fault body),
because no SOAP version was announced.

A rate-limited request (``client.rate_limited``) keeps those statuses, not REST's 429, and gets
a ``Retry-After`` header (``fault_headers``). The SOAP stacks upstream systems run (JAX-WS,
.NET) read a fault only from a 500 (or, in 1.2, a 400) and report any other status as a bare
transport error: the code and the message telling the sender to wait would be lost. Retry-After
is meaningful on any status (RFC 9110 section 10.2.3), so HTTP-level retry logic still sees it.

Faults are not signed: they carry no business content, and signing them would let anyone make
the hub spend an RSA signature per junk request.
"""

from __future__ import annotations

import math
from typing import Final

from lxml import etree

from hub.api.errors import RateLimited, UnsupportedMediaType
from hub.api.soap.contract import NS
from hub.api.soap.envelope import SOAP11, SOAP12, MustUnderstand, SoapVersion, VersionMismatch
from hub.errors import HUB, ClientError, HubError, InvalidMessage

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"


def is_sender_fault(error: HubError) -> bool:
    """The request is at fault (the client must change it), as opposed to the hub."""
    return isinstance(error, ClientError | InvalidMessage) or error.code.startswith("client.")


def fault_code(version: SoapVersion, error: HubError) -> str:
    if isinstance(error, VersionMismatch):
        return "VersionMismatch"
    if isinstance(error, MustUnderstand):
        return "MustUnderstand"
    return version.sender_code if is_sender_fault(error) else version.receiver_code


def http_status(version: SoapVersion, error: HubError) -> int:
    if isinstance(error, UnsupportedMediaType):
        return 415
    if version is SOAP12 and fault_code(version, error) == SOAP12.sender_code:
        return 400
    return 500


def fault_headers(error: HubError) -> tuple[tuple[bytes, bytes], ...]:
    """HTTP headers a fault carries besides the content type."""
    if isinstance(error, RateLimited):
        # Whole seconds (RFC 9110), rounded up as REST's problems do: never back too early.
        return ((b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()),)
    return ()


def hub_fault(error: HubError) -> etree._Element:
    detail = etree.Element(f"{{{NS}}}HubFault", nsmap={"lt": NS})
    etree.SubElement(detail, f"{{{NS}}}code").text = error.code
    etree.SubElement(detail, f"{{{NS}}}message").text = error.message
    if error.field is not None:
        etree.SubElement(detail, f"{{{NS}}}field").text = error.field
    etree.SubElement(detail, f"{{{NS}}}origin").text = error.origin or HUB
    return detail


def fault_envelope(version: SoapVersion, error: HubError) -> bytes:
    env = etree.Element(version.tag("Envelope"), nsmap={"soap": version.namespace, "lt": NS})
    code = fault_code(version, error)
    if version is SOAP12:
        _soap12_headers(env, error)
    body = etree.SubElement(env, version.tag("Body"))
    fault = etree.SubElement(body, version.tag("Fault"))
    if version is SOAP11:
        # SOAP 1.1 fault children are unqualified.
        etree.SubElement(fault, "faultcode").text = f"soap:{code}"
        reason = etree.SubElement(fault, "faultstring")
        reason.set(_XML_LANG, "en")
        reason.text = str(error)
        etree.SubElement(fault, "detail").append(hub_fault(error))
    else:
        code_el = etree.SubElement(fault, version.tag("Code"))
        etree.SubElement(code_el, version.tag("Value")).text = f"soap:{code}"
        sub = etree.SubElement(code_el, version.tag("Subcode"))
        # A QName in the hub's namespace: dots are allowed in an NCName.
        etree.SubElement(sub, version.tag("Value")).text = f"lt:{error.code}"
        reason = etree.SubElement(fault, version.tag("Reason"))
        text = etree.SubElement(reason, version.tag("Text"))
        text.set(_XML_LANG, "en")
        text.text = str(error)
        etree.SubElement(fault, version.tag("Detail")).append(hub_fault(error))
    out: bytes = etree.tostring(env, xml_declaration=True, encoding="utf-8")
    return out


def _soap12_headers(env: etree._Element, error: HubError) -> None:
    # SOAP 1.2 tells the sender what went wrong in header blocks of the fault message: which
    # blocks were not understood (part 1, 5.4.8), which envelopes are supported (5.4.7).
    if isinstance(error, MustUnderstand):
        header = etree.SubElement(env, SOAP12.tag("Header"))
        for i, block in enumerate(error.blocks):
            qname = etree.QName(block)
            prefix = f"nu{i}"
            nu = etree.SubElement(header, SOAP12.tag("NotUnderstood"),
                                  nsmap={prefix: qname.namespace} if qname.namespace else None)
            nu.set("qname", f"{prefix}:{qname.localname}" if qname.namespace else qname.localname)
    elif isinstance(error, VersionMismatch):
        header = etree.SubElement(env, SOAP12.tag("Header"))
        upgrade = etree.SubElement(header, SOAP12.tag("Upgrade"))
        for i, supported in enumerate((SOAP12, SOAP11)):
            prefix = f"v{i}"
            el = etree.SubElement(upgrade, SOAP12.tag("SupportedEnvelope"),
                                  nsmap={prefix: supported.namespace})
            el.set("qname", f"{prefix}:Envelope")
