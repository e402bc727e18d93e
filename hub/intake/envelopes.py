"""The callbacks' way in: envelopes an adapter made of a system's call (a payment callback, a
postal webhook, a province's updates), kept as the intake keeps its own events.

Each is re-sourced to the hub and signed (``hub.intake.drafts.relayed``), numbered in its
dossier's one sequence from the dossier's intake row (``tables.advance``), and kept with its
outbox, log and timeline rows in one transaction, which the service runs in the intake's
writer thread (``IntakeService.accept_envelopes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from hub import codes
from hub.broker.messages import Outgoing
from hub.envelope import Envelope
from hub.errors import HubError
from hub.intake import tables
from hub.intake.batch import status_of
from hub.intake.drafts import Relayed
from hub.intake.facts import describe
from hub.intake.jobs import Handed
from hub.model import parse_event_data
from hub.store import Store, UnitOfWork, sha256_hex

# An envelope of a system's call re-sourced to the hub: (envelope, upstream, sequence,
# procedure) -> envelope.
Relay = Callable[[Envelope, str, int | None, str | None], Envelope]
# Signs an envelope with the hub's key for the events exchange.
Sign = Callable[[Envelope], Outgoing]


@dataclass(slots=True)
class KeptEnvelopes:
    """What ``keep_envelopes`` wrote: every envelope's id (kept now or before), the drafts
    kept now, the dossiers' states after them, and the outbox rows leased to this process's
    relay."""

    ids: list[str]
    kept: list[Relayed]
    states: dict[str, tables.DossierState]
    handed: list[Handed]


def draft_envelopes(peer: str, envelopes: Sequence[Envelope],
                    seen: Callable[[str], tables.DossierState | None], relay: Relay,
                    sign: Sign) -> list[Relayed]:
    """Drafted and signed in the caller's thread, for the dossier states this process last saw
    (``seen``); signed again in the writer only when the dossier moved meanwhile."""
    drafts: list[Relayed] = []
    guesses: dict[str, tables.DossierState] = {}
    for original in envelopes:
        code = original.subject if _is_dossier(original.subject) else None
        model = _try_parse(original.type, original.data)
        status = status_of(model) if model is not None else None
        sequence, procedure = None, original.procedure
        if code is not None:
            last = guesses.get(code) or seen(code)
            sequence = (last.sequence if last else 0) + 1
            procedure = procedure or (last.procedure_code if last else None)
            guesses[code] = tables.DossierState(sequence, procedure, status)
        env = relay(original, peer, sequence, procedure)
        drafts.append(Relayed(original, code, status, model, env, sign(env),
                              sha256_hex(original.to_bytes())))
    return drafts


def keep_envelopes(tx: UnitOfWork, store: Store, peer: str, drafts: list[Relayed],
                   now: datetime, claimed_until: datetime | None, relay: Relay,
                   sign: Sign) -> KeptEnvelopes:
    """Inside the transaction: an envelope whose id was kept already (the system called twice)
    is not kept again; the others take their dossiers' next numbers, in the order given."""
    ids: list[str] = []
    kept: list[Relayed] = []
    handed: list[Handed] = []
    conn = tx.connection
    for draft in drafts:
        ids.append(draft.original.id)
        if tables.remember(conn, peer, f"envelope:{draft.original.id}",
                           draft.original.id, draft.digest):
            kept.append(draft)
    numbered = [d for d in kept if d.code is not None]
    states = tables.advance(conn, [(d.code, d.original.procedure, d.status)
                                   for d in numbered if d.code is not None])
    for draft, state in zip(numbered, states, strict=True):
        if (draft.env.sequence, draft.env.procedure) != (state.sequence,
                                                         state.procedure_code):
            draft.env = relay(draft.original, peer, state.sequence, state.procedure_code)
            draft.out = sign(draft.env)
    outs = [draft.out for draft in kept]
    if outs and claimed_until is not None:
        # Leased to this process's relay and handed to it, as the writer's batches are, so
        # that it publishes them in the order they were committed.
        until = claimed_until
        row_ids = tx.outbox_add_claimed(store.prepare_outbox(outs, at=now,
                                                             claimed_until=until))
        handed = [(row_ids[out.message_id], out, until) for out in outs]
    elif outs:
        tx.outbox_add_many(outs, at=now)
    for draft in kept:
        env = draft.env
        tx.log("in", env, sha256_hex(draft.out.body), peer=peer, at=now)
        if draft.code is not None:
            summary = describe(draft.model).summary if draft.model is not None else {}
            tx.timeline_add(draft.code, env.type, env.id, env.time, source=peer,
                            summary=summary)
    return KeptEnvelopes(ids, kept, {d.code: s for d, s in zip(numbered, states, strict=True)
                                     if d.code is not None}, handed)


def _is_dossier(subject: str) -> bool:
    try:
        codes.parse_dossier(subject)
    except HubError:
        return False
    return True


def _try_parse(event_type: str, data: Any) -> BaseModel | None:
    try:
        return parse_event_data(event_type, data)
    except HubError:
        return None
