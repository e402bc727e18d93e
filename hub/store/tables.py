"""The store's tables, as SQLAlchemy Core. The migrations in ``migrations/versions`` create
exactly these (a test compares the migrated schema with this metadata), so a change here needs a
new revision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so later migrations can name what they alter on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both dialects. SQLite keeps no offset, so values are stored as UTC
    and given their zone back on the way out; the log's hashes depend on reading back exactly
    what was written."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given to the store; pass an aware "
                "datetime such as datetime.now(UTC)"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc: Any = JSON().with_variant(JSONB(), "postgresql")

DIRECTIONS = ("in", "out")
DEAD_LETTER_STATES = ("parked", "replayed", "discarded", "edited")


def log_entry_columns() -> list[Column[Any]]:
    """What the message log keeps of a message, the same in the log and in the rows waiting to
    be chained into it (``log_pending``). New columns at each call: a column belongs to one
    table."""
    return [
        Column("at", UTCDateTime, nullable=False),
        Column("direction", String(3), nullable=False),
        Column("message_id", String(255), nullable=False),
        Column("type", String(200)),
        Column("source", String(200)),
        Column("subject", String(200)),
        Column("peer", String(200)),
        Column("body_sha256", String(64), nullable=False),
    ]


message_log = Table(
    "message_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    *log_entry_columns(),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
    CheckConstraint("direction IN ('in', 'out')", name="direction"),
    Index(None, "subject", "seq"),
    Index(None, "message_id"),
)

# Log rows written by units of work on PostgreSQL, waiting for the linker to chain them (see
# hub.store.linker): writers then never wait on the chain head.
log_pending = Table(
    "log_pending",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    *log_entry_columns(),
)

# One row (id = 1): the last seq and hash of the chain. Appends lock it, which serialises them,
# and verify compares it with the last row, so deleting the newest rows is detected too.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("row_hash", String(64), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

processed_ids = Table(
    "processed_ids",
    metadata,
    Column("consumer", String(200), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # Led by the id: looked up as consumer = :one AND message_id IN (:many) (migration 0010).
    PrimaryKeyConstraint("message_id", "consumer"),
    Index(None, "recorded_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("type", String(200), nullable=False),
    Column("app_id", String(200)),
    Column("exchange", String(255), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("headers", JSONDoc, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # The envelope's subject (the dossier): relays publish the rows of one subject in id order
    # (hub.outbox.relay); NULL for rows kept before revision 0009, which keep no order.
    Column("subject", String(255)),
    # A relay's lease on the row: another relay skips it until then (a crashed relay's rows
    # come back when the lease runs out).
    Column("claimed_until", UTCDateTime),
    Column("published_at", UTCDateTime),
    Index(None, "published_at", "id"),
    # The relay's check for an earlier unpublished row of a subject: by subject among the
    # unpublished only, whatever the published rows the table keeps (migration 0009).
    Index("ix_outbox_unpublished_subject", "subject",
          postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL")),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("dossier_code", String(100), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("source", String(200), nullable=False),
    Column("summary", JSONDoc, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("dossier_code", "message_id"),
    Index(None, "dossier_code", "at"),
)

dossier_sequences = Table(
    "dossier_sequences",
    metadata,
    Column("consumer", String(200), nullable=False),
    Column("dossier_code", String(100), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Led by the dossier, as the lookup's many values are (migration 0010).
    PrimaryKeyConstraint("dossier_code", "consumer"),
)

# The intake's memory of Idempotency-Keys (see hub.intake.idempotency): (client, key) -> the answer
# given, so a resubmission is answered as the first time and a reused key with another body is
# refused. Pruned by age (``Store.idempotency_prune``).
intake_idempotency = Table(
    "intake_idempotency",
    metadata,
    Column("client", String(200), nullable=False),
    Column("key", String(255), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Led by the key, as the lookup's many values are (migration 0010).
    PrimaryKeyConstraint("key", "client"),
    Index(None, "created_at"),
)

# Per dossier, as the intake last kept it: the sequence of its last event, its procedure (status
# events do not carry it, routing keys need it) and its last reported status (to refuse
# impossible transitions). Sequence 0: a row made only to be locked, the dossier never seen.
intake_dossiers = Table(
    "intake_dossiers",
    metadata,
    Column("dossier_code", String(100), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("procedure_code", String(100)),
    Column("status", Integer),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The number each event an adapter made took in its dossier's sequence (hub.sequencing), by
# message id, so that the same message made again takes the same number. Pruned by age with the
# processed ids (``Store.event_sequences_prune``).
event_sequences = Table(
    "event_sequences",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("dossier_code", String(100), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("assigned_at", UTCDateTime, nullable=False),
    Index(None, "assigned_at"),
)

# Dossiers an ordered consumer holds (hub.broker.lanes.HeldGroup): one of their messages sits
# in a retry tier, and the later ones travel behind it. Written only when a delivery fails or a
# held message moves, so that a restarted worker (or the one that takes a partition over) goes
# on holding; a row is deleted when its dossier is released.
held_groups = Table(
    "held_groups",
    metadata,
    Column("queue", String(255), primary_key=True),
    Column("dossier_code", String(200), primary_key=True),
    Column("state", JSONDoc, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per process that probed whether the store takes writes (hub.store.probe): an upsert,
# the smallest write that a read-only or full database refuses.
store_probes = Table(
    "store_probes",
    metadata,
    Column("prober", String(255), primary_key=True),
    Column("probed_at", UTCDateTime, nullable=False),
)

# The operator console's mirror of the terminal queues (hub.console.keeper). The keeper is fed
# at least once: a message seen again with the same bytes and headers (same id and digest) is
# one row; the same message parked again after a replay has new headers, hence a new row,
# linked to the first by ``replay_of``.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("message_id", String(255), nullable=False),
    Column("queue", String(255), nullable=False),
    Column("reason_code", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(200)),
    Column("destination", String(200)),
    Column("type", String(200)),
    Column("agency", String(100)),
    Column("attempts", Integer, nullable=False),
    Column("headers", JSONDoc, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("parked_at", UTCDateTime, nullable=False),
    Column("state", String(20), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # sha256 of the body and the headers as received: with the message id, what makes a
    # redelivery (a keeper that crashed before its ack) the same row.
    Column("digest", String(64)),
    # retries exhausted, delivery limit, invalid signature, schema, unroutable, refused...
    Column("kind", String(40)),
    Column("dossier_code", String(100)),
    Column("first_failure_at", UTCDateTime),
    Column("last_failure_at", UTCDateTime),
    Column("history", JSONDoc),
    Column("replay_of", BigInteger),
    # Who closed it (replayed, edited, discarded), when, and the details of that action.
    Column("resolved_by", String(200)),
    Column("resolved_at", UTCDateTime),
    Column("resolution", JSONDoc),
    CheckConstraint(
        "state IN ('parked', 'replayed', 'discarded', 'edited')", name="state"
    ),
    UniqueConstraint("message_id", "digest"),
    Index(None, "state", "parked_at"),
    Index(None, "kind", "parked_at"),
    Index(None, "dossier_code"),
)

# Every operator action, append-only (triggers refuse UPDATE and DELETE) and hash-chained:
# each row's hash covers its fields and the previous row's hash (hub.store.operators).
audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(255), nullable=False),
    Column("detail", JSONDoc, nullable=False),
    Column("why", Text),
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
    Index(None, "target", "at"),
    Index(None, "at"),
)

OPERATOR_ROLES = ("viewer", "operator", "admin")

# Console operators: argon2 password hashes (hub.console.accounts), a role, and disabled
# accounts kept (their actions stay attributed in the audit trail).
operators = Table(
    "operators",
    metadata,
    Column("username", String(100), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(20), nullable=False),
    Column("disabled", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),
)

# Signed-in sessions: the sha256 of the token (the token itself is only in the operator's
# cookie), the CSRF token of its forms, and when it expires (pushed on by use).
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("username", String(100), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)

# Ministries' subscriptions (hub.subscriptions): what each queue P.sub.<name> is bound to. The
# broker's declarations are made from these rows by `lienthong topology apply`; the queue's
# user is the ministry's (one RabbitMQ user per ministry system). consumer_seen_at: when a
# consumer was last seen on the queue (reported when gone for too long).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("ministry", String(200), nullable=False),
    Column("event_types", JSONDoc, nullable=False),
    Column("agencies", JSONDoc, nullable=False),
    Column("procedures", JSONDoc, nullable=False),
    Column("projection", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("consumer_seen_at", UTCDateTime),
    Index(None, "ministry"),
)

# The ledger of what was published into queues (hub.broker.queueage): each row a checkpoint,
# the queue's running total of confirmed messages and by when they were all in it. Dates the
# oldest message of a queue whose type reports no head timestamp (quorum queues).
queue_ledger = Table(
    "queue_ledger",
    metadata,
    Column("queue", String(255), primary_key=True),
    Column("total", BigInteger, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)

# The circuit breakers of the worker processes (hub.circuits): each process reports its
# circuits' state when it changes and every few seconds, so the server (which calls no system)
# can show them, and a report not renewed shows a process that died.
circuit_reports = Table(
    "circuit_reports",
    metadata,
    Column("destination", String(100), primary_key=True),
    Column("process", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("reported_at", UTCDateTime, nullable=False),
)
