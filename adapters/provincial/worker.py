"""The provincial worker: a dossier submitted elsewhere (online at the portal, by post) is
delivered to the one-stop system of the province it belongs to.

A dossier whose source is a system of that same province is not sent back to it (the province
already has its own dossiers). Dossiers of a ministry are left alone unless ``[endpoints]``
names a system for that ministry's code.
"""

from __future__ import annotations

import logging

from adapters.provincial.client import NAME, ProvincialClient
from adapters.provincial.config import ProvincialConfig, anchor_of
from adapters.provincial.mapping import load_mapping
from adapters.provincial.translate import dossier_to_wire
from hub.adapters import AdapterContext, Event
from hub.contracts import load_contract
from hub.destinations import event_body, mapping_checked
from hub.envelope import Envelope
from hub.model import Dossier
from hub.privacy import mask_identity

log = logging.getLogger(__name__)

SUBMITTED = "vn.gov.dossier.submitted"


class ProvincialHandler:
    """Built once per worker; the HTTP connection pool and the breakers live as long."""

    def __init__(self, ctx: AdapterContext) -> None:
        self.config = ProvincialConfig.shipped_or_context(ctx, NAME)
        self.mapping = load_mapping(ctx.settings.mappings_dir / NAME)
        self.contract = load_contract(ctx.settings.schemas_dir / NAME)
        self.client = ProvincialClient(self.config, self.mapping)

    async def aclose(self) -> None:
        await self.client.aclose()

    def destination(self, env: Envelope, dossier: Dossier) -> str | None:
        """The base URL of the province's system, or None when it must not receive this one."""
        province = anchor_of(dossier.agency_code)
        sender = anchor_of(env.source.split(":")[2], "source")
        if self.config.same_province(sender, province):
            log.info("dossier %s came from its own province (%s): not sent back",
                     dossier.code, env.source)
            return None
        if province.startswith("G") and not self.config.is_known(province):
            log.info("dossier %s belongs to a ministry (%s), not to a province: not delivered",
                     dossier.code, province)
            return None
        return self.config.endpoint_for(province)

    async def __call__(self, event: Event) -> list[Envelope]:
        env = event.envelope
        dossier = event_body(env, (SUBMITTED,), "the provincial worker")
        assert isinstance(dossier, Dossier)
        base_url = self.destination(env, dossier)
        if base_url is None:
            return []
        document = dossier_to_wire(dossier, self.mapping)
        if self.config.validate_requests:
            with mapping_checked(NAME, "the dossier in the province's format"):
                self.contract.validate("dossier", document)
        await self.client.deliver(document, base_url, idempotency_key=env.id)
        log.info("dossier %s delivered to %s (applicant %s)", dossier.code, base_url,
                 mask_identity(dossier.applicant.identity_number))
        # The province answers through its callback later; nothing to emit now.
        return []


def make_handler(ctx: AdapterContext) -> ProvincialHandler:
    return ProvincialHandler(ctx)
