"""The dead-letter mirror and the audit trail on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.store import Store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def parked(queue: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        message_id=str(uuid.uuid4()), queue=queue, reason_code="server.permanent_failure",
        reason="portal refused: MaHoSo unknown", body=b'{"id":"x"}', parked_at=T0,
        attempts=6, headers={"lt-attempt": 5, "lt-history": [{"attempt": 1}]},
        source="VN:GOV:000.00.00.H56:igate", destination="portal",
        type="vn.gov.dossier.submitted", agency="000.00.00.H56",
    )
    fields.update(changes)
    return fields


def test_dead_letters_mirror_filter_and_change_state(store: Store) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first = parked(queue)
    with store.begin() as tx:
        first_id = tx.dead_letter_add(**first)
        assert first_id is not None
        # The same parking seen again (at-least-once feed) is one row.
        assert tx.dead_letter_add(**first) is None
        tx.dead_letter_add(**parked(queue, reason_code="client.bad_signature",
                                    parked_at=T0 + timedelta(hours=1), destination="post"))

    everything = store.dead_letters(destination=None, limit=10, type="vn.gov.dossier.submitted",
                                    source="VN:GOV:000.00.00.H56:igate", agency="000.00.00.H56",
                                    parked_after=T0)
    mine = [d for d in everything if d.queue == queue]
    assert [d.reason_code for d in mine] == ["client.bad_signature", "server.permanent_failure"]
    assert [d.id for d in store.dead_letters(reason_code="client.bad_signature",
                                             parked_before=T0 + timedelta(hours=2))
            if d.queue == queue] == [mine[0].id]

    got = store.dead_letter(first_id)
    assert got is not None
    assert (got.body, got.headers, got.attempts, got.state) == (
        first["body"], first["headers"], 6, "parked",
    )
    with store.begin() as tx:
        assert tx.dead_letter_set_state(first_id, "replayed")
        with pytest.raises(ValueError, match="state must be one of"):
            tx.dead_letter_set_state(first_id, "lost")
    after = store.dead_letter(first_id)
    assert after is not None and after.state == "replayed"
    assert first_id not in [d.id for d in store.dead_letters(state="parked", limit=1000)]
    assert store.dead_letter(-1) is None


def test_audit_trail_newest_first(store: Store) -> None:
    target = f"dead-letter/{uuid.uuid4().hex[:8]}"
    with store.begin() as tx:
        tx.audit_add("alice", "replay", target, {"to": "portal", "count": 1})
        tx.audit_add("bob", "discard", target, {"reason": "duplicate"})
    entries = store.audit(target=target)
    assert [(e.actor, e.action) for e in entries] == [("bob", "discard"), ("alice", "replay")]
    assert entries[1].detail == {"to": "portal", "count": 1}
    assert [e.actor for e in store.audit(target=target, actor="alice")] == ["alice"]
