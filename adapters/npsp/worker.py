"""The portal's worker: what each canonical event becomes on the portal.

- ``vn.gov.dossier.submitted`` -> ``DongBoHoSoMC`` insert; "already exists" -> update. A
  dossier submitted at the portal itself (source in ``portal_sources``) is not synced back.
- ``vn.gov.dossier.status-changed`` -> the portal's record is looked up (``TraCuuHoSo``), the
  new ``TrangThaiHoSo`` (with the date that status stands for, and the note) is applied to it,
  and the whole record is sent back with ``DongBoHoSoMC`` ``isUpdating`` "True". Sending the
  whole record, not a partial one, means a portal that replaces records on update cannot lose
  fields. A dossier the portal does not know yet is retried later (its sync may be in the retry
  tiers).
- ``vn.gov.dossier.progress-reported`` -> ``CapNhatTienDoHoSoMC``.

Dossier and status events are applied in the order of the hub's sequence
(``hub.lastapplied.AppliedSequences``); a dossier not synced back to the portal is no skip (the
portal has it).
"""

from __future__ import annotations

import logging

from adapters.npsp.client import NAME, DossierUnknown, NpspClient
from adapters.npsp.config import NpspConfig
from adapters.npsp.mapping import load_mapping
from adapters.npsp.translate import apply_status, dossier_to_record, progress_to_record
from hub import codes
from hub.adapters import AdapterContext, Event
from hub.contracts import load_contract
from hub.destinations import event_body, mapping_checked
from hub.envelope import Envelope
from hub.lastapplied import AppliedSequences
from hub.model import Dossier, ProgressStep, StatusChange
from hub.privacy import mask_identity

log = logging.getLogger(__name__)

SUBMITTED = "vn.gov.dossier.submitted"
STATUS_CHANGED = "vn.gov.dossier.status-changed"
PROGRESS_REPORTED = "vn.gov.dossier.progress-reported"
HANDLED = (SUBMITTED, STATUS_CHANGED, PROGRESS_REPORTED)


def _agency_of(dossier_code: str) -> str:
    return codes.parse_dossier(dossier_code).agency.value


class NpspHandler:
    """Built once per worker; the HTTP connection pool and the portal session live as long."""

    def __init__(self, ctx: AdapterContext) -> None:
        self.config = NpspConfig.shipped_or_context(ctx, NAME)
        self.mapping = load_mapping(ctx.settings.mappings_dir / NAME)
        self.contract = load_contract(ctx.settings.schemas_dir / NAME)
        self.client = NpspClient(self.config, self.mapping, self.contract)
        self.sequences = AppliedSequences(ctx.store, NAME, "the portal")

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, event: Event) -> list[Envelope]:
        env = event.envelope
        body = event_body(env, HANDLED, "the portal's worker")
        with mapping_checked(NAME, f"the request for {env.subject}"):
            if isinstance(body, Dossier):
                await self._submitted(event, env, body)
            elif isinstance(body, StatusChange):
                await self._status_changed(event, env, body)
            elif isinstance(body, ProgressStep):
                await self._progress(body)
        # The portal's answers cause no further events.
        return []

    async def _submitted(self, event: Event, env: Envelope, dossier: Dossier) -> None:
        if env.source in self.config.portal_sources:
            log.info("dossier %s was submitted at the portal (%s): not synced back",
                     dossier.code, env.source)
            return
        if await self.sequences.superseded(env, dossier.code):
            return
        record = dossier_to_record(dossier, self.mapping)
        outcome = await self.client.upsert_dossier(record, agency=dossier.agency_code)
        await self.sequences.applied(event, dossier.code)
        log.info("dossier %s %s on the portal (applicant %s, status %d)", dossier.code, outcome,
                 mask_identity(dossier.applicant.identity_number), dossier.status)

    async def _status_changed(self, event: Event, env: Envelope, change: StatusChange) -> None:
        code = change.dossier_code
        if await self.sequences.superseded(env, code, status=int(change.status)):
            return
        agency = _agency_of(code)
        current = await self.client.lookup(code, agency=agency)
        if current is None:
            raise DossierUnknown(
                f"the portal has no dossier {code} to set status {int(change.status)} on; its "
                "own sync may still be on its way, retrying later",
                origin=f"system:{NAME}",
            )
        updated = apply_status(current, change, self.mapping)
        await self.client.sync_dossiers([updated], update=True, agency=agency)
        await self.sequences.applied(event, code)
        log.info("dossier %s: status %d sent to the portal", code, change.status)

    async def _progress(self, step: ProgressStep) -> None:
        record = progress_to_record(step, self.mapping)
        await self.client.report_progress([record], agency=_agency_of(step.dossier_code))
        log.info("dossier %s: progress step sent to the portal", step.dossier_code)


def make_handler(ctx: AdapterContext) -> NpspHandler:
    return NpspHandler(ctx)
