"""Replaying history: copies from the history stream (``P.history``) into subscriptions'
queues, from a date or an offset, projected and signed as the fan-out does, with the original
message ids (a consumer that keeps processed ids takes each once).

Where the stream ends is marked first: a marker message (header ``lt-replay-mark``, no body) is
appended to the stream, and the replay reads until it meets its own marker, so it copies
exactly what the stream held when it began and stops without guessing from silence. Markers
are skipped by every replay. Each message is verified as the fan-out verifies it, except for
its age: history is replayed long after it was signed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

from hub import headers as h
from hub.broker.declare import connect
from hub.broker.messages import EnvelopeSigner
from hub.broker.queueage import QueueLedger, addressed_queues
from hub.envelope import Envelope, routing_key
from hub.errors import ClientError, HubError
from hub.settings import Settings
from hub.signing import TrustStore, Verifier
from hub.subscriptions.access import AccessList
from hub.subscriptions.fanout import copies
from hub.subscriptions.model import Subscription, SubscriptionNames

MARK = "lt-replay-mark"
PREFETCH = 500
# Replays verify signatures but not their age: a year of history is older than any window.
_AGE_UNCHECKED = 100 * 365 * 86400.0


@dataclass(slots=True)
class ReplayReport:
    read: int = 0  # messages of the stream read (markers not counted)
    copied: dict[str, int] = field(default_factory=dict)  # subscription -> copies sent
    refused: list[str] = field(default_factory=list)  # message ids not verified or projected
    first_offset: int | None = None
    last_offset: int | None = None


def replay(settings: Settings, subs: Sequence[Subscription], signer: EnvelopeSigner, *,
           since: datetime | None = None, offset: int | None = None,
           access: AccessList | None = None, verifier: Verifier | None = None,
           ledger: QueueLedger | None = None) -> ReplayReport:
    """``ledger``: where the copies confirmed into each queue are counted (the store's
    ``queue_ledger``, which dates a queue's oldest message: ``hub.broker.queueage``)."""
    if (since is None) == (offset is None):
        raise ClientError("give either --since DATE or --offset N", code="client.bad_request",
                          field="since")
    if since is not None and since.tzinfo is None:
        raise ClientError("--since has no time zone; give e.g. 2025-07-01T00:00:00+07:00",
                          code="client.bad_request", field="since")
    access = access or AccessList.load(settings)
    subs = [access.check(s) for s in subs]
    verifier = verifier or Verifier(
        TrustStore(settings.trust_dir), relays=frozenset({settings.hub_id}),
        max_age=_AGE_UNCHECKED, clock_skew=settings.clock_skew, retry_grace=0.0)
    sn = SubscriptionNames.of(settings)
    report = ReplayReport(copied={s.name: 0 for s in subs})
    mark = str(uuid.uuid4())
    counted: dict[str, int] = {}
    conn = connect(settings.broker_urls, "subscriptions replay")
    try:
        _check_queues(conn, [sn.queue(s.name) for s in subs])
        out = conn.channel()
        out.confirm_delivery()
        out.basic_publish("", sn.history, b"", pika.BasicProperties(
            delivery_mode=2, headers={MARK: mark}), mandatory=True)
        source = conn.channel()
        source.basic_qos(prefetch_count=PREFETCH)
        # A date after the marker's would start past it: the stream is read from a little
        # before now at the latest, and what is older than the date skipped (below).
        start: Any = offset
        if since is not None:
            start = min(since, datetime.now(UTC) - timedelta(seconds=2))
        for method, props, body in source.consume(
                sn.history, arguments={"x-stream-offset": start}, inactivity_timeout=60):
            if method is None:
                raise HubError(f"the history stream {sn.history} sent nothing for 60 s before "
                               "the replay reached its end; is the broker overloaded?",
                               code="server.replay_stalled")
            headers = props.headers or {}
            at = headers.get("x-stream-offset")
            if report.first_offset is None and isinstance(at, int):
                report.first_offset = at
            if isinstance(at, int):
                report.last_offset = at
            source.basic_ack(method.delivery_tag)
            if MARK in headers:
                if headers[MARK] == mark:
                    break
                continue
            report.read += 1
            for queue in _copy(out, body, headers, subs, access, signer, verifier, sn, report,
                               since):
                counted[queue] = counted.get(queue, 0) + 1
            if ledger is not None and report.read % PREFETCH == 0:
                ledger.add(counted, datetime.now(UTC))
                counted = {}
        source.cancel()
    finally:
        if conn.is_open:
            conn.close()
        if ledger is not None:
            ledger.add(counted, datetime.now(UTC))
    return report


def _copy(out: BlockingChannel, body: bytes, headers: dict[str, Any],
          subs: Sequence[Subscription], access: AccessList, signer: EnvelopeSigner,
          verifier: Verifier, sn: SubscriptionNames, report: ReplayReport,
          since: datetime | None) -> list[str]:
    """Send ``body``'s copies; the queues the broker confirmed them into."""
    try:
        env = Envelope.from_bytes(body)
        if since is not None and env.time < since:
            return []  # the stream starts at a chunk's first message, before the date
        verifier.verify(body, headers.get(h.SIGNATURE), env)
        key = routing_key(env)
        wanted = [s for s in subs if s.matches(key)]
        made = copies(env, wanted, access, signer, sn)
    except HubError:
        report.refused.append(_id_of(body))
        return []
    by_queue = {sn.queue(s.name): s.name for s in wanted}
    queues = []
    for o in made:
        # Confirmed when it returns (the channel is in confirm mode), or raises.
        out.basic_publish(o.exchange, o.routing_key, o.body, o.properties(), mandatory=True)
        for queue in addressed_queues(o):
            report.copied[by_queue[queue]] += 1
            queues.append(queue)
    return queues


def _check_queues(conn: pika.BlockingConnection, queues: list[str]) -> None:
    """Every queue exists: a copy addressed to several queues would miss a missing one
    without a word (``hub.subscriptions.fanout.copies``)."""
    for queue in queues:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            raise ClientError(
                f"the queue {queue} does not exist; run `lienthong topology apply`, then "
                "replay again", code="client.queue_absent", field="which") from None


def _id_of(body: bytes) -> str:
    try:
        return Envelope.from_bytes(body).id
    except HubError:
        return "(unreadable)"
