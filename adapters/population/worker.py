"""The population adapter's worker: answers ``vn.gov.citizen.verification-requested`` with
``vn.gov.citizen.verified``, after XacThucThongTinCongDan and, when the configuration says
``lookup = true`` and the citizen matched, TraCuuThongTinCongDan. Bad canonical data is
InvalidMessage, raised before any call to the system.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.population.client import NAME, PopulationClient
from adapters.population.config import PopulationConfig
from adapters.population.mapping import load_mapping
from adapters.population.translate import Caller
from hub import codes
from hub.adapters import AdapterContext, Event, load_config
from hub.envelope import Envelope
from hub.errors import CodeError, HubError, InvalidMessage
from hub.model import VN_TZ, CitizenVerification, CitizenVerified, parse_event_data
from hub.privacy import initials, mask_identity, scrub
from hub.transport.soapfaults import load_faults

log = logging.getLogger(__name__)
VERIFICATION_REQUESTED = "vn.gov.citizen.verification-requested"
VERIFIED = "vn.gov.citizen.verified"


def build_client(ctx: AdapterContext) -> PopulationClient:
    """The client from the context: its config section (or mappings/population/config.toml
    when the context carries none), the mapping and fault tables, the WSDL."""
    raw = ctx.config or load_config(Path(ctx.settings.mappings_dir), NAME)
    config = PopulationConfig.from_mapping(raw)
    mappings = Path(ctx.settings.mappings_dir) / NAME
    return PopulationClient(
        config,
        load_mapping(mappings),
        load_faults(mappings),
        wsdl=Path(ctx.settings.schemas_dir) / NAME / "dancu.wsdl",
    )


class VerificationHandler:
    """``handler(event) -> [verified event]``; ``aclose()`` releases the connection pool."""

    def __init__(self, ctx: AdapterContext, client: PopulationClient | None = None) -> None:
        self.client = client or build_client(ctx)
        self.source: str = ctx.settings.hub_id

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, event: Event) -> list[Envelope]:
        env = event.envelope
        if env.type != VERIFICATION_REQUESTED:
            raise InvalidMessage(
                f"the population worker handles {VERIFICATION_REQUESTED} only, got {env.type!r};"
                " check the bindings of its work queue",
                code="client.unexpected_type",
                field="type",
            )
        who = _request(env.data)
        config = self.client.config
        caller = Caller(
            request_id=env.id,
            service_code=env.procedure or config.service_code,
            integration_code=config.integration_code,
            officer=config.officer,
        )
        matched = await self.client.verify(who, caller)
        record = None
        if matched and config.lookup:
            record = await self.client.lookup(who, caller)
        result = CitizenVerified(
            dossier_code=who.dossier_code or _dossier_or_none(env.subject),
            identity_number=who.identity_number,
            matched=matched,
            checked_at=datetime.now(VN_TZ),
            record=record,
        )
        log.info("citizen verification %s for dossier %s: %s (%s) matched=%s%s", env.id,
                 result.dossier_code or "-", mask_identity(who.identity_number),
                 initials(who.name), matched, ", record attached" if record else "")
        return [env.derive(source=self.source, type=VERIFIED,
                           data=result.model_dump(mode="json", exclude_none=True))]


def _request(data: Any) -> CitizenVerification:
    try:
        who = parse_event_data(VERIFICATION_REQUESTED, data)
    except HubError as exc:
        # Validation messages quote the bad value, which may be an identity number.
        raise InvalidMessage(scrub(exc.message), code=exc.code, field=exc.field) from None
    assert isinstance(who, CitizenVerification)
    return who


def _dossier_or_none(subject: str) -> str | None:
    try:
        return codes.parse_dossier(subject, "subject").value
    except CodeError:
        return None

