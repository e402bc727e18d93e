"""What an accepted event will be kept as, made before the writer takes the store's write lock.

Provenance: the envelope's ``source`` is the upstream system that sent it, and the hub signs
it as a relay (``Signer(relay=True)``; receivers accept relayed signatures from the hub's key
only, see hub.signing.verifier). The extension ``upstream`` repeats the origin, also on events
an adapter made of a system's call (callbacks), whose source is the hub. The upstream's own
proof (its JWS, or its XML-DSig digest) travels in header ``lt-upstream-proof`` for
non-repudiation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel

from hub import headers as h
from hub.broker.messages import Outgoing
from hub.envelope import Envelope, check_source, check_type
from hub.intake.facts import EventFacts
from hub.store import sha256_hex

UPSTREAM_PROOF = h.UPSTREAM_PROOF
# Envelope extension naming the system that sent the event to the hub.
UPSTREAM_EXTENSION = "upstream"


class EnvelopeSigner(Protocol):
    system_id: str

    def sign(self, body: bytes, env: Envelope) -> str: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One event to keep, validated and authorized."""

    client: str
    event_type: str
    model: BaseModel
    payload: dict[str, Any]
    facts: EventFacts
    headers: dict[str, str]
    key: str | None
    digest: str
    message_id: str
    # The key of the signed content (REST), answered as one request whatever ``key`` is.
    replay_key: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A request as it will be kept if its dossier is where the service last saw it: envelope,
    signed message and body digest, made before the job reaches the writer, so that the writer
    (which holds the store's write lock) neither signs nor serialises. The writer checks the
    sequence and procedure against the dossier's locked row and drafts again when they differ
    (another process moved the dossier meanwhile, or this one never saw it)."""

    sequence: int | None
    procedure: str | None
    env: Envelope
    out: Outgoing
    body_sha256: str


@dataclass(slots=True)
class Relayed:
    """An envelope of a system's call (``accept_envelopes``) as it will be kept: ``env`` and
    ``out`` drafted for the guessed sequence, drafted again in the lock when it differs."""

    original: Envelope
    code: str | None  # the dossier, when the subject is a dossier code
    status: int | None  # the status it reports
    model: BaseModel | None  # its body as a canonical event, when it is one
    env: Envelope
    out: Outgoing
    digest: str  # of the original, for its idempotency key


def draft(request: Request, sequence: int | None, procedure: str | None,
          signer: EnvelopeSigner, exchange: str) -> Draft:
    # The envelope names its true origin; the hub signs it as a relay, having verified the
    # upstream's own proof (kept in lt-upstream-proof), so adapters can tell who sent it.
    env = Envelope(
        id=request.message_id, source=check_source(request.client),
        type=check_type(request.event_type),
        subject=request.facts.dossier_code or request.message_id, time=datetime.now(UTC),
        data=request.payload, agency=request.facts.agency, procedure=procedure,
        sequence=sequence, extensions={UPSTREAM_EXTENSION: request.client},
    )
    out = Outgoing.signed(env, signer, exchange)
    out.headers.update(request.headers)
    return Draft(sequence, procedure, env, out, sha256_hex(out.body))


def relayed(env: Envelope, upstream: str, sequence: int | None, procedure: str | None,
            hub_id: str) -> Envelope:
    """An envelope a system's call made, re-sourced to the hub (``hub_id``) with its origin in
    ``upstream``, numbered in its dossier's sequence."""
    extensions = {**env.extensions, UPSTREAM_EXTENSION: env.source or upstream}
    return replace(env, source=hub_id, extensions=extensions, sequence=sequence,
                   procedure=procedure)
