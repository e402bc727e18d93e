"""What passes between the doors, the intake's writer and the batch it keeps: a job waiting for
the writer, the answer it gets, and what a committed batch hands on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from hub.broker.messages import Outgoing
from hub.errors import HubError
from hub.intake import tables
from hub.intake.drafts import Draft, Request
from hub.store.bulk import Prepared


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    duplicate: bool


# How the writer answers a job: with the outcome (Accepted, or the error refusing it), once
# the batch is committed. Called from the writer thread; it must not raise.
Reply = Callable[[Accepted | BaseException], None]

# An outbox row kept leased to this process's relay: its id, the message, and when the lease
# ends (see IntakeService.relay_lease).
Handed = tuple[int, Outgoing, datetime]


@dataclass(slots=True)
class Job:
    """One accepted-to-be event waiting for the writer."""

    request: Request
    draft: Draft
    reply: Reply


@dataclass(frozen=True, slots=True)
class Rows:
    """The outbox and timeline rows of a batch's drafts, converted for the store before the
    write lock is taken (see hub.store.bulk): one outbox row per job, one timeline row per job
    of a dossier (``timeline_of``: job index -> row)."""

    outbox: Prepared
    timeline: Prepared
    timeline_of: dict[int, int]
    claimed_until: datetime | None  # of the outbox rows, leased to this process's relay


@dataclass(slots=True)
class Kept:
    """What a batch wrote, handed to the writer to report after the commit; ``handed``: the
    outbox rows written leased to this process's relay (id, message), to give it."""

    outcomes: list[Accepted | HubError]
    states: dict[str, tables.DossierState]
    handed: list[Handed]
