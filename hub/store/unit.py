"""One unit of work: a transaction that an entry point or a handler fills with everything it
writes, committed together or not at all (``with store.begin() as tx``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from hub.envelope import Envelope
from hub.store import messagelog, operators, outbox, processed, timeline
from hub.store.bulk import Prepared
from hub.store.messagelog import LogFields, PendingEntry
from hub.store.outbox import OutgoingLike
from hub.store.timeline import TimelineEvent


class UnitOfWork:
    """Log rows are kept until commit and written then, in one statement: appended to the
    chain (inline) or parked for the linker (deferred; see ``hub.store.messagelog``)."""

    def __init__(self, conn: Connection, *, deferred_log: bool = False) -> None:
        self.connection = conn
        self._deferred_log = deferred_log
        self._log: list[PendingEntry] = []
        self._timeline: list[TimelineEvent] = []
        self._sequences: dict[tuple[str, str], int] = {}
        self.parked = 0  # log rows parked for the linker by this unit of work

    def log(
        self,
        direction: str,
        message: Envelope | LogFields,
        body_sha256: str,
        peer: str | None,
        *,
        at: datetime | None = None,
    ) -> None:
        """Log a message ``in`` (received from ``peer``) or ``out`` (sent to ``peer``)."""
        self._log.append(messagelog.entry(direction, message, body_sha256, peer, at))

    def flush_log(self) -> None:
        """Write the log rows held so far (commit does it anyway)."""
        pending, self._log = self._log, []
        if self._deferred_log:
            messagelog.park(self.connection, pending)
            self.parked += len(pending)
        else:
            messagelog.append(self.connection, pending)

    def outbox_add(self, message: OutgoingLike, *, at: datetime | None = None) -> int:
        """Keep ``message`` (an ``Outgoing``) for the relay to publish after commit."""
        return outbox.add(self.connection, message, at)

    def outbox_add_many(
        self, messages: Sequence[OutgoingLike] | Prepared, *, at: datetime | None = None
    ) -> int:
        """Keep several messages with one statement (a batch); returns how many. Rows
        prepared beforehand (``Store.prepare_outbox``) spare the transaction their
        conversion."""
        return outbox.add_many(self.connection, messages, at)

    def outbox_add_claimed(self, messages: Prepared) -> dict[str, int]:
        """Keep messages prepared leased to this process's relay (``Store.prepare_outbox``
        with ``claimed_until``); returns their ids by message id, to hand to it."""
        return outbox.add_claimed(self.connection, messages)

    def timeline_add(
        self,
        dossier_code: str,
        event_type: str,
        message_id: str,
        at: datetime,
        *,
        source: str,
        summary: Mapping[str, Any],
    ) -> bool:
        """Add a dossier event; False when the dossier already has this message."""
        return timeline.add(
            self.connection, dossier_code, event_type, message_id, at, source, summary
        )

    def timeline_keep(self, event: TimelineEvent) -> None:
        """Add a dossier event at commit, with every other kept in this unit of work in one
        statement (an event whose dossier already has its message is skipped): for writers
        that need no answer, such as the timeline recorder, whose rows a worker's consumer
        commits for many deliveries at once (docs/performance.md)."""
        self._timeline.append(event)

    def flush_timeline(self) -> None:
        """Write the timeline rows kept so far (commit does it anyway)."""
        kept, self._timeline = self._timeline, []
        if kept:
            timeline.add_many(self.connection, kept)

    def timeline_add_many(self, events: Sequence[TimelineEvent] | Prepared) -> int:
        """Add several dossier events with one statement; returns how many were added (an
        event whose dossier already has its message is skipped). Rows may be prepared
        beforehand (``Store.prepare_timeline``)."""
        return timeline.add_many(self.connection, events)

    def last_sequence(self, consumer: str, dossier_code: str) -> int | None:
        """The last sequence ``consumer`` applied to the dossier, locking its row on
        PostgreSQL until commit, so two workers cannot both apply the next one. With no row
        yet there is nothing to lock; ``set_sequence`` then settles it (the loser gets
        False)."""
        return timeline.last_sequence(self.connection, consumer, dossier_code, for_update=True)

    def set_sequence(self, consumer: str, dossier_code: str, sequence: int) -> bool:
        return timeline.set_sequence(self.connection, consumer, dossier_code, sequence)

    def sequence_keep(self, consumer: str, dossier_code: str, sequence: int) -> None:
        """``set_sequence`` at commit, with every other kept in this unit of work in one
        statement, for writers that need no answer: an ordered destination's worker records
        the sequence of each delivery its consumer commits with many others."""
        key = (consumer, dossier_code)
        self._sequences[key] = max(sequence, self._sequences.get(key, sequence))

    def flush_sequences(self) -> None:
        """Write the sequences kept so far (commit does it anyway)."""
        kept, self._sequences = self._sequences, {}
        timeline.set_sequences(self.connection, kept)

    def record_processed(self, consumer: str, items: Iterable[tuple[str, str]]) -> None:
        """Record processed ids with the rest of this unit of work."""
        processed.record_in(self.connection, consumer, items)

    def dead_letter_add(self, **fields: Any) -> int | None:
        """Mirror a parked message (fields of ``operators.add_dead_letter``)."""
        return operators.add_dead_letter(self.connection, **fields)

    def dead_letter_set_state(self, dead_letter_id: int, state: str) -> bool:
        return operators.set_dead_letter_state(self.connection, dead_letter_id, state)

    def audit_add(
        self, actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None,
        why: str | None = None,
    ) -> int:
        """Append to the hash-chained audit trail, in this unit of work."""
        return operators.add_audit(self.connection, actor, action, target, detail, why=why)
