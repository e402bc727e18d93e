"""The transaction of one batch of the intake's writer.

The caller's thread validated each request and drafted and signed its envelope for the dossier
state this process last saw (``hub.intake.drafts``); the writer converts the batch's rows
(``rows_of``), and only then takes the write lock for one transaction of a dozen statements,
whatever the batch's size (``keep_batch``). Inside it each job is checked against the locked
state (idempotency keys, transition, sequence); a job whose dossier moved meanwhile is drafted
and signed again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from hub.broker.messages import Outgoing
from hub.errors import HubError
from hub.intake import tables
from hub.intake.drafts import Draft, Request
from hub.intake.facts import EventFacts
from hub.intake.idempotency import answer_known, answer_replayed
from hub.intake.jobs import Accepted, Handed, Job, Kept, Rows
from hub.model import Dossier, Status, StatusChange, check_transition
from hub.store import Store, TimelineEvent, UnitOfWork
from hub.store.bulk import Prepared

# Drafts a request again for the sequence and procedure its dossier's locked row gives.
Redraft = Callable[[Request, int | None, str | None], Draft]


def rows_of(store: Store, jobs: list[Job], lease: float | None) -> Rows:
    """In the writer thread, before the write lock: the rows of the drafts; ``lease``: how long
    the outbox rows are leased to this process's relay (None: not leased)."""
    now = datetime.now(UTC)
    events: list[TimelineEvent] = []
    timeline_of: dict[int, int] = {}
    for i, job in enumerate(jobs):
        event = _timeline_event(job.request, job.draft)
        if event is not None:
            timeline_of[i] = len(events)
            events.append(event)
    claimed_until = now + timedelta(seconds=lease) if lease else None
    return Rows(store.prepare_outbox([job.draft.out for job in jobs], at=now,
                                     claimed_until=claimed_until),
                store.prepare_timeline(events), timeline_of, claimed_until)


def keep_batch(tx: UnitOfWork, store: Store, jobs: list[Job], rows: Rows,
               redraft: Redraft) -> Kept:
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
            kept = _keep_one(job, known, new_keys, states, changed, redraft)
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
            messages.append(store.prepare_outbox([kept.out], at=now,
                                                 claimed_until=rows.claimed_until))
            event = _timeline_event(request, kept)
            if event is not None:
                timeline.append(store.prepare_timeline([event]))
    tables.remember_many(conn, new_keys)
    tables.save_states(conn, changed)
    # Rows lock_states made for new dossiers whose every job was refused: a refusal leaves
    # no trace (their sequence is still 0, and save_states did not touch them).
    tables.forget_unseen(conn, [code for code, state in states.items()
                                if state.sequence == 0 and code not in changed])
    handed: list[Handed] = []
    if rows.claimed_until is None:
        tx.outbox_add_many(store.join_outbox(messages))
    elif messages:
        ids = tx.outbox_add_claimed(store.join_outbox(messages))
        handed = [(ids[out.message_id], out, rows.claimed_until) for out in kept_out]
    tx.timeline_add_many(store.join_timeline(timeline))
    return Kept(outcomes, changed, handed)


def _keep_one(job: Job,
              known: dict[tuple[str, str], tables.Remembered],
              new_keys: dict[tuple[str, str], tables.Remembered],
              states: dict[str, tables.DossierState],
              changed: dict[str, tables.DossierState], redraft: Redraft) -> Accepted | Draft:
    """The answer given before (a resubmission), or the draft to keep; a HubError when
    the request is refused."""
    request = job.request
    client = request.client
    replay = request.replay_key
    if replay is not None:
        seen = known.get((client, replay)) or new_keys.get((client, replay))
        if seen is not None:  # this very signed request, whatever its Idempotency-Key
            return answer_replayed(seen, request.digest)
    if request.key is not None:
        seen = known.get((client, request.key)) or new_keys.get((client, request.key))
        if seen is not None:
            answer = answer_known(seen, request.digest, request.key)
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
    sequence, procedure = next_of(request.facts, state)
    if code is not None and sequence is not None:
        status = status_of(request.model)
        states[code] = changed[code] = tables.DossierState(
            sequence, procedure,
            status if status is not None else (state.status if state else None))
    if (job.draft.sequence, job.draft.procedure) == (sequence, procedure):
        return job.draft
    return redraft(request, sequence, procedure)


def _check_status(model: StatusChange, last: int | None) -> None:
    """The reported status must be able to follow the last one the hub knows of (or the
    previous status the client names, for a dossier the hub has not seen)."""
    if last is not None:
        check_transition(Status(last), model.status, "status")
    elif model.previous_status is not None:
        check_transition(model.previous_status, model.status, "status")


def _timeline_event(request: Request, draft: Draft) -> TimelineEvent | None:
    code = request.facts.dossier_code
    if code is None:
        return None
    return TimelineEvent(code, request.event_type, request.message_id,
                         request.facts.at or draft.env.time, request.client,
                         request.facts.summary)


def next_of(facts: EventFacts,
            state: tables.DossierState | None) -> tuple[int | None, str | None]:
    """The sequence and procedure of a dossier's next event after ``state`` (None: the dossier
    was never seen); no sequence for an event of no dossier."""
    procedure = facts.procedure or (state.procedure_code if state else None)
    if facts.dossier_code is None:
        return None, procedure
    return (state.sequence if state else 0) + 1, procedure


def status_of(model: BaseModel) -> int | None:
    """The dossier status an event sets, remembered for the transition checks."""
    if isinstance(model, StatusChange | Dossier):
        return int(model.status)
    return None
