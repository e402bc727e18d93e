"""The intake service: what both entry points (REST and SOAP) call once they have authenticated
the caller and verified its signature.

``accept`` validates the event body against the canonical model, checks the client's access
list, builds the canonical envelope, signs it with the hub's key, and writes in ONE store
transaction the outbox row, the message-log row (direction ``in``) and the dossier's timeline
entry. Only then does it return, and only then does the entry point answer: accepted means kept.

How, fast: the caller's thread validates, and drafts and signs the envelope for the dossier
state this process last saw (``_Draft``); one writer thread per process gathers the waiting
jobs (group commit, with a short commit delay while requests come concurrently), converts
their rows, and only then takes the write lock for one transaction of a dozen statements,
whatever the batch's size. Inside it each job is checked against the locked state (idempotency
key, transition, sequence); a job whose dossier moved meanwhile is drafted and signed again.

Provenance: the envelope's ``source`` is the upstream system that sent it, and the hub signs
it as a relay (``Signer(relay=True)``; receivers accept relayed signatures from the hub's key
only, see hub.signing.verifier). The extension ``upstream`` repeats the origin, also on events
an adapter made of a system's call (callbacks), whose source is the hub. The upstream's own
proof (its JWS, or its XML-DSig digest) travels in header ``lt-upstream-proof`` for
non-repudiation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from hub import codes
from hub import headers as h
from hub.api import intake_tables as tables
from hub.api.auth import ClientIdentity, authorize_agency, authorize_type
from hub.api.errors import IdempotencyConflict, StoreUnavailable
from hub.broker.messages import Outgoing
from hub.envelope import Envelope, check_source, check_type
from hub.errors import ConfigError, HubError, InvalidMessage, ValidationError
from hub.model import (
    Dossier,
    Status,
    StatusChange,
    check_transition,
    parse_event_data,
)
from hub.settings import Settings
from hub.signing.replay import DuplicateMessage
from hub.store import Store, TimelineEvent, UnitOfWork, sha256_hex
from hub.store.bulk import Prepared

log = logging.getLogger(__name__)

UPSTREAM_PROOF = h.UPSTREAM_PROOF
# Envelope extension naming the system that sent the event to the hub.
UPSTREAM_EXTENSION = "upstream"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Idempotency rows of a signed request's content (signed_request_key), beside the client's.
SIGNED_KEY_PREFIX = "signed:"
_MAX_KEY = 255
# Dossier states remembered per process to draft events with (see _Draft).
_SEEN_MAX = 100_000
# Fields copied into a timeline entry's summary; personal data (the applicant, the payer) never.
_SUMMARY_FIELDS = (
    "status", "previous_status", "procedure_code", "agency_code", "channel", "officer",
    "department", "content", "reference", "transaction_id", "paid", "waybill", "state",
    "direction",
)


class EnvelopeSigner(Protocol):
    system_id: str

    def sign(self, body: bytes, env: Envelope) -> str: ...


class RequestVerifier(Protocol):
    """``hub.signing.Verifier``."""

    def verify(self, body: bytes, token: str | bytes | None, env: Envelope, *,
               attempt: int = 0, header_name: str = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the hub needs to know of an event body to route and record it."""

    dossier_code: str | None
    agency: str | None
    procedure: str | None
    at: datetime | None
    summary: dict[str, Any]


def describe(model: BaseModel, payload: Mapping[str, Any] | None = None) -> EventFacts:
    """Dossier, agency, procedure and time of any canonical event body. ``payload`` is the
    model's JSON form (``model_dump(mode="json")``) when the caller has it already."""
    data = model.model_dump(mode="json") if payload is None else payload
    # Fields are read from the JSON form (enums as numbers, decimals as strings, what the
    # summary keeps) and from the model's __dict__: a missing attribute of a pydantic model is
    # an exception caught, ten times per request.
    fields = model.__dict__
    dossier = data.get("code") if isinstance(model, Dossier) else data.get("dossier_code")
    agency = data.get("agency_code")
    if agency is None and dossier is not None:
        agency = codes.parse_dossier(dossier).agency.value
    at = fields.get("at") or fields.get("submitted_at")
    summary = {name: data[name] for name in _SUMMARY_FIELDS if data.get(name) is not None}
    return EventFacts(dossier, agency, data.get("procedure_code"), at, summary)


def request_digest(event_type: str, data: Any) -> str:
    """Digest of a request's meaning (type and body, key order ignored): a resubmission under
    the same Idempotency-Key must have the same digest."""
    text = json.dumps([event_type, data], sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise ValidationError(
            f"must be 1 to {_MAX_KEY} printable characters (a UUID is a good choice), got "
            f"{len(key)} characters", field=IDEMPOTENCY_HEADER)
    return key


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A REST request whose signature verified: its request id (the JWS ``lt-id``) and the key
    of what it signed (``signed_request_key``)."""

    id: str
    replay_key: str


def signed_request_key(token: str, body: bytes) -> str:
    """The idempotency key of a signed request's signed content: its JWS protected header as
    sent (the signing input takes it as it is, so no other spelling verifies) and the digest
    of the body it covers.

    Not the ``Idempotency-Key`` header, which is outside the signature: anyone holding a
    captured request could send it again under new keys, one message each. Nor the signature
    text, which can be respelled without breaking it (an ECDSA signature's s turned into
    n - s verifies as well), and differs each time the same input is signed (ECDSA and PSS
    are randomised): the signed content is one."""
    protected = token.split(".", 1)[0].encode()
    digest = hashlib.sha256(protected + b"." + hashlib.sha256(body).digest()).hexdigest()
    return f"{SIGNED_KEY_PREFIX}{digest}"


def peek_request_id(token: str | None) -> str:
    """The ``lt-id`` of a detached JWS, read before verification (verification then checks it
    against the signed header). Empty when unreadable: the verifier explains why."""
    if not token:
        return ""
    try:
        protected = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    except (ValueError, UnicodeDecodeError):
        return ""
    value = header.get("lt-id") if isinstance(header, dict) else None
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class _Request:
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
class _Draft:
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


# How the writer answers a job: with the outcome (Accepted, or the error refusing it), once
# the batch is committed. Called from the writer thread; it must not raise.
Reply = Callable[[Accepted | BaseException], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Call:
    """Work the writer thread runs between batches (``_Writer.call``)."""

    work: Callable[[], Any]
    future: Future[Any]

    def run(self) -> None:
        try:
            self.future.set_result(self.work())
        except BaseException as exc:  # handed to the caller; the writer goes on
            self.future.set_exception(exc)


@dataclass(slots=True)
class _Job:
    """One accepted-to-be event waiting for the writer."""

    request: _Request
    draft: _Draft
    reply: Reply


@dataclass(slots=True)
class _Relayed:
    """An envelope of a system's call (``accept_envelopes``) as it will be kept: ``env`` and
    ``out`` drafted for the guessed sequence, drafted again in the lock when it differs."""

    original: Envelope
    code: str | None  # the dossier, when the subject is a dossier code
    status: int | None  # the status it reports
    model: BaseModel | None  # its body as a canonical event, when it is one
    env: Envelope
    out: Outgoing
    digest: str  # of the original, for its idempotency key


@dataclass(frozen=True, slots=True)
class _Rows:
    """The outbox and timeline rows of a batch's drafts, converted for the store before the
    write lock is taken (see hub.store.bulk): one outbox row per job, one timeline row per job
    of a dossier (``timeline_of``: job index -> row)."""

    outbox: Prepared
    timeline: Prepared
    timeline_of: dict[int, int]
    claimed_until: datetime | None  # of the outbox rows, leased to this process's relay


@dataclass(slots=True)
class _Kept:
    """What a batch wrote, handed to the writer to report after the commit; ``handed``: the
    outbox rows written leased to this process's relay (id, message), to give it."""

    outcomes: list[Accepted | HubError]
    states: dict[str, tables.DossierState]
    handed: list[Handed]


# An outbox row kept leased to this process's relay: its id, the message, and when the lease
# ends (see IntakeService.relay_lease).
Handed = tuple[int, Outgoing, datetime]


class _Writer:
    """Group commit: one thread per process takes every job waiting and keeps them in ONE
    transaction, so a commit's fsync is paid once per batch instead of once per request. Each
    job's checks run inside the transaction before it writes anything; a job refused there
    (idempotency conflict, impossible transition) writes nothing and the others go on. A
    failure of the transaction itself fails every job of the batch (the clients retry)."""

    def __init__(self, store: Store,
                 rows: Callable[[list[_Job]], _Rows],
                 keep: Callable[[UnitOfWork, list[_Job], _Rows], _Kept],
                 on_commit: Callable[[_Kept], None], max_batch: int, linger: float,
                 write_lock: AbstractContextManager[Any]) -> None:
        self._store = store
        self._write_lock = write_lock
        self._rows = rows
        self._keep = keep
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._linger = linger
        self._full = threading.Event()
        self._queue: queue.SimpleQueue[_Job | _Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: _Job) -> None:
        self._started()
        self._queue.put(job)
        if self._queue.qsize() >= self._max_batch:
            self._full.set()

    def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a transaction of its own) in the writer thread, between two batches,
        and return what it returns: what it commits and hands to the relay is then ordered
        with the batches, as the intake's own events of the same dossier are."""
        self._started()
        future: Future[Any] = Future()
        self._queue.put(_Call(work, future))
        self._full.set()  # no commit delay for the batch before it
        result: T = future.result()
        return result

    def _started(self) -> None:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the hub is shutting down; retry with the same "
                                       "Idempotency-Key")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="intake writer",
                                                daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            self._full.set()
            thread.join()

    def _run(self) -> None:
        concurrent = False
        while True:
            job = self._queue.get()
            if job is None:
                return
            if isinstance(job, _Call):
                job.run()
                continue
            if concurrent:
                # Commit delay: while requests come concurrently (the last batch had several),
                # wait a little for more, so that a batch's fixed cost (the lock, a dozen
                # statements, the commit's fsync) is shared by more of them. Woken early by a
                # full queue; not by every job, which would cost a thread switch each. A lone
                # request waits for nothing.
                self._full.wait(self._linger)
                self._full.clear()
            batch = [job]
            after: _Call | None = None
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                if isinstance(more, _Call):
                    after = more  # after the jobs submitted before it, before the later ones
                    break
                batch.append(more)
            concurrent = len(batch) > 1
            self._write_isolating(batch)
            if after is not None:
                after.run()

    def _write_isolating(self, batch: list[_Job]) -> None:
        """``_write``, and when the batch fails for a reason other than the store being
        unavailable (a value one job brought that the database or a conversion refuses), each
        job again on its own: nothing of the failed batch was kept, and one request must not
        fail the others that happened to share its commit."""
        try:
            self._write(batch)
        except HubError as exc:  # the store is unavailable: every job of the batch failed
            for pending in batch:
                _answer(pending, exc)
        except Exception:  # the writer must outlive any job
            if len(batch) > 1:
                for job in batch:
                    self._write_isolating([job])
                return
            log.exception("intake writer: a request could not be kept")
            _answer(batch[0], HubError(
                "the hub could not keep this request (its error is logged); nothing of it "
                "was kept; report it to the hub's operators"))

    def _write(self, batch: list[_Job]) -> None:
        # What needs no lock is done before taking it: every writer of the database waits
        # while it is held.
        rows = self._rows(batch)
        for attempt in (1, 2):
            try:
                with self._write_lock, self._store.begin() as tx:
                    kept = self._keep(tx, batch, rows)
                break
            except IntegrityError:
                # Another process committed one of these Idempotency-Keys meanwhile: the second
                # attempt finds it and answers as the first time.
                if attempt == 2:
                    raise
        # Committed: only now may anyone hear "accepted", and nothing may stop them hearing it.
        try:
            self._on_commit(kept)
        except Exception:
            log.exception("intake writer: the after-commit hook failed")
        for job, outcome in zip(batch, kept.outcomes, strict=True):
            _answer(job, outcome)


def _answer(job: _Job, outcome: Accepted | BaseException) -> None:
    try:
        job.reply(outcome)
    except Exception:  # a caller's failure must not stop the writer
        log.exception("intake writer: answering a job failed")


def _reply_to(future: Future[Accepted]) -> Reply:
    def reply(outcome: Accepted | BaseException) -> None:
        if future.done():  # never let a settled future stop the writer
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    return reply


def _reply_in(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Accepted]) -> Reply:
    def settle(outcome: Accepted | BaseException) -> None:
        if future.done():  # the request gave up (cancelled, timed out): its job was kept
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def reply(outcome: Accepted | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    return reply


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
        # SQLite has one writer at a time, and a connection that finds the database locked
        # sleeps (1, 2, 5 ... 100 ms) before trying again, which ruins the tail latency:
        # the writers of the entry points (this service, the outbox relay, in every worker
        # process) take turns on a lock file instead, which wakes the next one at once.
        self.write_lock: AbstractContextManager[Any] = (
            SqliteWriteLock(_lock_file(store)) if store.dialect == "sqlite"
            else contextlib.nullcontext())
        # The dossiers' states as this process last kept them: the guess drafts are made for
        # (the writer checks it). Written by the writer thread, read by callers; a dict's get
        # and set are atomic.
        self._seen: dict[str, tables.DossierState] = {}
        self._writer = _Writer(store, self._batch_rows, self._keep_batch, self._committed,
                               max_batch, settings.intake_commit_delay, self.write_lock)

    def _committed(self, kept: _Kept) -> None:
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
                                          upstream_proof, replay_key, _reply_to(future)))
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
                                          upstream_proof, replay_key, _reply_in(loop, future)))
        return await future

    def _prepare(self, client: ClientIdentity, event_type: str, data: dict[str, Any],
                 idempotency_key: str | None, upstream_proof: str | None,
                 replay_key: str | None, reply: Reply) -> _Job:
        """Everything that needs no lock, in the caller's thread: checks, validation, and the
        draft of the signed message."""
        key = check_idempotency_key(idempotency_key)
        # The type before validation: a client that may not send it learns nothing more.
        authorize_type(client, event_type)
        model = parse_event_data(event_type, data)
        payload = model.model_dump(mode="json")
        facts = describe(model, payload)
        authorize_agency(client, facts.agency)
        _authorize_dossier(client, model, facts)
        headers = {UPSTREAM_PROOF: upstream_proof} if upstream_proof else {}
        request = _Request(client.system_id, event_type, model, payload, facts, headers, key,
                           request_digest(event_type, data), str(uuid.uuid4()), replay_key)
        code = facts.dossier_code
        seen = self._seen.get(code) if code is not None else None
        return _Job(request, self._draft(request, *_next_of(facts, seen)), reply)

    def _draft(self, request: _Request, sequence: int | None, procedure: str | None) -> _Draft:
        # The envelope names its true origin; the hub signs it as a relay, having verified the
        # upstream's own proof (kept in lt-upstream-proof), so adapters can tell who sent it.
        env = Envelope(
            id=request.message_id, source=check_source(request.client),
            type=check_type(request.event_type),
            subject=request.facts.dossier_code or request.message_id, time=datetime.now(UTC),
            data=request.payload, agency=request.facts.agency, procedure=procedure,
            sequence=sequence, extensions={UPSTREAM_EXTENSION: request.client},
        )
        out = Outgoing.signed(env, self.signer, self.exchange)
        out.headers.update(request.headers)
        return _Draft(sequence, procedure, env, out, sha256_hex(out.body))

    def _batch_rows(self, jobs: list[_Job]) -> _Rows:
        """In the writer thread, before the write lock: the rows of the drafts."""
        now = datetime.now(UTC)
        events: list[TimelineEvent] = []
        timeline_of: dict[int, int] = {}
        for i, job in enumerate(jobs):
            event = _timeline_event(job.request, job.draft)
            if event is not None:
                timeline_of[i] = len(events)
                events.append(event)
        lease = self.relay_lease()
        claimed_until = now + timedelta(seconds=lease) if lease else None
        return _Rows(self.store.prepare_outbox([job.draft.out for job in jobs], at=now,
                                               claimed_until=claimed_until),
                     self.store.prepare_timeline(events), timeline_of, claimed_until)

    def _keep_batch(self, tx: UnitOfWork, jobs: list[_Job], rows: _Rows) -> _Kept:
        """Inside the writer's transaction. The batch's idempotency keys and dossier states
        are read in a few queries; each job is checked against them (and against the jobs
        before it) before it writes anything, so a refused job leaves no trace. What the
        accepted jobs write goes in with one statement per table."""
        conn = tx.connection
        requests = [job.request for job in jobs]
        known = tables.recall_many(conn, [(r.client, key) for r in requests
                                          for key in (r.key, r.replay_key) if key is not None])
        codes = sorted({r.facts.dossier_code for r in requests
                        if r.facts.dossier_code is not None})
        states = tables.lock_states(conn, codes)
        changed: dict[str, tables.DossierState] = {}
        new_keys: dict[tuple[str, str], tables.Remembered] = {}
        outcomes: list[Accepted | HubError] = []
        messages: list[Prepared] = []
        kept_out: list[Outgoing] = []
        timeline: list[Prepared] = []
        now = datetime.now(UTC)  # of every log row of the batch (committed together)
        for i, job in enumerate(jobs):
            request = job.request
            try:
                kept = self._keep_one(job, known, new_keys, states, changed)
            except HubError as exc:
                outcomes.append(exc)
                continue
            if isinstance(kept, Accepted):  # answered before
                outcomes.append(kept)
                continue
            outcomes.append(Accepted(request.message_id, duplicate=False))
            tx.log("in", kept.env, kept.body_sha256, peer=request.client, at=now)
            kept_out.append(kept.out)
            if kept is job.draft:
                messages.append(rows.outbox.pick((i,)))
                if i in rows.timeline_of:
                    timeline.append(rows.timeline.pick((rows.timeline_of[i],)))
            else:  # drafted again, in the lock: rare
                messages.append(self.store.prepare_outbox([kept.out], at=now,
                                                          claimed_until=rows.claimed_until))
                event = _timeline_event(request, kept)
                if event is not None:
                    timeline.append(self.store.prepare_timeline([event]))
        tables.remember_many(conn, new_keys)
        tables.save_states(conn, changed)
        # Rows lock_states made for new dossiers whose every job was refused: a refusal leaves
        # no trace (their sequence is still 0, and save_states did not touch them).
        tables.forget_unseen(conn, [code for code, state in states.items()
                                    if state.sequence == 0 and code not in changed])
        handed: list[Handed] = []
        if rows.claimed_until is None:
            tx.outbox_add_many(self.store.join_outbox(messages))
        elif messages:
            ids = tx.outbox_add_claimed(self.store.join_outbox(messages))
            handed = [(ids[out.message_id], out, rows.claimed_until) for out in kept_out]
        tx.timeline_add_many(self.store.join_timeline(timeline))
        return _Kept(outcomes, changed, handed)

    def _keep_one(self, job: _Job,
                  known: dict[tuple[str, str], tables.Remembered],
                  new_keys: dict[tuple[str, str], tables.Remembered],
                  states: dict[str, tables.DossierState],
                  changed: dict[str, tables.DossierState]) -> Accepted | _Draft:
        """The answer given before (a resubmission), or the draft to keep; a HubError when
        the request is refused."""
        request = job.request
        client = request.client
        replay = request.replay_key
        if replay is not None:
            seen = known.get((client, replay)) or new_keys.get((client, replay))
            if seen is not None:  # this very signed request, whatever its Idempotency-Key
                return _answer_replayed(seen, request.digest)
        if request.key is not None:
            seen = known.get((client, request.key)) or new_keys.get((client, request.key))
            if seen is not None:
                answer = _answer_known(seen, request.digest, request.key)
                if replay is not None:
                    # A resubmission signed anew: its signed content is this message too, or
                    # a copy of it sent under another key would be taken for a new request.
                    new_keys[(client, replay)] = tables.Remembered(seen.message_id,
                                                                   request.digest)
                return answer
        code = request.facts.dossier_code
        state = states.get(code) if code is not None else None
        if state is not None and state.sequence == 0:
            state = None  # a row made just now to lock: the dossier was never seen
        if isinstance(request.model, StatusChange):
            _check_status(request.model, state.status if state else None)
        # Checks passed: from here on the job writes.
        remembered = tables.Remembered(request.message_id, request.digest)
        if request.key is not None:
            new_keys[(client, request.key)] = remembered
        if replay is not None:
            new_keys[(client, replay)] = remembered
        sequence, procedure = _next_of(request.facts, state)
        if code is not None and sequence is not None:
            status = _status_of(request.model)
            states[code] = changed[code] = tables.DossierState(
                sequence, procedure,
                status if status is not None else (state.status if state else None))
        if (job.draft.sequence, job.draft.procedure) == (sequence, procedure):
            return job.draft
        return self._draft(request, sequence, procedure)

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
        # Drafted and signed here, for the dossier states this process last saw; signed again
        # in the writer only when the dossier moved meanwhile.
        drafts: list[_Relayed] = []
        guesses: dict[str, tables.DossierState] = {}
        for original in envelopes:
            code = original.subject if _is_dossier(original.subject) else None
            model = _try_parse(original.type, original.data)
            status = _status_of(model) if model is not None else None
            sequence, procedure = None, original.procedure
            if code is not None:
                seen = guesses.get(code) or self._seen.get(code)
                sequence = (seen.sequence if seen else 0) + 1
                procedure = procedure or (seen.procedure_code if seen else None)
                guesses[code] = tables.DossierState(sequence, procedure, status)
            env = self._relayed(original, peer, sequence, procedure)
            drafts.append(_Relayed(original, code, status, model, env,
                                   Outgoing.signed(env, self.signer, self.exchange),
                                   sha256_hex(original.to_bytes())))
        return self._writer.call(lambda: self._keep_envelopes(peer, drafts))

    def _keep_envelopes(self, peer: str, drafts: list[_Relayed]) -> list[str]:
        """In the writer thread: ``accept_envelopes``' transaction, and what follows its
        commit."""
        ids: list[str] = []
        kept: list[_Relayed] = []
        now = datetime.now(UTC)
        lease = self.relay_lease()
        claimed_until = now + timedelta(seconds=lease) if lease else None
        handed: list[Handed] = []
        with self.write_lock, self.store.begin() as tx:
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
                    draft.env = self._relayed(draft.original, peer, state.sequence,
                                              state.procedure_code)
                    draft.out = Outgoing.signed(draft.env, self.signer, self.exchange)
            outs = [draft.out for draft in kept]
            if outs and claimed_until is not None:
                # Leased to this process's relay and handed to it, as the writer's batches
                # are, so that it publishes them in the order they were committed.
                until = claimed_until
                row_ids = tx.outbox_add_claimed(self.store.prepare_outbox(
                    outs, at=now, claimed_until=until))
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
        self._saw({d.code: s for d, s in zip(numbered, states, strict=True)
                   if d.code is not None})
        if kept and self.on_commit is not None:
            try:
                self.on_commit(handed)
            except Exception:  # committed: the caller must hear "accepted" all the same
                log.exception("intake: the after-commit hook failed")
        return ids

    def _saw(self, states: dict[str, tables.DossierState]) -> None:
        """Remember dossier states committed outside the writer (it may have committed a later
        state of the same dossier meanwhile: a guess never goes back)."""
        for code, state in states.items():
            seen = self._seen.get(code)
            if seen is None or seen.sequence < state.sequence:
                self._seen[code] = state

    def _relayed(self, env: Envelope, upstream: str, sequence: int | None,
                 procedure: str | None) -> Envelope:
        extensions = {**env.extensions, UPSTREAM_EXTENSION: env.source or upstream}
        return replace(env, source=self.signer.system_id, extensions=extensions,
                       sequence=sequence, procedure=procedure)


class SqliteWriteLock:
    """Mutual exclusion of SQLite writers across threads (a lock) and processes (``flock`` on
    a file beside the database)."""

    def __init__(self, path: Path | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


def _lock_file(store: Store) -> Path | None:
    database = store.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # one process only
    return Path(database).with_name(Path(database).name + ".write.lock")


def _authorize_dossier(client: ClientIdentity, model: BaseModel, facts: EventFacts) -> None:
    """The client must also act for the agency of the dossier's own code, whatever agency the
    body names: a client of H56 must not create or touch ``000.00.00.H57-…`` (its timeline,
    its status) by writing H56 in ``agency_code``."""
    if facts.dossier_code is None:
        return
    agency = codes.parse_dossier(facts.dossier_code).agency.value
    if agency != facts.agency:
        authorize_agency(client, agency,
                         field="code" if isinstance(model, Dossier) else "dossier_code")


def _check_status(model: StatusChange, last: int | None) -> None:
    """The reported status must be able to follow the last one the hub knows of (or the
    previous status the client names, for a dossier the hub has not seen)."""
    if last is not None:
        check_transition(Status(last), model.status, "status")
    elif model.previous_status is not None:
        check_transition(model.previous_status, model.status, "status")


def _timeline_event(request: _Request, draft: _Draft) -> TimelineEvent | None:
    code = request.facts.dossier_code
    if code is None:
        return None
    return TimelineEvent(code, request.event_type, request.message_id,
                         request.facts.at or draft.env.time, request.client,
                         request.facts.summary)


def _next_of(facts: EventFacts, state: tables.DossierState | None) -> tuple[int | None,
                                                                           str | None]:
    """The sequence and procedure of a dossier's next event after ``state`` (None: the dossier
    was never seen); no sequence for an event of no dossier."""
    procedure = facts.procedure or (state.procedure_code if state else None)
    if facts.dossier_code is None:
        return None, procedure
    return (state.sequence if state else 0) + 1, procedure


def _status_of(model: BaseModel) -> int | None:
    """The dossier status an event sets, remembered for the transition checks."""
    if isinstance(model, StatusChange | Dossier):
        return int(model.status)
    return None


def _answer_known(known: tables.Remembered, digest: str, key: str) -> Accepted:
    if known.request_sha256 != digest:
        raise IdempotencyConflict(
            f"the Idempotency-Key {key!r:.60} was used before for a different request "
            f"(message {known.message_id}); use a new key for a new request",
            field=IDEMPOTENCY_HEADER)
    return Accepted(known.message_id, duplicate=True)


def _answer_replayed(known: tables.Remembered, digest: str) -> Accepted:
    if known.request_sha256 != digest:
        # The same signed bytes for another request: the path (a dossier code the body leaves
        # out) is not signed, and the signature counts once.
        raise IdempotencyConflict(
            f"this signed request was already kept, as message {known.message_id}, for "
            "another path; a signature counts for one request: sign each request anew "
            "(a new lt-id)", code="client.replayed_id", field="X-Signature")
    return Accepted(known.message_id, duplicate=True)


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
