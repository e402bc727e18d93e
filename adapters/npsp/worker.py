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

Dossier and status events carry the hub's per-dossier ``sequence`` (one space for every door:
REST, SOAP, callbacks, adapters' events): one that is not newer than the last applied to the
portal is not sent, and never in silence: ``hub.recorder.report_skip`` logs a WARNING, counts
it (``lienthong_skipped_total{destination="npsp"}``) and enters it in the dossier's timeline. A
dossier submitted at the portal itself is not synced back: that is no skip (the portal has it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from adapters.npsp.client import NAME, DossierUnknown, NpspClient
from adapters.npsp.config import NpspConfig
from adapters.npsp.mapping import load_mapping
from adapters.npsp.translate import apply_status, dossier_to_record, progress_to_record
from hub import codes
from hub.adapters import AdapterContext, Event, load_config
from hub.contracts import load_contract
from hub.envelope import Envelope
from hub.errors import HubError, InvalidMessage, ValidationError
from hub.lastapplied import Sequencer, sequence_log
from hub.model import Dossier, ProgressStep, StatusChange, parse_event_data
from hub.privacy import mask_identity
from hub.recorder import report_skip

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
        settings = ctx.settings
        raw = ctx.config or load_config(settings.mappings_dir, NAME)
        self.config = NpspConfig.from_mapping(raw)
        self.mapping = load_mapping(settings.mappings_dir / NAME)
        self.contract = load_contract(settings.schemas_dir / NAME)
        self.client = NpspClient(self.config, self.mapping, self.contract)
        self.store = ctx.store
        self.sequencer = Sequencer(sequence_log(ctx.store), NAME)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, event: Event) -> list[Envelope]:
        env = event.envelope
        if env.type not in HANDLED:
            raise InvalidMessage(
                f"the portal's worker handles {list(HANDLED)}, not {env.type!r}; check the "
                "bindings of its work queue",
                code="client.unsupported_type", field="type",
            )
        try:
            body = parse_event_data(env.type, env.data)
        except HubError as exc:
            raise InvalidMessage(
                f"the {env.type} body is not valid: {exc.message}", code=exc.code,
                field=exc.field,
            ) from None
        try:
            if isinstance(body, Dossier):
                await self._submitted(event, env, body)
            elif isinstance(body, StatusChange):
                await self._status_changed(event, env, body)
            elif isinstance(body, ProgressStep):
                await self._progress(body)
        except ValidationError as exc:
            # A request that breaks the portal's contract was built from a valid canonical
            # body: the mapping and the schema disagree. Retrying cannot help.
            raise InvalidMessage(
                f"the request for {env.subject} breaks schemas/npsp: {exc.message}; check "
                "mappings/npsp against the schema",
                code="client.mapping_failed", field=exc.field,
            ) from None
        # The portal's answers cause no further events.
        return []

    async def _submitted(self, event: Event, env: Envelope, dossier: Dossier) -> None:
        if env.source in self.config.portal_sources:
            log.info("dossier %s was submitted at the portal (%s): not synced back",
                     dossier.code, env.source)
            return
        if await self._superseded(env, dossier.code):
            return
        record = dossier_to_record(dossier, self.mapping)
        outcome = await self.client.upsert_dossier(record, agency=dossier.agency_code)
        await self._applied(event, dossier.code, env.sequence)
        log.info("dossier %s %s on the portal (applicant %s, status %d)", dossier.code, outcome,
                 mask_identity(dossier.applicant.identity_number), dossier.status)

    async def _status_changed(self, event: Event, env: Envelope, change: StatusChange) -> None:
        code = change.dossier_code
        if await self._superseded(env, code, status=int(change.status)):
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
        await self._applied(event, code, env.sequence)
        log.info("dossier %s: status %d sent to the portal", code, change.status)

    async def _applied(self, event: Event, code: str, sequence: int | None) -> None:
        """The portal has the event: its sequence is recorded through the consumer
        (``Event.record``), so a store that refuses the write makes the consumer retry the
        write, never the portal call."""
        if sequence is None:
            return
        if self.store is not None:
            event.record(lambda tx: tx.set_sequence(NAME, code, sequence))
        else:
            await self.sequencer.applied(code, sequence)

    async def _superseded(self, env: Envelope, code: str, **detail: Any) -> bool:
        """True when the portal already has this event or a later one of the dossier: the
        event is then not sent, and the skip is reported."""
        last = await self.sequencer.superseded_by(code, env.sequence)
        if last is None:
            return False
        assert env.sequence is not None
        if env.sequence == last:
            reason = "already_applied"
            note = (f"sequence {env.sequence} was already applied to the portal (a redelivery "
                    "of an event sent before)")
        else:
            reason = "stale_sequence"
            note = (f"sequence {env.sequence} is older than sequence {last}, already applied "
                    "to the portal: sending it would move the portal's record backwards")
        await asyncio.to_thread(report_skip, self.store, NAME, env, reason, note,
                                sequence=env.sequence, last_applied=last, **detail)
        return True

    async def _progress(self, step: ProgressStep) -> None:
        record = progress_to_record(step, self.mapping)
        await self.client.report_progress([record], agency=_agency_of(step.dossier_code))
        log.info("dossier %s: progress step sent to the portal", step.dossier_code)


def make_handler(ctx: AdapterContext) -> NpspHandler:
    return NpspHandler(ctx)
