"""The hub's store (SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL by URL): the
hash-chained message log, processed ids per consumer, the outbox, the dossier timeline, the
intake's Idempotency-Keys and dossier states, and the operators' dead-letter mirror and audit
trail.

    store = Store.open(settings.store_url)
    with store.begin() as tx:
        tx.log("in", env, sha256_hex(body), peer="VN:GOV:...:igate")
        tx.outbox_add(outgoing)

A batch writer (the intake's group commit) writes many events with one statement per table:
``tx.outbox_add_many`` and ``tx.timeline_add_many``, optionally with rows converted before the
transaction (``store.prepare_outbox`` / ``prepare_timeline``); see ``hub.store.bulk``.

On PostgreSQL a unit of work parks its log rows and a linker thread of the store chains them
moments later (``store.link_log()`` does it at once); on SQLite rows are chained at commit.
Close the store to stop the linker.
"""

from hub.store.chain import LogProblem, LogReport, LogRow
from hub.store.messagelog import LogFields, sha256_hex
from hub.store.operators import AuditEntry, DeadLetter
from hub.store.outbox import OutboxItem, OutgoingLike
from hub.store.processed import StoreProcessedIds
from hub.store.store import Store
from hub.store.timeline import TimelineEntry, TimelineEvent
from hub.store.unit import UnitOfWork

__all__ = [
    "AuditEntry",
    "DeadLetter",
    "LogFields",
    "LogProblem",
    "LogReport",
    "LogRow",
    "OutboxItem",
    "OutgoingLike",
    "Store",
    "StoreProcessedIds",
    "TimelineEntry",
    "TimelineEvent",
    "UnitOfWork",
    "sha256_hex",
]
