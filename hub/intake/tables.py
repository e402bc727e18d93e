"""The intake's queries on its two tables (defined with the store's, hub.store.tables, and
created by its migrations), written in the same transaction as the rest of an accepted event
through ``UnitOfWork.connection``:

- ``intake_idempotency``: (client, key) -> message id and request digest, so a resubmission is
  answered as the first time and a reused key with another body is refused. The keys of a
  request: the client's (its Idempotency-Key, REST ``request:<lt-id>`` without one, SOAP its
  ``idempotencyKey`` or ``xmldsig:<digest>``) and, for a signed REST request, the key of its
  signed content (``signed:<digest>``, hub.intake.idempotency.signed_request_key), since the
  Idempotency-Key header is outside the signature. Rows live as long as ``lienthong store
  prune`` allows, never less than the entry points' age window;
- ``intake_dossiers``: per dossier, the sequence of its last event, the procedure (status
  events do not carry it, routing keys need it) and the last reported status (to refuse
  impossible transitions). It is the dossier's ONE sequence: every event the hub accepts for
  a dossier takes its next number here, whatever the door (REST and SOAP through the intake's
  writer, callbacks through ``IntakeService.accept_envelopes``, adapters' own events through
  ``hub.intake.sequencing``), always with the row locked as ``lock_states`` locks it (``advance``).

A batch costs a constant number of statements, whatever its size, run as driver SQL (see
hub.store.bulk).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection

from hub.store.bulk import BulkInsert, marks, one_of
from hub.store.conflict import insert_ignore
from hub.store.engine import is_sqlite
from hub.store.tables import intake_dossiers as dossiers
from hub.store.tables import intake_idempotency as idempotency

__all__ = ["DossierState", "Remembered", "advance", "dossiers", "forget_unseen", "idempotency",
           "lock_states", "recall_many", "remember", "remember_many", "save_states"]


# Hand-written SQL on the hot path (see hub.store.bulk); "key" quoted for any dialect's taste.
_KEY = '"key"'


class Remembered(NamedTuple):
    message_id: str
    request_sha256: str


class DossierState(NamedTuple):
    sequence: int  # of the last event kept; 0: never seen
    procedure_code: str | None
    status: int | None  # the last status reported


_remember_many = BulkInsert(
    idempotency, ("client", "key", "message_id", "request_sha256", "created_at"))
_placeholders = BulkInsert(
    dossiers, ("dossier_code", "sequence", "procedure_code", "status", "updated_at"),
    conflict=("dossier_code",))
_save_states = BulkInsert(
    dossiers, ("dossier_code", "sequence", "procedure_code", "status", "updated_at"),
    conflict=("dossier_code",), update=("sequence", "procedure_code", "status", "updated_at"))


def remember(conn: Connection, client: str, key: str, message_id: str, digest: str) -> bool:
    """False when the key is already taken (a concurrent request with the same key won)."""
    # RETURNING rather than rowcount: what a driver reports for INSERT ... ON CONFLICT DO
    # NOTHING is not to be relied on.
    inserted = conn.execute(
        insert_ignore(conn, idempotency, ["client", "key"]).returning(idempotency.c.key),
        {"client": client, "key": key, "message_id": message_id, "request_sha256": digest,
         "created_at": datetime.now(UTC)},
    ).first()
    return inserted is not None


def recall_many(conn: Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str],
                                                                         Remembered]:
    """The remembered answers of several (client, key) pairs, in one query per client."""
    found: dict[tuple[str, str], Remembered] = {}
    by_client: dict[str, list[str]] = {}
    for client, key in pairs:
        by_client.setdefault(client, []).append(key)
    for client, keys in by_client.items():
        wanted, params = one_of(conn.dialect, _KEY, keys)
        rows = conn.exec_driver_sql(
            f"SELECT {_KEY}, message_id, request_sha256 FROM intake_idempotency "
            f"WHERE client = {marks(conn.dialect, 1)} AND {wanted}", (client, *params))
        for key, message_id, digest in rows:
            found[(client, str(key))] = Remembered(str(message_id), str(digest))
    return found


def remember_many(conn: Connection, entries: dict[tuple[str, str], Remembered]) -> None:
    """Insert keys known to be new (checked in this transaction); a key another process
    inserted meanwhile raises IntegrityError, and the caller tries the batch again."""
    now = datetime.now(UTC)
    _remember_many.execute(conn, [(client, key, r.message_id, r.request_sha256, now)
                                  for (client, key), r in entries.items()])


def lock_states(conn: Connection, codes: list[str]) -> dict[str, DossierState]:
    """The state of each dossier the intake has seen, its row locked until commit.

    PostgreSQL: rows are created first (sequence 0: never seen) so that there is a row to lock
    and two transactions cannot both start a new dossier at sequence 1. SQLite needs none of
    that (the writer holds the database's write lock from BEGIN IMMEDIATE): only the dossiers
    seen before come back, which for new dossiers is no row at all."""
    if not codes:
        return {}
    wanted, params = one_of(conn.dialect, "dossier_code", codes)
    sql = ("SELECT dossier_code, sequence, procedure_code, status FROM intake_dossiers "
           f"WHERE {wanted}")
    if not is_sqlite(conn):
        now = datetime.now(UTC)
        _placeholders.execute(conn, [(code, 0, None, None, now) for code in codes])
        sql += " FOR UPDATE"
    return {str(code): DossierState(int(seq), proc, None if status is None else int(status))
            for code, seq, proc, status in conn.exec_driver_sql(sql, params)}


def forget_unseen(conn: Connection, codes: list[str]) -> None:
    """Delete the rows ``lock_states`` made for these dossiers if they are still unseen
    (sequence 0). None are made on SQLite."""
    if not codes or is_sqlite(conn):
        return
    wanted, params = one_of(conn.dialect, "dossier_code", codes)
    conn.exec_driver_sql(f"DELETE FROM intake_dossiers WHERE sequence = 0 AND {wanted}", params)


def save_states(conn: Connection, states: dict[str, DossierState]) -> None:
    now = datetime.now(UTC)
    _save_states.execute(conn, [(code, st.sequence, st.procedure_code, st.status, now)
                                for code, st in states.items()])


def advance(conn: Connection,
            events: Sequence[tuple[str, str | None, int | None]]) -> list[DossierState]:
    """Number events of dossiers kept in this transaction, in the order given, each given as
    (dossier code, its procedure or None, the status it reports or None): the dossiers' rows
    are locked (``lock_states``) and saved with their new state; returns each event's state
    after it (its ``sequence`` is the event's). An event without a procedure takes the
    dossier's, as the intake's own events do."""
    if not events:
        return []
    states = lock_states(conn, sorted({code for code, _, _ in events}))
    changed: dict[str, DossierState] = {}
    after: list[DossierState] = []
    for code, procedure, status in events:
        state = states.get(code)
        if state is not None and state.sequence == 0:
            state = None  # a row made just now to lock: the dossier was never seen
        new = DossierState(
            (state.sequence if state else 0) + 1,
            procedure or (state.procedure_code if state else None),
            status if status is not None else (state.status if state else None))
        states[code] = changed[code] = new
        after.append(new)
    save_states(conn, changed)
    return after
