"""The intake service: what both entry points (REST and SOAP) call once they have authenticated
the caller and verified its signature.

``accept`` validates the event body against the canonical model, checks the client's access
list, builds the canonical envelope, signs it with the hub's key, and writes in ONE store
transaction the outbox row, the message-log row (direction ``in``) and the dossier's timeline
entry. Only then does it return, and only then does the entry point answer: accepted means kept.

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
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from hub import codes
from hub import headers as h
from hub.api import intake_tables as tables
from hub.api.auth import ClientIdentity, authorize_agency, authorize_type
from hub.api.errors import IdempotencyConflict, StoreUnavailable
from hub.broker.messages import Outgoing
from hub.envelope import Envelope
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
from hub.store import OutgoingLike, Store, UnitOfWork, sha256_hex

log = logging.getLogger(__name__)

UPSTREAM_PROOF = h.UPSTREAM_PROOF
# Envelope extension naming the system that sent the event to the hub.
UPSTREAM_EXTENSION = "upstream"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_KEY = 255
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
               attempt: int = 0) -> Any: ...


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


def describe(model: BaseModel) -> EventFacts:
    """Dossier, agency, procedure and time of any canonical event body."""
    dossier = getattr(model, "code", None) if isinstance(model, Dossier) else getattr(
        model, "dossier_code", None)
    agency = getattr(model, "agency_code", None)
    if agency is None and dossier is not None:
        agency = codes.parse_dossier(dossier).agency.value
    at = getattr(model, "at", None) or getattr(model, "submitted_at", None)
    summary: dict[str, Any] = {}
    for name in _SUMMARY_FIELDS:
        value = getattr(model, name, None)
        if value is not None:
            summary[name] = int(value) if isinstance(value, Status) else value
    summary = json.loads(json.dumps(summary, default=str))  # enums, decimals -> JSON
    return EventFacts(dossier, agency, getattr(model, "procedure_code", None), at, summary)


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


@dataclass(slots=True)
class _Job:
    """One accepted-to-be event waiting for the writer."""

    client: str
    event_type: str
    model: BaseModel
    payload: dict[str, Any]
    facts: EventFacts
    headers: dict[str, str]
    key: str | None
    digest: str
    future: Future[Accepted] = field(default_factory=Future)


class _Writer:
    """Group commit: one thread per process takes every job waiting and keeps them in ONE
    transaction, so a commit's fsync is paid once per batch instead of once per request. Each
    job's checks run inside the transaction before it writes anything; a job refused there
    (idempotency conflict, impossible transition) writes nothing and the others go on. A
    failure of the transaction itself fails every job of the batch (the clients retry)."""

    def __init__(self, store: Store,
                 keep: Callable[[UnitOfWork, list[_Job]], list[Accepted | HubError]],
                 on_commit: Callable[[], None] | None, max_batch: int,
                 write_lock: AbstractContextManager[Any]) -> None:
        self._store = store
        self._write_lock = write_lock
        self._keep = keep
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: _Job) -> Future[Accepted]:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the hub is shutting down; retry with the same "
                                       "Idempotency-Key")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="intake writer",
                                                daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            try:
                self._write(batch)
            except HubError as exc:  # the store is unavailable: every job of the batch failed
                for pending in batch:
                    _settle(pending.future, error=exc)
            except Exception:  # the writer must outlive any job
                log.exception("intake writer: a batch failed unexpectedly")
                for pending in batch:
                    _settle(pending.future, error=HubError("the intake writer failed; retry "
                                                           "with the same Idempotency-Key"))

    def _write(self, batch: list[_Job]) -> None:
        for attempt in (1, 2):
            try:
                with self._write_lock, self._store.begin() as tx:
                    outcomes = self._keep(tx, batch)
                break
            except IntegrityError:
                # Another process committed one of these Idempotency-Keys meanwhile: the second
                # attempt finds it and answers as the first time.
                if attempt == 2:
                    raise
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Accepted):
                _settle(job.future, result=outcome)
            else:
                _settle(job.future, error=outcome)
        if self._on_commit is not None and any(
                isinstance(o, Accepted) and not o.duplicate for o in outcomes):
            self._on_commit()


def _settle(future: Future[Accepted], *, result: Accepted | None = None,
            error: BaseException | None = None) -> None:
    # A caller that gave up (timeout) does not cancel the job (accept_async shields it), but
    # never let a settled future stop the writer.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)


class IntakeService:
    def __init__(
        self,
        store: Store,
        signer: EnvelopeSigner,
        settings: Settings,
        trust_verifier: RequestVerifier | None = None,
        *,
        on_commit: Callable[[], None] | None = None,
        max_batch: int = 256,
    ) -> None:
        self.store = store
        self.signer = signer
        self.settings = settings
        self.verifier = trust_verifier
        self.exchange = f"{settings.name_prefix}.events"
        # Called after each commit that added outbox rows (wakes the relay).
        self.on_commit = on_commit
        tables.ensure(store.engine)
        # SQLite has one writer at a time, and a connection that finds the database locked
        # sleeps (1, 2, 5 ... 100 ms) before trying again, which ruins the tail latency:
        # the writers of the entry points (this service, the outbox relay, in every worker
        # process) take turns on a lock file instead, which wakes the next one at once.
        self.write_lock: AbstractContextManager[Any] = (
            SqliteWriteLock(_lock_file(store)) if store.dialect == "sqlite"
            else contextlib.nullcontext())
        self._writer = _Writer(store, self._keep_batch, self._committed, max_batch, self.write_lock)

    def _committed(self) -> None:
        if self.on_commit is not None:
            self.on_commit()

    def close(self) -> None:
        """Finish the jobs already submitted and stop the writer thread."""
        self._writer.close()

    # -- upstream signatures (REST) -------------------------------------------------------

    def verify_request(self, client: ClientIdentity, event_type: str, body: bytes,
                       token: str | None, subject: str = "-") -> str:
        """Verify the detached JWS an upstream made over the exact request body, with the
        envelope it describes (lt-id = its request id, lt-type = ``event_type``, lt-src = the
        client). Returns the request id. An exact resend (same bytes, same token) passes: the
        caller answers it through the idempotency key ``request:<id>``."""
        if self.verifier is None:
            raise ConfigError("the intake has no verifier; build it with the trust store")
        request_id = peek_request_id(token)
        env = Envelope(id=request_id, source=client.system_id, type=event_type,
                       subject=subject, time=datetime.now(UTC), data=None)
        # An exact resend verifies as authentic and raises DuplicateMessage: answered by the
        # idempotency key.
        with contextlib.suppress(DuplicateMessage):
            self.verifier.verify(body, token, env)
        if not request_id:
            raise InvalidMessage("the signature's lt-id is empty; give every request an id "
                                 "(a UUID)", code="client.header_mismatch", field="lt-id")
        return request_id

    # -- accepting ------------------------------------------------------------------------

    def accept(
        self,
        client: ClientIdentity,
        event_type: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None,
        upstream_proof: str | None,
    ) -> Accepted:
        """Validate, authorize and keep; returns once the outbox row is committed."""
        job = self._prepare(client, event_type, data, idempotency_key, upstream_proof)
        return self._writer.submit(job).result()

    async def accept_async(
        self,
        client: ClientIdentity,
        event_type: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None,
        upstream_proof: str | None,
    ) -> Accepted:
        """``accept`` for an event loop: waits for the commit without holding a thread."""
        job = self._prepare(client, event_type, data, idempotency_key, upstream_proof)
        # Shielded: a request that times out leaves its job to finish (kept, and found again
        # by its idempotency key), rather than cancelling it halfway.
        return await asyncio.shield(asyncio.wrap_future(self._writer.submit(job)))

    def _prepare(self, client: ClientIdentity, event_type: str, data: dict[str, Any],
                 idempotency_key: str | None, upstream_proof: str | None) -> _Job:
        key = check_idempotency_key(idempotency_key)
        # The type before validation: a client that may not send it learns nothing more.
        authorize_type(client, event_type)
        model = parse_event_data(event_type, data)
        facts = describe(model)
        authorize_agency(client, facts.agency)
        headers = {UPSTREAM_PROOF: upstream_proof} if upstream_proof else {}
        return _Job(client.system_id, event_type, model, model.model_dump(mode="json"), facts,
                    headers, key, request_digest(event_type, data))

    def _keep_batch(self, tx: UnitOfWork, jobs: list[_Job]) -> list[Accepted | HubError]:
        """Inside the writer's transaction. The batch's idempotency keys and dossier states
        are read in a few queries; each job is checked against them (and against the jobs
        before it) before it writes anything, so a refused job leaves no trace."""
        conn = tx.connection
        known = tables.recall_many(conn, [(j.client, j.key) for j in jobs if j.key is not None])
        codes = sorted({j.facts.dossier_code for j in jobs if j.facts.dossier_code is not None})
        states = tables.lock_states(conn, codes)
        changed: dict[str, tables.DossierState] = {}
        new_keys: dict[tuple[str, str], tables.Remembered] = {}
        outcomes: list[Accepted | HubError] = []
        for job in jobs:
            try:
                outcomes.append(self._keep_one(tx, job, known, new_keys, states, changed))
            except HubError as exc:
                outcomes.append(exc)
        tables.remember_many(conn, new_keys)
        tables.save_states(conn, changed)
        return outcomes

    def _keep_one(self, tx: UnitOfWork, job: _Job,
                  known: dict[tuple[str, str], tables.Remembered],
                  new_keys: dict[tuple[str, str], tables.Remembered],
                  states: dict[str, tables.DossierState],
                  changed: dict[str, tables.DossierState]) -> Accepted:
        facts = job.facts
        if job.key is not None:
            seen = known.get((job.client, job.key)) or new_keys.get((job.client, job.key))
            if seen is not None:
                return _answer_known(seen, job.digest, job.key)
        code = facts.dossier_code
        state = states.get(code) if code is not None else None
        if state is not None and state.sequence == 0:
            state = None  # a row made just now to lock: the dossier was never seen
        if isinstance(job.model, StatusChange):
            _check_status(job.model, state.status if state else None)
        # Checks passed: from here on the job writes.
        message_id = str(uuid.uuid4())
        if job.key is not None:
            new_keys[(job.client, job.key)] = tables.Remembered(message_id, job.digest)
        sequence: int | None = None
        procedure = facts.procedure or (state.procedure_code if state else None)
        if code is not None:
            sequence = (state.sequence if state else 0) + 1
            status = _status_of(job.model)
            new_state = tables.DossierState(
                sequence, procedure,
                status if status is not None else (state.status if state else None))
            states[code] = changed[code] = new_state
        # The envelope names its true origin; the hub signs it as a relay, having verified the
        # upstream's own proof (kept in lt-upstream-proof), so adapters can tell who sent it.
        env = Envelope.new(
            id=message_id, source=job.client, type=job.event_type,
            subject=code or message_id, data=job.payload, agency=facts.agency,
            procedure=procedure, sequence=sequence,
        )
        env = replace(env, extensions={UPSTREAM_EXTENSION: job.client})
        out = Outgoing.signed(env, self.signer, self.exchange)
        out.headers.update(job.headers)
        tx.outbox_add(_outbox_message(out))
        tx.log("in", env, sha256_hex(out.body), peer=job.client)
        if code is not None:
            tx.timeline_add(code, job.event_type, message_id, facts.at or env.time,
                            source=job.client, summary=facts.summary)
        return Accepted(message_id, duplicate=False)

    def accept_envelopes(self, peer: str, envelopes: Sequence[Envelope]) -> list[str]:
        """Keep envelopes an adapter made of a system's call (a payment callback, a postal
        webhook), re-sourced to the hub and signed, in one transaction. An envelope whose id
        was already kept (the system called twice) is not kept again."""
        ids: list[str] = []
        with self.write_lock, self.store.begin() as tx:
            conn = tx.connection
            for original in envelopes:
                if not tables.remember(conn, peer, f"envelope:{original.id}", original.id,
                                       sha256_hex(original.to_bytes())):
                    ids.append(original.id)
                    continue
                env = self._relayed(original, peer)
                out = Outgoing.signed(env, self.signer, self.exchange)
                tx.outbox_add(_outbox_message(out))
                tx.log("in", env, sha256_hex(out.body), peer=peer)
                if env.subject and _is_dossier(env.subject):
                    model = _try_parse(env.type, env.data)
                    summary = describe(model).summary if model is not None else {}
                    tx.timeline_add(env.subject, env.type, env.id, env.time, source=peer,
                                    summary=summary)
                ids.append(env.id)
        if self.on_commit is not None:
            self.on_commit()
        return ids

    def _relayed(self, env: Envelope, upstream: str) -> Envelope:
        extensions = {**env.extensions, UPSTREAM_EXTENSION: env.source or upstream}
        return replace(env, source=self.signer.system_id, extensions=extensions)


def _outbox_message(out: Outgoing) -> OutgoingLike:
    # Outgoing.app_id is optional in general but always set by Outgoing.signed.
    assert out.app_id is not None
    return cast(OutgoingLike, out)


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


def _check_status(model: StatusChange, last: int | None) -> None:
    """The reported status must be able to follow the last one the hub knows of (or the
    previous status the client names, for a dossier the hub has not seen)."""
    if last is not None:
        check_transition(Status(last), model.status, "status")
    elif model.previous_status is not None:
        check_transition(model.previous_status, model.status, "status")


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
