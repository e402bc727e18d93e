"""The intake service: what every door (the REST and SOAP routes, the callbacks of external
systems) calls once it has authenticated the caller and, for REST and SOAP, verified its
signature.

``accept`` validates the event body against the canonical model, checks the client's access
list (``access``), builds the canonical envelope, signs it with the hub's key (``drafts``), and
writes in ONE store transaction the idempotency rows (``idempotency``), the dossier's next
number (``tables``), the outbox row, the message-log row (direction ``in``) and the dossier's
timeline entry (``batch``). Only then does it return, and only then does the door answer:
accepted means kept. The outbox relay (hub.outbox) then publishes the row with confirms.

How, fast: the caller's thread validates, and drafts and signs the envelope for the dossier
state this process last saw (``drafts.Draft``); one writer thread per process gathers the
waiting jobs (group commit, ``writer``), converts their rows, and only then takes the write
lock for one transaction of a dozen statements, whatever the batch's size. Inside it each job
is checked against the locked state (idempotency key, transition, sequence); a job whose
dossier moved meanwhile is drafted and signed again.

``accept_envelopes`` keeps what a system's callback made (``envelopes``) in a transaction of
its own, run by the same writer thread between two batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hub.broker.messages import Outgoing
from hub.envelope import Envelope
from hub.errors import ConfigError, InvalidMessage
from hub.intake import batch, drafts, tables
from hub.intake.access import ClientIdentity, authorize_agency, authorize_dossier, authorize_type
from hub.intake.drafts import UPSTREAM_PROOF, Draft, EnvelopeSigner, Relayed, Request
from hub.intake.envelopes import draft_envelopes, keep_envelopes
from hub.intake.facts import describe
from hub.intake.idempotency import (
    SignedRequest,
    check_idempotency_key,
    peek_request_id,
    request_digest,
    signed_request_key,
)
from hub.intake.jobs import Accepted, Handed, Job, Kept, Reply
from hub.intake.writer import Writer, reply_in, reply_to
from hub.model import parse_event_data
from hub.settings import Settings
from hub.signing.replay import DuplicateMessage
from hub.store import Store

log = logging.getLogger(__name__)

# Dossier states remembered per process to draft events with (see drafts.Draft).
_SEEN_MAX = 100_000


class RequestVerifier(Protocol):
    """``hub.signing.Verifier``."""

    def verify(self, body: bytes, token: str | bytes | None, env: Envelope, *,
               attempt: int = 0, header_name: str = ...) -> Any: ...


class IntakeService:
    def __init__(
        self,
        store: Store,
        signer: EnvelopeSigner,
        settings: Settings,
        trust_verifier: RequestVerifier | None = None,
        *,
        on_commit: Callable[[Sequence[Handed]], None] | None = None,
        max_batch: int = 256,
    ) -> None:
        self.store = store
        self.signer = signer
        self.settings = settings
        self.verifier = trust_verifier
        self.exchange = f"{settings.name_prefix}.events"
        # Called after each commit that added outbox rows (wakes the relay), with the rows
        # written leased to this process's relay.
        self.on_commit = on_commit
        # How long (seconds) the rows a batch writes are leased to this process's relay, which
        # is then handed them after the commit instead of claiming them back from the store:
        # one update of every row (its body included) and a read of it spared. None: rows are
        # written unleased (SQLite, whose one relay reads them without leases; a relay that
        # cannot reach the broker). Read for each batch.
        self.relay_lease: Callable[[], float | None] = lambda: None
        # The dossiers' states as this process last kept them: the guess drafts are made for
        # (the writer checks it). Written by the writer thread, read by callers; a dict's get
        # and set are atomic.
        self._seen: dict[str, tables.DossierState] = {}
        self._writer = Writer(
            store, lambda jobs: batch.rows_of(self.store, jobs, self.relay_lease()),
            lambda tx, jobs, rows: batch.keep_batch(tx, self.store, jobs, rows, self._draft),
            self._committed, max_batch, settings.intake_commit_delay)

    def _committed(self, kept: Kept) -> None:
        seen = self._seen
        if len(seen) + len(kept.states) > _SEEN_MAX:
            # Forget the oldest (dicts keep insertion order); a forgotten dossier's next event
            # is only drafted twice.
            for code in list(itertools.islice(seen, len(seen) // 4 + len(kept.states))):
                seen.pop(code, None)
        seen.update(kept.states)
        if self.on_commit is not None and any(
                isinstance(o, Accepted) and not o.duplicate for o in kept.outcomes):
            self.on_commit(kept.handed)

    def observe_stage(self, observe: Callable[[str, float], None]) -> None:
        """Tell ``observe`` each batch's write and commit times (hub.api.metrics)."""
        self._writer.observe = observe

    def close(self) -> None:
        """Finish the jobs already submitted and stop the writer thread."""
        self._writer.close()

    # -- upstream signatures (REST) -------------------------------------------------------

    def verify_request(self, client: ClientIdentity, event_type: str, body: bytes,
                       token: str | None, subject: str = "-", *,
                       header_name: str) -> SignedRequest:
        """Verify the detached JWS an upstream made over the exact request body, with the
        envelope it describes (lt-id = its request id, lt-type = ``event_type``, lt-src = the
        client). Returns the request id and the key of its signed content. An exact resend
        passes: the caller hands ``accept`` the replay key, which answers it as the first
        time, whatever Idempotency-Key it comes with. ``header_name`` is the request header
        the token came in, which refusals name."""
        if self.verifier is None:
            raise ConfigError("the intake has no verifier; build it with the trust store")
        request_id = peek_request_id(token)
        env = Envelope(id=request_id, source=client.system_id, type=event_type,
                       subject=subject, time=datetime.now(UTC), data=None)
        # An exact resend verifies as authentic and raises DuplicateMessage: answered by the
        # idempotency key.
        with contextlib.suppress(DuplicateMessage):
            self.verifier.verify(body, token, env, header_name=header_name)
        if not request_id:
            raise InvalidMessage("the signature's lt-id is empty; give every request an id "
                                 "(a UUID)", code="client.header_mismatch", field="lt-id")
        assert token  # verified
        return SignedRequest(request_id, signed_request_key(token, body))

    # -- accepting ------------------------------------------------------------------------

    def accept(
        self,
        client: ClientIdentity,
        event_type: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None,
        upstream_proof: str | None,
        replay_key: str | None = None,
    ) -> Accepted:
        """Validate, authorize and keep; returns once the outbox row is committed.

        ``idempotency_key``: the client's key for the request (a resubmission with the same
        body gets the first answer, another body 409). ``replay_key``: the key of what the
        request's signature covers (``SignedRequest.replay_key``): the same signed content is
        answered as the first time whatever ``idempotency_key`` comes with it, and in another
        request (another path) refused. Both are kept, in the store, as long as
        ``lienthong store prune`` lets idempotency rows live (at least the age window)."""
        future: Future[Accepted] = Future()
        self._writer.submit(self._prepare(client, event_type, data, idempotency_key,
                                          upstream_proof, replay_key, reply_to(future)))
        return future.result()

    async def accept_async(
        self,
        client: ClientIdentity,
        event_type: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None,
        upstream_proof: str | None,
        replay_key: str | None = None,
    ) -> Accepted:
        """``accept`` for an event loop: waits for the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Accepted] = loop.create_future()
        # A request that times out cancels only its wait: the job is kept all the same (and
        # found again by its idempotency key), never cancelled halfway.
        self._writer.submit(self._prepare(client, event_type, data, idempotency_key,
                                          upstream_proof, replay_key, reply_in(loop, future)))
        return await future

    def _prepare(self, client: ClientIdentity, event_type: str, data: dict[str, Any],
                 idempotency_key: str | None, upstream_proof: str | None,
                 replay_key: str | None, reply: Reply) -> Job:
        """Everything that needs no lock, in the caller's thread: checks, validation, and the
        draft of the signed message."""
        key = check_idempotency_key(idempotency_key)
        # The type before validation: a client that may not send it learns nothing more.
        authorize_type(client, event_type)
        model = parse_event_data(event_type, data)
        payload = model.model_dump(mode="json")
        facts = describe(model, payload)
        authorize_agency(client, facts.agency)
        authorize_dossier(client, model, facts)
        headers = {UPSTREAM_PROOF: upstream_proof} if upstream_proof else {}
        request = Request(client.system_id, event_type, model, payload, facts, headers, key,
                          request_digest(event_type, data), str(uuid.uuid4()), replay_key)
        code = facts.dossier_code
        seen = self._seen.get(code) if code is not None else None
        return Job(request, self._draft(request, *batch.next_of(facts, seen)), reply)

    def _draft(self, request: Request, sequence: int | None, procedure: str | None) -> Draft:
        return drafts.draft(request, sequence, procedure, self.signer, self.exchange)

    # -- systems' callbacks ----------------------------------------------------------------

    def accept_envelopes(self, peer: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Keep envelopes an adapter made of a system's call (a payment callback, a postal
        webhook, a province's updates), re-sourced to the hub and signed, in one transaction.
        An envelope whose id was already kept (the system called twice) is not kept again.

        The envelopes of a dossier take the next numbers of its one sequence, in the order
        given, from the dossier's intake row, locked as the intake's writer locks it, in the
        transaction that keeps them; a sequence the system set is replaced (its own counter
        belongs in the ``systemsequence`` extension). That transaction runs in the intake's
        writer thread between two of its batches, so it commits, and hands its rows to this
        process's relay, in order with the REST and SOAP events of the same dossier. The
        status a callback reports becomes the dossier's last known status, which the next
        REST status change must follow."""
        prepared = draft_envelopes(peer, envelopes, self._seen.get, self._relayed, self._sign)
        return self._writer.call(lambda: self._keep_envelopes(peer, prepared))

    def _keep_envelopes(self, peer: str, prepared: list[Relayed]) -> list[str]:
        """In the writer thread: ``accept_envelopes``' transaction, and what follows its
        commit."""
        now = datetime.now(UTC)
        lease = self.relay_lease()
        claimed_until = now + timedelta(seconds=lease) if lease else None
        with self.store.begin() as tx:
            kept = keep_envelopes(tx, self.store, peer, prepared, now, claimed_until,
                                  self._relayed, self._sign)
        self._saw(kept.states)
        if kept.kept and self.on_commit is not None:
            try:
                self.on_commit(kept.handed)
            except Exception:  # committed: the caller must hear "accepted" all the same
                log.exception("intake: the after-commit hook failed")
        return kept.ids

    def _saw(self, states: dict[str, tables.DossierState]) -> None:
        """Remember dossier states committed outside the writer (it may have committed a later
        state of the same dossier meanwhile: a guess never goes back)."""
        for code, state in states.items():
            seen = self._seen.get(code)
            if seen is None or seen.sequence < state.sequence:
                self._seen[code] = state

    def _relayed(self, env: Envelope, upstream: str, sequence: int | None,
                 procedure: str | None) -> Envelope:
        return drafts.relayed(env, upstream, sequence, procedure, self.signer.system_id)

    def _sign(self, env: Envelope) -> Outgoing:
        return Outgoing.signed(env, self.signer, self.exchange)
