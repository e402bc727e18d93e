"""The population database's SOAP client over the hub's transport (``hub.transport.soap``);
its faults are read by faults.toml (``hub.transport.soapfaults``). A look-up answered with
another citizen's record is refused."""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, InitVar, dataclass
from pathlib import Path
from typing import Any

from adapters.population.config import PopulationConfig
from adapters.population.mapping import Mapping
from adapters.population.translate import Caller, exists_from_reply, record_from_reply, to_request
from hub.errors import RetryableError
from hub.model import CitizenRecord, CitizenVerification
from hub.outbound import CallPolicy
from hub.privacy import collect, initials, mask_identity
from hub.transport import Outbound, Request
from hub.transport.soap import SoapTransport
from hub.transport.soapfaults import FaultTable

log = logging.getLogger(__name__)

NAME = "population"
ORIGIN = f"system:{NAME}"
NS = "http://dancuquocgia.bca"
BINDING = f"{{{NS}}}DanCuServiceSoapBinding"
VERIFY = "XacThucThongTinCongDan"
LOOKUP = "TraCuuThongTinCongDan"


@dataclass
class PopulationClient:
    """One per process (or per worker): holds the connection pool and the call policy."""

    config: PopulationConfig
    mapping: Mapping
    faults: FaultTable
    _: KW_ONLY
    wsdl: InitVar[Path]
    policy: InitVar[CallPolicy | None] = None

    def __post_init__(self, wsdl: Path, policy: CallPolicy | None) -> None:
        config = self.config
        self.outbound = Outbound(
            SoapTransport(
                NAME, self.faults.title, wsdl=wsdl, xsd=wsdl.with_name("dancu.xsd"),
                binding=BINDING, address=config.url, timeout=config.policy.timeout,
                auth=config.basic_auth(), max_connections=config.max_connections,
                auth_hint="the account in the [auth] variables of "
                          "mappings/population/config.toml",
                mapping_field="mapping.toml [request]",
            ),
            policy or CallPolicy(NAME, config.policy),
        )
        r = self.mapping.request
        self._personal = {r.identity_number, r.old_identity_number, r.name, r.birth_date,
                          r.birth_year}

    async def aclose(self) -> None:
        await self.outbound.aclose()

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
        request = Request(operation, body=body, personal=collect(body, self._personal))
        return await self.outbound.call(request, self.faults.result)


def _same_citizen(asked: str, record: CitizenRecord) -> bool:
    if len(asked) == 12:
        return record.identity_number == asked
    return record.old_identity_number in (None, asked)
