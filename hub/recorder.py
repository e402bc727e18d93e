"""What the hub writes down about the messages it carries, apart from carrying them.

- The timeline recorder consumes a queue bound to every event (``#``) and adds each event to
  its dossier's timeline, so ``GET /v1/dossiers/{code}/timeline`` shows what happened across
  all systems, whichever adapter caused it.
- ``logged``: wraps an adapter's handler so that a delivery to a system is logged ``out`` and
  what the system answered with (the events the handler returns) is logged ``in``, in the
  hash-chained message log. Entry points log what they accept themselves.

Summaries keep no personal data: only the fields named in ``SUMMARY_FIELDS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from hub.adapters import Handler
from hub.envelope import Envelope
from hub.store import Store

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


def make_timeline_recorder(store: Store) -> Handler:
    async def record(delivery: Any) -> Sequence[Any]:
        env: Envelope = delivery.envelope
        with store.begin() as tx:
            tx.timeline_add(
                env.subject, env.type, env.id, env.time, source=env.source, summary=summary(env)
            )
        return []

    return record


def logged(handler: Handler, store: Store, system: str) -> Handler:
    """``handler`` with its deliveries and their answers written to the message log."""

    async def handle(delivery: Any) -> Sequence[Any]:
        produced = await handler(delivery)
        with store.begin() as tx:
            tx.log("out", delivery.envelope, hashlib.sha256(delivery.body).hexdigest(), system)
            for out in produced:
                env = Envelope.from_bytes(out.body)
                tx.log("in", env, hashlib.sha256(out.body).hexdigest(), system)
        return produced

    return handle
