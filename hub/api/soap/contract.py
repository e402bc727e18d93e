"""The SOAP contract files (schemas/soap/intake.wsdl and intake.xsd): loaded once, the XSD
compiled once per thread, the WSDL served with its addresses set to the service's address
(``Settings.public_url``, see ``routes``)."""

from __future__ import annotations

import copy
import re
import threading
from pathlib import Path
from typing import Final

from lxml import etree

from hub.errors import ConfigError, ValidationError
from hub.privacy import scrub

NS: Final = "urn:lienthong:hub:v1"
DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
XSD_NAME: Final = "intake.xsd"
WSDL_NAME: Final = "intake.wsdl"
_WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
_ADDRESS_TAGS: Final = (
    "{http://schemas.xmlsoap.org/wsdl/soap/}address",
    "{http://schemas.xmlsoap.org/wsdl/soap12/}address",
)
_IMPORT_TAG: Final = "{http://www.w3.org/2001/XMLSchema}import"
# A namespace in Clark notation ({urn:...}name); a URI has a colon, which keeps regex
# quantifiers such as [0-9]{2} in a pattern facet's message intact.
_CLARK_NS = re.compile(r"\{[^{}\s]*:[^{}\s]*\}")


def _read_xml(path: Path) -> etree._ElementTree:
    # Our own files, but parsed as carefully as anything else.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.parse(str(path), parser)
    except (OSError, etree.XMLSyntaxError) as exc:
        raise ConfigError(f"the SOAP contract {path} cannot be read: {exc}; check "
                          "Settings.schemas_dir") from None


class Contract:
    """The WSDL and XSD of the intake service in ``directory`` (``<schemas_dir>/soap``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.xsd_path = self.directory / XSD_NAME
        self.wsdl_path = self.directory / WSDL_NAME
        self._xsd_doc = _read_xml(self.xsd_path)
        self._wsdl_doc = _read_xml(self.wsdl_path)
        self.xsd_bytes = etree.tostring(self._xsd_doc, xml_declaration=True, encoding="utf-8")
        self._local = threading.local()
        self.schema()  # compile now: a broken XSD is a startup error, not a request error

    def schema(self) -> etree.XMLSchema:
        """This thread's compiled schema. lxml keeps a validator's error log on the schema
        object, so threads validating at once need one each."""
        schema: etree.XMLSchema | None = getattr(self._local, "schema", None)
        if schema is None:
            try:
                schema = etree.XMLSchema(self._xsd_doc)
            except etree.XMLSchemaParseError as exc:
                raise ConfigError(f"{self.xsd_path} is not a valid XSD: {exc}") from None
            self._local.schema = schema
        return schema

    def validate(self, payload: etree._Element) -> None:
        """Validate the request element (the Body's child) against the XSD; the first problem
        becomes a ``client.schema_invalid`` error naming the element's path below it."""
        schema = self.schema()
        if schema.validate(payload):
            return
        error = schema.error_log[0]
        # libxml2 quotes the refused value: an identity number is masked (hub.privacy).
        message = scrub(_CLARK_NS.sub("", error.message).rstrip("."))
        raise ValidationError(
            f"the request does not match the service contract: {message}; see the XSD at "
            f"?xsd={XSD_NAME}",
            field=_field_of(payload, error.path),
        )

    def wsdl(self, address: str) -> bytes:
        """The WSDL with both ports' soap:address set to ``address`` (the service's URL) and
        the schema import pointing at ``address?xsd=intake.xsd``."""
        doc = copy.deepcopy(self._wsdl_doc)
        for tag in _ADDRESS_TAGS:
            for el in doc.iter(tag):
                el.set("location", address)
        types = doc.getroot().find(f"{{{_WSDL_NS}}}types")
        if types is not None:
            for el in types.iter(_IMPORT_TAG):
                if el.get("schemaLocation") == XSD_NAME:
                    el.set("schemaLocation", f"{address}?xsd={XSD_NAME}")
        out: bytes = etree.tostring(doc, xml_declaration=True, encoding="utf-8")
        return out


def _field_of(payload: etree._Element, path: str | None) -> str | None:
    """libxml2's error path (``/lt:Op/lt:dossier/lt:code``, or ``/*/*/*[2]`` for a default
    namespace) as the sender's element path below the request element: ``dossier/code``."""
    steps = (path or "").strip("/").split("/")[1:]
    if not steps:
        return None
    prefixes = {k: v for k, v in payload.nsmap.items() if k}
    try:
        found = payload.xpath("./" + "/".join(steps), namespaces=prefixes)
    except (etree.XPathError, TypeError):
        found = []
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return _path_below(payload, found[0])
    return "/".join(s.split(":")[-1] for s in steps)


def _path_below(top: etree._Element, element: etree._Element) -> str:
    parts: list[str] = []
    node: etree._Element | None = element
    while node is not None and node is not top:
        parent = node.getparent()
        name = etree.QName(node).localname
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/".join(reversed(parts))
