"""The intake's own tables, beside the store's (same database, written in the same transaction
through ``UnitOfWork.connection``):

- ``intake_idempotency``: (client, Idempotency-Key) -> message id and request digest, so a
  resubmission is answered as the first time and a reused key with another body is refused;
- ``intake_dossiers``: per dossier, the next sequence number, the procedure (status events do
  not carry it, routing keys need it) and the last reported status (to refuse impossible
  transitions).

They are created idempotently at start-up, under a database-wide lock as the store's
migrations are, so several workers starting at once do not race.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)

from hub.store.conflict import insert_ignore
from hub.store.engine import SQLITE_BEGIN, is_sqlite, translate_errors
from hub.store.tables import UTCDateTime

metadata = MetaData()

idempotency = Table(
    "intake_idempotency",
    metadata,
    Column("client", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("message_id", String(255), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_intake_idempotency_created_at", "created_at"),
)

dossiers = Table(
    "intake_dossiers",
    metadata,
    Column("dossier_code", String(100), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("procedure_code", String(100)),
    Column("status", Integer),
    Column("updated_at", UTCDateTime, nullable=False),
)

# pg_advisory_xact_lock key, distinct from the store's migration lock: "lt-intak".
_PG_LOCK_KEY = 0x6C742D696E74616B


def ensure(engine: Engine) -> None:
    with translate_errors("creating the intake tables"), engine.connect() as conn:
        if is_sqlite(conn):
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            if not is_sqlite(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            metadata.create_all(conn, checkfirst=True)


class Remembered(NamedTuple):
    message_id: str
    request_sha256: str


class DossierState(NamedTuple):
    sequence: int  # of the last event kept; 0: never seen
    procedure_code: str | None
    status: int | None  # the last status reported


def remember(conn: Connection, client: str, key: str, message_id: str, digest: str) -> bool:
    """False when the key is already taken (a concurrent request with the same key won)."""
    # RETURNING rather than rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
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
        rows = conn.execute(
            select(idempotency.c.key, idempotency.c.message_id, idempotency.c.request_sha256)
            .where(idempotency.c.client == client, idempotency.c.key.in_(keys)))
        for key, message_id, digest in rows:
            found[(client, str(key))] = Remembered(str(message_id), str(digest))
    return found


def remember_many(conn: Connection, entries: dict[tuple[str, str], Remembered]) -> None:
    """Insert keys known to be new (checked in this transaction); a key another process
    inserted meanwhile raises IntegrityError, and the caller tries the batch again."""
    if not entries:
        return
    now = datetime.now(UTC)
    conn.execute(insert(idempotency), [
        {"client": client, "key": key, "message_id": r.message_id,
         "request_sha256": r.request_sha256, "created_at": now}
        for (client, key), r in entries.items()])


def lock_states(conn: Connection, codes: list[str]) -> dict[str, DossierState]:
    """The state of each dossier, its row locked until commit (PostgreSQL; SQLite has one
    writer). Rows are created first (sequence 0: never seen) so that there is a row to lock
    and two processes cannot both start a new dossier at sequence 1."""
    if not codes:
        return {}
    now = datetime.now(UTC)
    conn.execute(insert_ignore(conn, dossiers, ["dossier_code"]), [
        {"dossier_code": code, "sequence": 0, "procedure_code": None, "status": None,
         "updated_at": now} for code in codes])
    query = (select(dossiers.c.dossier_code, dossiers.c.sequence, dossiers.c.procedure_code,
                    dossiers.c.status)
             .where(dossiers.c.dossier_code.in_(codes)).with_for_update())
    return {str(code): DossierState(int(seq), proc, None if status is None else int(status))
            for code, seq, proc, status in conn.execute(query)}


def save_states(conn: Connection, states: dict[str, DossierState]) -> None:
    if not states:
        return
    now = datetime.now(UTC)
    conn.execute(
        update(dossiers).where(dossiers.c.dossier_code == bindparam("code")).values(
            sequence=bindparam("seq"), procedure_code=bindparam("proc"),
            status=bindparam("st"), updated_at=bindparam("now")),
        [{"code": code, "seq": st.sequence, "proc": st.procedure_code, "st": st.status,
          "now": now} for code, st in states.items()])


def prune_idempotency(engine: Engine, older_than: timedelta) -> int:
    """Forget Idempotency-Keys older than ``older_than`` (a client retries within minutes)."""
    cutoff = datetime.now(UTC) - older_than
    with translate_errors("pruning idempotency keys"), engine.begin() as conn:
        result = conn.execute(delete(idempotency).where(idempotency.c.created_at < cutoff))
        return int(result.rowcount)
