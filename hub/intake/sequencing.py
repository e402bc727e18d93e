"""One sequence per dossier for the events adapters make.

Every event the hub accepts for a dossier takes the next number of that dossier's one
sequence (the intake's ``intake_dossiers`` row, see hub.intake.tables): REST and SOAP
requests in the intake's writer, systems' callbacks in ``IntakeService.accept_envelopes``, and
here the events an adapter's handler returns (a payment initiated, a citizen verified) and
those its commands publish (a payment reconciled, postal tracking polled). A destination that
applies a dossier's events in order (the portal) then compares numbers of one space: a
callback's update can no longer make every later REST update look old.

An event made again takes the number it took the first time (``event_sequences``, by message
id): a handler that runs again after a failure, or returns a message it keeps (the payment
ledger), makes the same message, and its receivers must get the same bytes, or they would
take the second for a replay of the first id with another body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, insert, select

from hub import codes
from hub.envelope import Envelope
from hub.errors import HubError
from hub.intake import tables as intake_tables
from hub.model import Dossier, StatusChange, parse_event_data
from hub.store.tables import event_sequences


class Transaction(Protocol):
    """What numbering needs of ``hub.store.UnitOfWork``."""

    @property
    def connection(self) -> Connection: ...


def number(tx: Transaction, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """``envelopes`` with their dossiers' next sequence numbers (in the order given; the
    dossiers' rows stay locked until ``tx`` commits), or the number each took before. An
    envelope whose subject is no dossier code is returned as it is."""
    conn = tx.connection
    wanted = [env for env in envelopes if _is_dossier(env.subject)]
    if not wanted:
        return list(envelopes)
    known = _recall(conn, [env.id for env in wanted])
    fresh: dict[str, Envelope] = {}
    for env in wanted:
        if env.id not in known:
            fresh.setdefault(env.id, env)
    todo = list(fresh.values())
    states = intake_tables.advance(conn, [(env.subject, env.procedure, _status_of(env))
                                          for env in todo])
    assigned = {env.id: state.sequence for env, state in zip(todo, states, strict=True)}
    if assigned:
        now = datetime.now(UTC)
        conn.execute(insert(event_sequences), [
            {"message_id": env.id, "dossier_code": env.subject,
             "sequence": assigned[env.id], "assigned_at": now} for env in todo])
    known.update(assigned)
    return [env if env.id not in known or env.sequence == known[env.id]
            else replace(env, sequence=known[env.id]) for env in envelopes]


def _recall(conn: Connection, message_ids: list[str]) -> dict[str, int]:
    rows = conn.execute(select(event_sequences.c.message_id, event_sequences.c.sequence)
                        .where(event_sequences.c.message_id.in_(message_ids)))
    return {str(message_id): int(sequence) for message_id, sequence in rows}


def _is_dossier(subject: str) -> bool:
    try:
        codes.parse_dossier(subject)
    except HubError:
        return False
    return True


def _status_of(env: Envelope) -> int | None:
    """The dossier status an event reports, which the intake's transition checks follow."""
    try:
        body = parse_event_data(env.type, env.data)
    except HubError:
        return None
    return int(body.status) if isinstance(body, StatusChange | Dossier) else None
