"""The population database's SOAP client: zeep's AsyncClient over httpx, the WSDL loaded from
schemas/population/ (never fetched), the service address from the configuration.

Every call goes through ``hub.outbound.CallPolicy``. Foreign exceptions are translated here, at
the boundary: a SOAP fault by faults.toml, a reply that is not SOAP by its HTTP status,
connection failures and timeouts to RetryableError, an unparseable reply to RetryableError
``system.malformed_reply``. Messages never carry what the system sent verbatim beyond a scrubbed
fault string: a reply may echo citizen data.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport
from zeep.wsdl import Document

from adapters.population.config import PopulationConfig
from adapters.population.contract import RequestContract, load_schema
from adapters.population.faults import FaultTable
from adapters.population.mapping import Mapping
from adapters.population.records import CitizenRecord
from adapters.population.translate import (
    Caller,
    exists_from_reply,
    record_from_reply,
    to_request,
)
from hub.errors import ConfigError, InvalidMessage, RetryableError
from hub.model import CitizenVerification
from hub.outbound import CallPolicy
from hub.privacy import initials, mask_identity, scrub

log = logging.getLogger(__name__)

NAME = "population"
ORIGIN = f"system:{NAME}"
NS = "http://dancuquocgia.bca"
BINDING = f"{{{NS}}}DanCuServiceSoapBinding"
VERIFY = "XacThucThongTinCongDan"
LOOKUP = "TraCuuThongTinCongDan"
_SOAP_MEDIA = ("text/xml", "application/xml", "application/soap+xml")

# Replies are parsed without DTDs, entities or network access (zeep's defusedxml-style guards).
ZEEP_SETTINGS = zeep.Settings(
    strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False
)


@lru_cache(maxsize=4)
def _document(wsdl: Path) -> Document:
    # Parsing the WSDL and its XSD costs tens of milliseconds: once per process, shared by every
    # client (a Document holds no connection; calls use the client's transport).
    if not wsdl.is_file():
        raise ConfigError(f"{wsdl} does not exist; the population adapter needs its WSDL",
                          field="wsdl")
    # zeep annotates ``transport`` as a class; it takes an instance.
    transport: Any = zeep.Transport()  # type: ignore[no-untyped-call]
    return Document(str(wsdl), transport, settings=ZEEP_SETTINGS)


@lru_cache(maxsize=4)
def _schema(xsd: Path) -> etree.XMLSchema:
    return load_schema(xsd)


class _QuietTransport(AsyncTransport):
    """zeep's AsyncTransport logs whole request and reply bodies at DEBUG, and those hold
    citizen data: this one logs the address, the status and the size only."""

    async def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
        response = await self.client.post(address, content=message, headers=headers)
        log.debug("POST %s -> HTTP %d, %d bytes", address, response.status_code,
                  len(response.content))
        # SOAP 1.1 answers 200, or 500 with a fault. Anything else is the HTTP layer talking (a
        # gateway page, an auth challenge), even when its body happens to parse as XML: zeep
        # would call that an "unknown fault" and lose the status.
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 and not (
            response.status_code == 500 and media in _SOAP_MEDIA
        ):
            raise zeep.exceptions.TransportError(  # type: ignore[no-untyped-call]
                status_code=response.status_code
            )
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
        self.wsdl_client.close()


class PopulationClient:
    """One per process (or per worker): holds the connection pool and the call policy."""

    def __init__(
        self,
        config: PopulationConfig,
        mapping: Mapping,
        faults: FaultTable,
        *,
        wsdl: Path,
        policy: CallPolicy | None = None,
    ) -> None:
        self.config = config
        self.mapping = mapping
        self.faults = faults
        self.policy = policy or CallPolicy(NAME, config.policy)
        auth = (httpx.BasicAuth(config.username, config.password)
                if config.username and config.password else None)
        timeout = httpx.Timeout(config.policy.timeout)
        self._transport = _QuietTransport(  # type: ignore[no-untyped-call]
            client=httpx.AsyncClient(
                timeout=timeout,
                auth=auth,
                limits=httpx.Limits(max_connections=config.max_connections,
                                    max_keepalive_connections=config.max_connections),
            ),
            wsdl_client=httpx.Client(timeout=timeout),
        )
        self._zeep = zeep.AsyncClient(  # type: ignore[no-untyped-call]
            _document(wsdl),
            transport=self._transport,
            settings=ZEEP_SETTINGS,
            plugins=[RequestContract(_schema(wsdl.with_name("dancu.xsd")))],
        )
        # AsyncClient.create_service returns the synchronous proxy (zeep 4.3): build the async
        # one, bound to the configured address instead of the WSDL's soap:address.
        self._service = AsyncServiceProxy(  # type: ignore[no-untyped-call]
            self._zeep, self._zeep.wsdl.bindings[BINDING], address=config.url
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def verify(self, who: CitizenVerification, caller: Caller) -> bool:
        """XacThucThongTinCongDan: does a citizen with exactly these details exist?"""
        body = to_request(who, caller, self.mapping)
        reply = await self._call(VERIFY, body)
        exists = exists_from_reply(reply, caller.request_id, self.mapping)
        log.debug("%s %s (%s): exists=%s", VERIFY, mask_identity(who.identity_number),
                  initials(who.name), exists)
        return exists

    async def lookup(self, who: CitizenVerification, caller: Caller) -> CitizenRecord | None:
        """TraCuuThongTinCongDan: the citizen's record, or None when no citizen has these
        details."""
        body = to_request(who, caller, self.mapping)
        reply = await self._call(LOOKUP, body)
        record = record_from_reply(reply, caller.request_id, self.mapping)
        if record is not None and not _same_citizen(who.identity_number, record):
            # Someone else's record must not travel on as this citizen's.
            raise RetryableError(
                f"the {LOOKUP} reply holds the record of another citizen "
                f"({mask_identity(record.identity_number)}) than the one asked",
                code="system.malformed_reply", field="SoDinhDanh", origin=ORIGIN,
            )
        log.debug("%s %s (%s): %s", LOOKUP, mask_identity(who.identity_number),
                  initials(who.name), "found" if record else "not found")
        return record

    async def _call(self, operation: str, body: dict[str, Any]) -> Any:
        method = getattr(self._service, operation)

        async def once() -> Any:
            try:
                result = await method(**body)
            except zeep.exceptions.Fault as exc:
                raise self.faults.for_fault(exc.code, exc.detail, exc.message) from None
            except zeep.exceptions.TransportError as exc:
                raise self._transport_error(operation, exc) from None
            except httpx.TimeoutException:
                raise RetryableError(
                    f"the population database did not answer {operation} within "
                    f"{self.config.policy.timeout}s",
                    code="system.timeout", origin=ORIGIN,
                ) from None
            except httpx.TransportError as exc:
                raise RetryableError(
                    f"cannot reach the population database at {self.config.url} "
                    f"({type(exc).__name__}); is the service up?",
                    code="system.unavailable", origin=ORIGIN,
                ) from None
            except zeep.exceptions.ValidationError as exc:
                # zeep refused to serialise the request: the translation produced something
                # the contract does not allow. Not worth retrying.
                path = ".".join(str(p) for p in (getattr(exc, "path", None) or []))
                raise InvalidMessage(
                    f"the {operation} request does not fit dancu.xsd: {scrub(exc.message)}",
                    code="client.mapping_failed", field=path or None,
                ) from None
            except TypeError as exc:
                # zeep raises TypeError for an element name the WSDL does not have: the
                # mapping and the schema disagree. Any other TypeError is a bug: let it be.
                if "unexpected keyword" not in str(exc):
                    raise
                raise ConfigError(
                    f"the {operation} request names an element dancu.xsd does not have ({exc});"
                    " align mappings/population/mapping.toml with schemas/population/dancu.xsd",
                    field="mapping.toml [request]",
                ) from None
            except (zeep.exceptions.Error, etree.XMLSyntaxError) as exc:
                raise RetryableError(
                    f"the population database's {operation} reply cannot be read "
                    f"({type(exc).__name__})",
                    code="system.malformed_reply", origin=ORIGIN,
                ) from None
            return serialize_object(result, dict)  # type: ignore[no-untyped-call]

        return await self.policy.call(once)

    def _transport_error(self, operation: str, exc: zeep.exceptions.TransportError) -> Exception:
        if exc.status_code == 200:
            # A 200 whose body is not XML: the service is answering, but garbage.
            return RetryableError(
                f"the population database's {operation} reply is not well-formed XML",
                code="system.malformed_reply", origin=ORIGIN,
            )
        return self.faults.for_http(exc.status_code)


def _same_citizen(asked: str, record: CitizenRecord) -> bool:
    if len(asked) == 12:
        return record.identity_number == asked
    return record.old_identity_number in (None, asked)
