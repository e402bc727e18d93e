"""What the hub writes down about the messages it carries, apart from carrying them.

- Every event's entry in its dossier's timeline (``GET /v1/dossiers/{code}/timeline``: what
  happened across all systems, whichever adapter caused it) is written where the event is
  born, in the transaction that keeps it: the intake for what it accepts, ``logged`` for what
  a system answered with, ``hub.runtime.adapter_session`` for an adapter's own commands.
- The timeline recorder consumes a queue bound to every event (``#``; the topology file's
  ``[destinations.timeline]``, which may disable it) and adds each to its dossier's timeline:
  for events that reach the exchange by other ways than those. Those ways' own events it
  finds there already (a row is unique by dossier and message id).
- ``logged``: wraps an adapter's handler so that a delivery to a system is logged ``out`` and
  what the system answered with (the events the handler returns) is logged ``in``, in the
  hash-chained message log and in their dossiers' timelines, those events numbered in their
  dossiers' one sequence in the same transaction (hub.intake.sequencing). Entry points log
  what they accept themselves. The log and the timeline are written through
  ``Delivery.record``: after the call, retried as writes by the consumer when the store
  refuses them, and committed with other deliveries' writes.
- ``report_skip``: an event a destination does not deliver (its worker found it already
  superseded, say) is never dropped in silence: a WARNING, the counter
  ``lienthong_skipped_total{destination,reason}`` and an entry in the dossier's timeline.

Summaries keep no personal data: only the fields named in ``SUMMARY_FIELDS``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from hub import codes
from hub.adapters import AdapterStore, Handler
from hub.broker.metrics import REGISTRY as METRICS
from hub.envelope import Envelope
from hub.errors import HubError
from hub.handlers import event_of
from hub.handlers import produced as checked
from hub.intake.sequencing import number
from hub.store import Store
from hub.store.unit import UnitOfWork

if TYPE_CHECKING:  # adapters import report_skip: the broker layer stays unloaded for them
    from hub.broker.consumer import Handler as ConsumerHandler
    from hub.broker.messages import Delivery
from hub.store.timeline import TimelineEvent, skipped_event

log = logging.getLogger(__name__)

TIMELINE = "timeline"  # the recorder's destination name: its queue is P.work.timeline

# Event fields that say what happened without saying who the citizen is.
SUMMARY_FIELDS = (
    "status", "previous_status", "state", "waybill", "paid", "amount", "matched",
    "reference", "content", "department", "error_code", "channel", "procedure_code",
    "payment_url",
)


def summary(env: Envelope) -> dict[str, Any]:
    data = env.data if isinstance(env.data, dict) else {}
    return {k: data[k] for k in SUMMARY_FIELDS if k in data and data[k] is not None}


def timeline_event(env: Envelope) -> TimelineEvent:
    """The entry of ``env`` in its dossier's timeline."""
    return TimelineEvent(env.subject, env.type, env.id, env.time, env.source, summary(env))


def make_timeline_recorder(store: Store) -> ConsumerHandler:
    def record(delivery: Delivery) -> Sequence[Envelope]:
        event = timeline_event(delivery.envelope)
        # Through the consumer's recording: the entries of many deliveries share a commit,
        # and one statement.
        delivery.record(store, lambda tx: tx.timeline_keep(event))
        return []

    return record


def logged(handler: Handler, store: Store, system: str) -> ConsumerHandler:
    """An adapter's ``handler`` as its worker's consumer runs it: given the verified event
    (its writes recorded through the consumer), with its deliveries and their answers written
    to the message log; the events it returns take their dossiers' next sequence numbers in
    the same transaction (the one sequence of every event the hub accepts:
    hub.intake.sequencing). The consumer signs and publishes them once that is committed."""

    async def handle(delivery: Delivery) -> Sequence[Envelope]:
        produced = checked(await handler(event_of(delivery, store)), delivery.envelope)
        outputs: list[Envelope] = []
        digest = hashlib.sha256(delivery.body).hexdigest()

        def write(tx: UnitOfWork) -> None:
            numbered = number(tx, produced) if produced else []
            tx.log("out", delivery.envelope, digest, system)
            for env in numbered:
                # The bytes the consumer signs and publishes (to_bytes is deterministic).
                tx.log("in", env, hashlib.sha256(env.to_bytes()).hexdigest(), system)
                # In its dossier's timeline from the moment it is kept, as the intake does
                # with what it accepts: no consumer has to record it again.
                tx.timeline_keep(timeline_event(env))
            # Filled when the write runs: a consumer publishes ``outputs`` only after its
            # recordings are committed (written again if the store refused them at first).
            outputs[:] = numbered

        # The system was called: what follows is recorded, and a store that refuses it makes
        # the consumer retry the write, never the call.
        delivery.record(store, write)
        return outputs

    return handle


# In the registry a worker process serves on /metrics (hub.workerhealth), beside its retry and
# dead-letter counters. Labels stay bounded: destinations are adapters, reasons a few codes.
SKIPPED = Counter(
    "lienthong_skipped",
    "Events a destination's worker did not deliver (each also logged as a warning and entered "
    "in the dossier's timeline), by destination and reason",
    ["destination", "reason"], registry=METRICS)


def report_skip(store: AdapterStore | None, destination: str, env: Envelope, reason: str, note: str,
                **detail: Any) -> None:
    """Say that ``destination`` did not deliver ``env`` and why: a WARNING, the counter, and a
    timeline entry of its dossier (one per message and destination, however often it comes
    back). ``reason`` is a stable code for the counter's label, ``note`` a sentence, ``detail``
    what the decision was made on (numbers; no personal data). Blocking: it writes the store."""
    SKIPPED.labels(destination, reason).inc()
    log.warning("%s did not deliver %s %s of %s (%s): %s", destination, env.type, env.id,
                env.subject, reason, note)
    if store is None or not _is_dossier(env.subject):
        return
    with store.begin() as tx:
        tx.timeline_add_many([skipped_event(env.subject, destination, env.id, env.type,
                                            reason, note, **detail)])


def _is_dossier(subject: str) -> bool:
    try:
        codes.parse_dossier(subject)
    except HubError:
        return False
    return True
