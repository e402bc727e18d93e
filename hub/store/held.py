"""The held dossiers of ordered consumers (``held_groups``), as the consumer's
``hub.broker.lanes.HeldGroup`` serialises them: one row per queue and dossier, its state a
small JSON document. Only the failure path writes here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from hub.store.conflict import dialect_insert
from hub.store.tables import held_groups


def load(conn: Connection, queue: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        select(held_groups.c.dossier_code, held_groups.c.state)
        .where(held_groups.c.queue == queue)
    )
    return {str(code): dict(state) for code, state in rows}


def save(conn: Connection, queue: str, dossier_code: str, state: Mapping[str, Any]) -> None:
    now = datetime.now(UTC)
    doc = dict(state)
    conn.execute(
        dialect_insert(conn, held_groups)
        .values(queue=queue, dossier_code=dossier_code, state=doc, updated_at=now)
        .on_conflict_do_update(index_elements=["queue", "dossier_code"],
                               set_={"state": doc, "updated_at": now})
    )


def remove(conn: Connection, queue: str, dossier_code: str) -> None:
    conn.execute(delete(held_groups).where(held_groups.c.queue == queue,
                                           held_groups.c.dossier_code == dossier_code))
