"""The transport of systems that speak SOAP 1.1, over zeep's AsyncClient and httpx: the WSDL
read from the hub's own schemas (never fetched), the service address from the configuration,
replies parsed without DTDs, entities or network access.

A SOAP fault is the system's answer, not a failure of the transport: it comes back as a
``Reply`` whose body is a ``Fault``, for the adapter to read by its own table. An HTTP answer
that is not SOAP (a gateway's page, an authentication challenge) is translated by
``hub.transport.base.failure`` like any other; a reply that does not parse is
``system.bad_reply``. Whole bodies are never logged: they hold citizen data.

Given the system's XSD, every request is checked against it before it leaves: zeep serialises
by the schema's structure but does not check facets (patterns, lengths), so a request breaking
them would only be refused by the system, after a round trip, as a fault. lxml validates a
~1 KB body in tens of microseconds, and the failure names the element.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import zeep
import zeep.exceptions
from lxml import etree
from zeep import Plugin
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport
from zeep.wsdl import Document

from hub.errors import ConfigError, InvalidMessage, RetryableError
from hub.privacy import scrub
from hub.transport.base import Reply, Request, bad_reply, failure, origin_of

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_SOAP_MEDIA = ("text/xml", "application/xml", "application/soap+xml")
SETTINGS = zeep.Settings(
    strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False
)


@dataclass(frozen=True)
class Fault:
    """A SOAP fault as the system sent it: faultcode, faultstring and detail (an element)."""

    code: str | None
    message: str | None
    detail: Any


@lru_cache(maxsize=8)
def _document(wsdl: Path) -> Document:
    # Parsing a WSDL and its XSD costs tens of milliseconds: once per process, shared by every
    # transport (a Document holds no connection; calls use the transport's own pool).
    if not wsdl.is_file():
        raise ConfigError(f"{wsdl} does not exist; the adapter needs its WSDL", field="wsdl")
    # zeep annotates ``transport`` as a class; it takes an instance.
    transport: Any = zeep.Transport()  # type: ignore[no-untyped-call]
    return Document(str(wsdl), transport, settings=SETTINGS)


@lru_cache(maxsize=8)
def load_schema(xsd: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(xsd), parser))


class _RequestContract(Plugin):
    """Validates the body element of every outgoing request against the system's XSD."""

    def __init__(self, xsd: Path) -> None:
        self.schema, self.name = load_schema(xsd), xsd.name

    def egress(
        self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
    ) -> tuple[Any, Any]:
        body = envelope.find(f"{{{SOAP_ENV}}}Body")
        payload = body[0] if body is not None and len(body) else None
        if payload is None or not self.schema.validate(payload):
            error = self.schema.error_log.last_error if payload is not None else None
            raise InvalidMessage(
                f"the {getattr(operation, 'name', 'request')} request does not fit {self.name}: "
                f"{scrub(error.message) if error is not None else 'the body is empty'}",
                code="client.mapping_failed",
                field=_element_of(error.path) if error is not None else "Body",
            )
        return envelope, http_headers


def _element_of(path: str | None) -> str:
    # "/ns0:XacThucThongTinCongDan/ns0:HoVaTen" -> "HoVaTen"
    last = (path or "").rstrip("/").rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[-1].split("[", 1)[0] or "Body"


class _HttpAnswer(Exception):
    """An HTTP answer that is not SOAP, carried out of zeep to be translated."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(status)
        self.status, self.headers = status, headers


class _QuietTransport(AsyncTransport):
    """zeep's AsyncTransport logs whole request and reply bodies at DEBUG: this one logs the
    address, the status and the size only."""

    async def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
        response = await self.client.post(address, content=message, headers=headers)
        log.debug("POST %s -> HTTP %d, %d bytes", address, response.status_code,
                  len(response.content))
        # SOAP 1.1 answers 200, or 500 with a fault. Anything else is the HTTP layer talking,
        # even when its body happens to parse as XML: zeep would call that an "unknown fault"
        # and lose the status.
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 and not (
            response.status_code == 500 and media in _SOAP_MEDIA
        ):
            raise _HttpAnswer(response.status_code, response.headers)
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
        self.wsdl_client.close()


class SoapTransport:
    """One per system: holds the connection pool. A request's ``operation`` is the WSDL's
    operation, its ``body`` the operation's elements by name; a reply's body is the result as
    plain dicts and lists, or a ``Fault``. ``xsd``: the schema every request is checked against
    before it leaves. ``mapping_field`` names the adapter's mapping in the error of a request
    naming an element the WSDL does not have."""

    def __init__(
        self,
        system: str,
        title: str,
        *,
        wsdl: Path,
        binding: str,
        address: str,
        timeout: float,
        auth: httpx.Auth | None = None,
        max_connections: int = 20,
        xsd: Path | None = None,
        plugins: Sequence[Any] = (),
        auth_hint: str = "",
        mapping_field: str = "mapping",
    ) -> None:
        self.system, self.title, self.address = system, title, address
        self.timeout, self.auth_hint, self.mapping_field = timeout, auth_hint, mapping_field
        self.wsdl_name = wsdl.name
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        self._transport = _QuietTransport(  # type: ignore[no-untyped-call]
            client=httpx.AsyncClient(timeout=httpx.Timeout(timeout), auth=auth, limits=limits),
            wsdl_client=httpx.Client(timeout=httpx.Timeout(timeout)),
        )
        client = zeep.AsyncClient(  # type: ignore[no-untyped-call]
            _document(wsdl), transport=self._transport, settings=SETTINGS,
            plugins=[*([_RequestContract(xsd)] if xsd else []), *plugins],
        )
        # AsyncClient.create_service returns the synchronous proxy (zeep 4.3): build the async
        # one, bound to the configured address instead of the WSDL's soap:address.
        self._service = AsyncServiceProxy(  # type: ignore[no-untyped-call]
            client, client.wsdl.bindings[binding], address=address
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def send(self, request: Request) -> Reply:
        operation = request.operation
        origin = origin_of(self.system)
        try:
            result = await getattr(self._service, operation)(**(request.body or {}))
        except zeep.exceptions.Fault as exc:
            return Reply(500, Fault(exc.code, exc.message, exc.detail))
        except _HttpAnswer as exc:
            error = failure(exc.status, exc.headers, system=self.system, title=self.title,
                            operation=operation, auth_hint=self.auth_hint)
            raise (error or bad_reply(self.system, self.title, operation,
                                      f"is HTTP {exc.status} without a SOAP envelope")) from None
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"{self.title} did not answer {operation} within {self.timeout}s "
                f"({type(exc).__name__})", code="system.timeout", origin=origin,
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{self.title} cannot be reached at {self.address} for {operation} "
                f"({type(exc).__name__}); is the service up?",
                code="system.unavailable", origin=origin,
            ) from None
        except zeep.exceptions.ValidationError as exc:
            # zeep refused to serialise the request: the translation produced something the
            # contract does not allow. Not worth retrying.
            path = ".".join(str(p) for p in (getattr(exc, "path", None) or []))
            raise InvalidMessage(
                f"the {operation} request does not fit {self.wsdl_name}: {scrub(exc.message)}",
                code="client.mapping_failed", field=path or None,
            ) from None
        except TypeError as exc:
            # zeep raises TypeError for an element name the WSDL does not have: the mapping and
            # the schema disagree. Any other TypeError is a bug: let it be.
            if "unexpected keyword" not in str(exc):
                raise
            raise ConfigError(
                f"the {operation} request names an element {self.wsdl_name} does not have "
                f"({exc}); align the adapter's mapping with its schema",
                field=self.mapping_field,
            ) from None
        except (zeep.exceptions.Error, etree.XMLSyntaxError) as exc:
            raise bad_reply(self.system, self.title, operation,
                            f"is not well-formed SOAP ({type(exc).__name__})") from None
        return Reply(200, serialize_object(result, dict))  # type: ignore[no-untyped-call]
