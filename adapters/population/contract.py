"""Run-time check of what the hub sends against dancu.xsd.

zeep serialises by the schema's structure but does not check facets (patterns, lengths): a
request that breaks them would only be refused by the system, after a round trip, as a fault.
lxml validates the ~1 KB body in tens of microseconds, so every request is checked before it
leaves, and a failure names the element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree
from zeep import Plugin

from hub.errors import InvalidMessage
from hub.privacy import scrub

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def load_schema(xsd: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(xsd), parser))


class RequestContract(Plugin):
    """zeep plugin: validates the body element of every outgoing request."""

    def __init__(self, schema: etree.XMLSchema) -> None:
        self.schema = schema

    def egress(
        self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
    ) -> tuple[Any, Any]:
        body = envelope.find(f"{{{SOAP_ENV}}}Body")
        payload = body[0] if body is not None and len(body) else None
        if payload is None or not self.schema.validate(payload):
            error = self.schema.error_log.last_error if payload is not None else None
            element = _element_of(error.path) if error is not None else "Body"
            detail = scrub(error.message) if error is not None else "the body is empty"
            raise InvalidMessage(
                f"the {getattr(operation, 'name', 'request')} request does not fit dancu.xsd: "
                f"{detail}",
                code="client.mapping_failed",
                field=element,
            )
        return envelope, http_headers


def _element_of(path: str | None) -> str:
    # "/ns0:XacThucThongTinCongDan/ns0:HoVaTen" -> "HoVaTen"
    last = (path or "").rstrip("/").rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[-1].split("[", 1)[0] or "Body"
