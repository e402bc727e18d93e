"""SOAP 1.1 and 1.2: how each announces itself over HTTP and what its envelope looks like.

The HTTP content type picks the version: ``text/xml`` (with the ``SOAPAction`` header) is
SOAP 1.1, ``application/soap+xml`` (with an optional ``action`` parameter) is SOAP 1.2. The
envelope must then be in that version's namespace; one in the other version's namespace (or in
none of them) gets a VersionMismatch fault, answered in the version the content type announced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from lxml import etree

from hub.api.errors import UnsupportedMediaType
from hub.errors import ClientError

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
# SOAP 1.1 header blocks targeted at "the next node" (which the hub is) carry this actor.
_SOAP11_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"
_SOAP12_NEXT = "http://www.w3.org/2003/05/soap-envelope/role/next"
_SOAP12_ULTIMATE = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"


@dataclass(frozen=True, slots=True)
class SoapVersion:
    label: str  # "1.1" or "1.2", for messages
    namespace: str
    media_type: str  # the content type's type/subtype, without parameters
    sender_code: str  # the fault code of "the request is wrong"
    receiver_code: str  # the fault code of "the hub failed"
    role_attribute: str  # actor (1.1) or role (1.2)
    targets_us: frozenset[str]  # role / actor values that address the hub
    true_values: frozenset[str]  # accepted spellings of mustUnderstand="true"

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8"

    def tag(self, local: str) -> str:
        return f"{{{self.namespace}}}{local}"


SOAP11: Final = SoapVersion(
    label="1.1",
    namespace=SOAP11_NS,
    media_type="text/xml",
    sender_code="Client",
    receiver_code="Server",
    role_attribute="actor",
    targets_us=frozenset({"", _SOAP11_NEXT}),
    true_values=frozenset({"1", "true"}),
)
SOAP12: Final = SoapVersion(
    label="1.2",
    namespace=SOAP12_NS,
    media_type="application/soap+xml",
    sender_code="Sender",
    receiver_code="Receiver",
    role_attribute="role",
    targets_us=frozenset({"", _SOAP12_NEXT, _SOAP12_ULTIMATE}),
    true_values=frozenset({"1", "true"}),
)
VERSIONS: Final = (SOAP11, SOAP12)
_BY_NAMESPACE: Final = {v.namespace: v for v in VERSIONS}


class VersionMismatch(ClientError):
    """The envelope is not in the namespace of the SOAP version the request announced."""

    code = "client.soap_version_mismatch"


class MustUnderstand(ClientError):
    """A header block the hub must understand, and does not."""

    code = "client.soap_must_understand"

    def __init__(self, message: str, *, blocks: list[str]) -> None:
        super().__init__(message, field="Header")
        self.blocks = blocks  # Clark names {ns}local of the blocks not understood


class EnvelopeInvalid(ClientError):
    code = "client.envelope_invalid"


_PARAM_RE = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


@dataclass(frozen=True, slots=True)
class Announced:
    """What the HTTP layer said about the request: its SOAP version and its action, if any."""

    version: SoapVersion
    action: str | None

    @property
    def action_field(self) -> str:
        """Where the action was announced, for error messages."""
        return "SOAPAction" if self.version is SOAP11 else "Content-Type"


def negotiate(content_type: str | None, soap_action: str | None) -> Announced:
    """The version and action announced by the ``Content-Type`` and ``SOAPAction`` headers.
    An empty action (``SOAPAction: ""``) announces no operation."""
    raw = content_type or ""
    media = raw.split(";", 1)[0].strip().lower()
    if media == SOAP11.media_type:
        action = _unquote(soap_action) if soap_action is not None else None
        return Announced(SOAP11, action or None)
    if media == SOAP12.media_type:
        params = {k.lower(): _unquote(v) for k, v in _PARAM_RE.findall(raw[len(media):])}
        return Announced(SOAP12, params.get("action") or None)
    raise UnsupportedMediaType(
        f"the content type {raw[:100]!r} is not SOAP; send SOAP 1.1 as 'text/xml' with a "
        "SOAPAction header, or SOAP 1.2 as 'application/soap+xml'",
        field="Content-Type",
    )


@dataclass(frozen=True, slots=True)
class Opened:
    header: etree._Element | None
    payload: etree._Element  # the request element, the only child of Body


def open_envelope(root: etree._Element, version: SoapVersion) -> Opened:
    """Check the envelope's shape (Envelope, optional Header, Body with exactly one element)
    and the mandatory header blocks; return the header and the request element."""
    local = etree.QName(root).localname
    if local != "Envelope":
        raise EnvelopeInvalid(
            f"the document's root is {local!r}, not a SOAP Envelope; wrap the request in "
            f"<Envelope xmlns=\"{version.namespace}\"><Body>...</Body></Envelope>",
            field="Envelope",
        )
    if root.tag != version.tag("Envelope"):
        other = _BY_NAMESPACE.get(etree.QName(root).namespace or "")
        hint = (f"this is a SOAP {other.label} envelope; send it with the content type "
                f"{other.media_type!r}" if other else
                f"use the namespace {version.namespace!r}")
        raise VersionMismatch(
            f"the request was announced as SOAP {version.label} ({version.media_type}) but its "
            f"envelope is in the namespace {etree.QName(root).namespace!r}; {hint}",
            field="Envelope",
        )
    children = [c for c in root if isinstance(c.tag, str)]
    header: etree._Element | None = None
    if children and children[0].tag == version.tag("Header"):
        header = children.pop(0)
    if not children or children[0].tag != version.tag("Body"):
        raise EnvelopeInvalid(
            "the envelope has no Body (or something stands between Header and Body); send "
            "Envelope > [Header] > Body",
            field="Body",
        )
    if len(children) > 1:
        raise EnvelopeInvalid(
            f"the envelope holds {etree.QName(children[1]).localname!r} after Body; nothing may "
            "follow the Body",
            field="Envelope",
        )
    if _has_text(root):
        raise EnvelopeInvalid("the envelope contains text outside its elements; remove it",
                              field="Envelope")
    body = children[0]
    elements = [c for c in body if isinstance(c.tag, str)]
    if len(elements) != 1 or _has_text(body):
        raise EnvelopeInvalid(
            f"the Body holds {len(elements)} elements; it must hold exactly one, the request "
            "(document/literal wrapped, see the WSDL)",
            field="Body",
        )
    if header is not None:
        _check_must_understand(header, version)
    return Opened(header, elements[0])


def _has_text(element: etree._Element) -> bool:
    if element.text and element.text.strip():
        return True
    return any(c.tail and c.tail.strip() for c in element)


def _check_must_understand(header: etree._Element, version: SoapVersion) -> None:
    # The hub processes no header block: any block addressed to it and marked mustUnderstand is
    # a fault (SOAP 1.1 section 4.2.3, SOAP 1.2 part 1 section 2.4). Blocks for other roles pass.
    must = version.tag("mustUnderstand")
    role = version.tag(version.role_attribute)
    not_understood = [
        block.tag
        for block in header
        if isinstance(block.tag, str)
        and (block.get(must) or "").strip() in version.true_values
        and (block.get(role) or "").strip() in version.targets_us
    ]
    if not_understood:
        names = ", ".join(str(t) for t in not_understood)
        raise MustUnderstand(
            f"the header blocks {names} are marked mustUnderstand but the hub processes no "
            "header block: drop them, or drop mustUnderstand (authentication travels in HTTP "
            "headers, the signature inside the request element)",
            blocks=[str(t) for t in not_understood],
        )


def wrap(version: SoapVersion, payload: bytes) -> bytes:
    """A response envelope around an already serialised body element. The element is spliced
    in as bytes so that a signature over it is carried exactly as it was made."""
    return (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<soap:Envelope xmlns:soap="' + version.namespace.encode() + b'">'
        b"<soap:Body>" + payload + b"</soap:Body></soap:Envelope>"
    )
