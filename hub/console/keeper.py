"""The dead-letter keeper: consumes the terminal queues (dead letters, invalid messages,
unroutable messages) and keeps each message in the store (hub.store.operators), so operators
browse them without touching RabbitMQ.

Nothing is lost between queue and store: a batch of messages is written in one transaction and
acknowledged (``multiple=True``, up to the batch's last tag) only after the commit. A keeper
that dies in between leaves the batch unacknowledged; the broker delivers it again, and the
rows already written are recognised (same message id and digest of bytes, headers and queue)
and skipped. A store that refuses the write keeps the batch in memory, unacknowledged, and the
keeper tries again with backoff; the broker stops sending beyond the prefetch window meanwhile.

A copy of a replayed message that fails again carries ``lt-replay-of`` (the dead letter it
came from): its row is linked to that one (``replay_of``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pika.exceptions import AMQPError
from prometheus_client import Counter

from hub.broker.connection import Backoff, BrokerNodes, Link, sleep_unless
from hub.broker.metrics import REGISTRY, STAGE_SECONDS
from hub.broker.names import Names
from hub.console.deadletters import row_of
from hub.store import Store
from hub.store import operators as ops

log = logging.getLogger(__name__)

KEEPER = "keeper"  # its name among a worker process's consumers

KEPT = Counter(
    "lienthong_dead_letters_kept",
    "Parked messages the keeper wrote to the store, by queue role (dead, invalid, "
    "unroutable) and kind of reason",
    ["queue", "kind"], registry=REGISTRY)

# The keeper's stages among the consumers' (a batch's transaction, its ack), once per batch.
RECORD_SECONDS = STAGE_SECONDS.labels(KEEPER, "record")
ACK_SECONDS = STAGE_SECONDS.labels(KEEPER, "ack")


@dataclass
class _Pending:
    tag: int
    role: str
    row: dict[str, Any]


@dataclass
class KeeperState:
    consuming: bool = False
    last_error: str | None = None
    kept: int = 0
    duplicates: int = 0
    queues: list[str] = field(default_factory=list)


class Keeper:
    def __init__(self, settings: Any, store: Store, *, batch: int = 200,
                 name: str = "lienthong keeper") -> None:
        self.settings = settings
        self.store = store
        self.names = Names(settings.name_prefix)
        self.roles = {self.names.dead: "dead", self.names.invalid: "invalid",
                      self.names.unroutable: "unroutable"}
        self.batch = batch
        self.name = name
        self.nodes = BrokerNodes(list(getattr(settings, "broker_urls", None)
                                      or [settings.amqp_url]))
        self.state = KeeperState(queues=list(self.roles))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consuming = asyncio.Event()

    # -- lifecycle, as hub.broker.consumer.Consumer (so runtime.Worker can hold a keeper) ----

    @property
    def queue(self) -> str:
        return ", ".join(self.roles)

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self.run(self._stop), name=self.name)
        return self._task

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def wait_consuming(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._consuming.wait(), timeout)

    @property
    def consuming(self) -> asyncio.Event:
        """Set while the keeper is registered on its queues (hub.workerhealth reads it)."""
        return self._consuming

    @property
    def stats(self) -> KeeperState:
        return self.state

    def registered(self) -> list[str]:
        """Queues with this keeper registered on them (hub.workerhealth's readiness)."""
        return list(self.roles) if self.state.consuming else []

    def writable(self) -> bool:
        return self.state.last_error is None

    # -- the work -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.reconnect_initial, self.settings.reconnect_max)
        while not stop.is_set():
            try:
                link = await Link.open(self.nodes, self.name)
            except Exception as exc:  # the broker is down: try the next node later
                self.state.last_error = f"broker: {exc}"
                log.warning("keeper: cannot connect (%s)", exc)
                await sleep_unless(stop, backoff.next())
                continue
            backoff.reset()
            try:
                await self._session(link, stop)
            except Exception as exc:
                log.warning("keeper: connection lost (%s); reconnecting", exc)
            finally:
                self.state.consuming = False
                self._consuming.clear()
                with contextlib.suppress(Exception):
                    await link.aclose()

    async def _session(self, link: Link, stop: asyncio.Event) -> None:
        pending: list[_Pending] = []
        arrived = asyncio.Event()

        def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
            role = self.roles[tags[method.consumer_tag]]
            row = row_of(role, self._queue_of(role), self.names,
                         message_id=props.message_id, app_id=props.app_id, type=props.type,
                         raw_headers=props.headers, body=body, now=datetime.now(UTC))
            pending.append(_Pending(method.delivery_tag, role, row))
            arrived.set()

        await link.call(link.channel.basic_qos, prefetch_count=self.batch * 2)
        # The routing key does not tell the queue (an unroutable message keeps its own):
        # each queue's consumer tag does.
        tags = {f"{self.name}:{queue}:{uuid.uuid4().hex[:8]}": queue for queue in self.roles}
        for tag, queue in tags.items():
            await link.call(link.channel.basic_consume, queue, on_message, consumer_tag=tag)
        self.state.consuming = True
        self.state.last_error = None
        self._consuming.set()
        log.info("keeper consuming %s", self.queue)
        backoff = Backoff(self.settings.reconnect_initial, self.settings.reconnect_max)
        while not stop.is_set() and not link.lost.done():
            if not pending:
                arrived.clear()
                waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(arrived.wait()),
                                                      asyncio.ensure_future(stop.wait())]
                await asyncio.wait([*waiters, link.lost], return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                continue
            taken = pending[: self.batch]
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._write, taken)
            except Exception as exc:
                # Not acknowledged: the batch stays here (and on the broker) until it is kept.
                self.state.last_error = f"store: {exc}"
                log.warning("keeper: cannot keep %d parked messages (%s); trying again",
                            len(taken), exc)
                await sleep_unless(stop, backoff.next())
                continue
            backoff.reset()
            self.state.last_error = None
            del pending[: len(taken)]
            written = time.perf_counter()
            RECORD_SECONDS.observe(written - started)
            try:
                self._ack(link, taken[-1].tag)
            except AMQPError as exc:  # redelivered, then recognised as written
                log.warning("keeper: ack lost (%s)", exc)
                return
            ACK_SECONDS.observe(time.perf_counter() - written)

    def _ack(self, link: Link, tag: int) -> None:
        link.channel.basic_ack(tag, multiple=True)

    def _queue_of(self, role: str) -> str:
        return {"dead": self.names.dead, "invalid": self.names.invalid}.get(
            role, self.names.unroutable)

    def _write(self, batch: list[_Pending]) -> None:
        kept = 0
        with self.store.begin() as tx:
            for p in batch:
                row = dict(p.row)
                if row["replay_of"] is None:
                    # A copy parked again after a replay that carried no lt-replay-of (sent by
                    # hand, or an older hub): linked to the message's last dead letter.
                    earlier = ops.latest_of_message(tx.connection, row["message_id"])
                    if earlier is not None:
                        row["replay_of"] = earlier
                new = ops.add_dead_letter(tx.connection, **row)
                if new is not None:
                    kept += 1
                    KEPT.labels(p.role, row["kind"]).inc()
        self.state.kept += kept
        self.state.duplicates += len(batch) - kept
