"""The outbox relay: publishes what the entry points kept, and marks it published only after the
broker confirmed it.

An asyncio task started with the app. It wakes when the intake commits (``notify``, callable
from any thread) and polls every ``poll_interval`` seconds as a fallback (rows kept by another
worker process, rows whose lease ran out). On PostgreSQL rows are claimed with a lease
(``Store.outbox_pending``), so several workers, each with its own relay, never publish the same
row at once; a relay that dies leaves its rows to the others when the lease ends. On SQLite one
relay per database publishes (``RelayLeader``) and reads the rows without a lease.

While the broker is unreachable the relay claims nothing: the outbox grows (intake keeps
answering 202) and drains when the publisher has reconnected.

Hand-off (PostgreSQL): while the relay is connected, the intake of its own process writes rows
leased to it already (``lease_for_intake``) and hands them over after the commit (``notify``),
so the relay publishes them without claiming them back: claiming updates every row, body and
all, and reads it again (see docs/performance.md#relay-hand-off). The rows in memory are only
a shortcut: the store has them, leased, and a row the relay drops (its queue full, its lease
nearly over, the process gone) is claimed by the next relay to poll once the lease ends. The
relay still claims from the store every ``poll_interval``, for rows of other processes and
leases that ran out.

Order per dossier across relays (PostgreSQL): two events of one dossier kept by two processes
are in two relays' hands, and the later could be published first (an ordered destination then
skips the earlier as stale). The rows of a dossier are numbered in the order they were kept
(the intake numbers them holding the dossier's row lock), so a relay publishes its rows by id
and holds a row back while an earlier unpublished row of the same subject (the outbox's
``subject``) is not in its batch: it tries again shortly, and the relay holding the earlier row
publishes it meanwhile (or, gone, leaves it to a claim when its lease ends). The oldest
unpublished row of a subject is never held back, so every subject moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from hub.broker.messages import Outgoing
from hub.errors import BrokerUnavailable, HubError
from hub.files import private_dir
from hub.store import OutboxItem, Store

log = logging.getLogger(__name__)
# An outbox row the intake kept leased to this process's relay: id, message, end of the lease.
Handed = tuple[int, Outgoing, datetime]
# The lease end of rows read without a lease (the only relay of a SQLite database).
_NO_LEASE = datetime.max.replace(tzinfo=UTC)
# Seconds before a relay tries again rows it held back behind another relay's earlier rows.
HELD_BACK_RETRY = 0.02


class ConfirmingPublisher(Protocol):
    """What the relay needs of ``hub.broker.Publisher``."""

    @property
    def connected(self) -> bool: ...

    async def start(self, timeout: float = 30.0) -> None: ...

    async def close(self, timeout: float = 10.0) -> None: ...

    async def wait_for_room(self) -> None: ...

    def publish_nowait(self, outgoing: Outgoing) -> asyncio.Future[None]: ...


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        make_publisher: Callable[[], ConfirmingPublisher],
        *,
        batch: int = 500,
        poll_interval: float = 0.5,
        lease: float = 30.0,
        connect_timeout: float = 5.0,
        on_published: Callable[[int], None] | None = None,
        on_failed: Callable[[int], None] | None = None,
        on_stage: Callable[[str, float], None] | None = None,
        on_held_back: Callable[[int], None] | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        # Whether this relay may publish now (one relay per SQLite database; see RelayLeader).
        self.leader = leader
        self.make_publisher = make_publisher
        self.batch = batch
        self.poll_interval = poll_interval
        self.lease = lease
        self.connect_timeout = connect_timeout
        self.on_published = on_published
        self.on_failed = on_failed
        # Told each batch's stages (claim, publish, confirm, mark) and their seconds.
        self.on_stage = on_stage
        self.on_held_back = on_held_back
        # Rows the last batch held back behind another relay's earlier row of their subject.
        self.held_back = 0
        self.publisher: ConfirmingPublisher | None = None
        self.published = 0
        self.last_failed = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Rows handed over by the intake (id, message, lease end); bounded: what does not fit
        # waits in the store for its lease to end.
        self._handed: deque[Handed] = deque()
        self.max_handed = batch * 20
        self._last_claim = 0.0

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected

    def lease_for_intake(self) -> float | None:
        """How long the intake of this process should write rows leased to this relay (see
        the module's note on hand-off); None when it should not: one relay per database
        (SQLite) reads rows without leases, and a relay that cannot reach the broker would
        only keep rows from the others until the lease ends."""
        if self.leader is not None or not self.connected or self._loop is None:
            return None
        return self.lease

    def notify(self, handed: Sequence[Handed] = ()) -> None:
        """New rows were committed, some of them (``handed``) leased to this relay; safe to
        call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._take(handed)
        else:
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._take, handed)

    def _take(self, handed: Sequence[Handed]) -> None:
        room = self.max_handed - len(self._handed)
        self._handed.extend(handed[:max(0, room)])
        self._wake.set()

    def _handed_batch(self) -> list[Handed]:
        """Handed rows to publish now: those with at least half their lease left, so their
        confirms are in (or given up on) before another relay may take them."""
        keep_until = datetime.now(UTC) + timedelta(seconds=self.lease / 2)
        taken: list[Handed] = []
        while self._handed and len(taken) < self.batch:
            handed = self._handed.popleft()
            if handed[2] >= keep_until:
                taken.append(handed)
        return taken

    async def _in_order(self, items: list[Handed]) -> list[Handed]:
        """``items`` (by id) less the rows held back: those with an earlier unpublished row of
        their subject outside the batch. The held rows go back to the front of the hand-off,
        leased as they were, for the next round."""
        subjects = {out.subject for _, out, _ in items if out.subject is not None}
        if not subjects:
            return items
        mine = {row_id for row_id, _, _ in items}
        first_other: dict[str, int] = {}
        for row_id, subject in await asyncio.to_thread(
                self.store.outbox_earlier_unpublished, items[-1][0], subjects):
            if row_id not in mine:
                first_other[subject] = min(row_id, first_other.get(subject, row_id))
        if not first_other:
            return items
        go: list[Handed] = []
        held: list[Handed] = []
        for item in items:
            key = item[1].subject
            before = first_other.get(key) if key is not None else None
            (held if before is not None and before < item[0] else go).append(item)
        self._handed.extendleft(reversed(held))
        self.held_back = len(held)
        if self.on_held_back is not None:
            self.on_held_back(len(held))
        return go

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                # Connected even when another process's relay publishes: the connection is
                # also this process's answer to "is the broker reachable" (/readyz).
                if not self.connected:
                    await self._connect(stop)
                    continue
                if self.leader is not None and not self.leader():
                    await _sleep_unless(stop, self.poll_interval * 4)
                    continue
                try:
                    done = await self.relay_once()
                except HubError as exc:  # the store is unavailable: try again later
                    log.warning("outbox relay: %s", exc)
                    done = 0
                if self.last_failed:
                    # Refused or unconfirmed: do not hammer the broker with the same rows.
                    await _sleep_unless(stop, self.poll_interval)
                elif self.held_back:
                    # Another relay is publishing the earlier rows of those subjects now.
                    await _sleep_unless(stop, min(self.poll_interval, HELD_BACK_RETRY))
                elif done < self.batch:
                    await self._idle(stop)
        finally:
            if self.publisher is not None:
                await self.publisher.close(timeout=2.0)
                self.publisher = None
            if isinstance(self.leader, RelayLeader):
                self.leader.release()

    async def _connect(self, stop: asyncio.Event) -> None:
        if self.publisher is None:
            self.publisher = self.make_publisher()
            try:
                await _until(stop, self.publisher.start(timeout=self.connect_timeout))
            except BrokerUnavailable as exc:
                # start() gave up and closed that publisher; the next round makes a new one.
                log.warning("outbox relay: broker unavailable (%s); the outbox keeps what "
                            "arrives", exc)
                self.publisher = None
                await _sleep_unless(stop, self.poll_interval)
            return
        # The publisher reconnects by itself after a lost connection; wait for it.
        await _sleep_unless(stop, min(self.poll_interval, 0.1))

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_interval,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def relay_once(self) -> int:
        """Claim one batch, publish it, wait for the confirms, mark what was confirmed
        published and give the rest back. Returns how many rows were claimed."""
        publisher = self.publisher
        self.last_failed = 0
        self.held_back = 0
        if publisher is None:
            return 0
        started = time.perf_counter()
        items = self._handed_batch()
        # Handed rows are half a lease fresh at least (see _handed_batch).
        confirm_within = self.lease * (0.4 if items else 0.8)
        if self.leader is not None:
            # The only relay of its SQLite database has nobody to hide rows from: it reads
            # them without a lease, outside the write lock (a claim would hold that lock, which
            # the intake's writers wait for, while it reads every row).
            stored = await asyncio.to_thread(self.store.outbox_pending, self.batch, lease=None)
            items += [(item.id, _outgoing(item), _NO_LEASE) for item in stored]
        elif not items or time.monotonic() - self._last_claim >= self.poll_interval:
            # Rows nobody handed over (other processes', leases that ran out), at least every
            # poll_interval even while handed rows keep coming.
            self._last_claim = time.monotonic()
            lease_end = datetime.now(UTC) + timedelta(seconds=self.lease)
            stored = await asyncio.to_thread(self.store.outbox_pending,
                                             max(1, self.batch - len(items)), lease=self.lease)
            items += [(item.id, _outgoing(item), lease_end) for item in stored]
        items.sort(key=lambda item: item[0])
        if self.leader is None and items:
            items = await self._in_order(items)
        if not items:
            return 0
        claimed = time.perf_counter()
        futures: list[asyncio.Future[None]] = []
        for _, outgoing, _ in items:
            await publisher.wait_for_room()
            futures.append(publisher.publish_nowait(outgoing))
        published = time.perf_counter()
        # Unconfirmed well before the end of the lease: give up on them, so that the publisher
        # does not send them after another relay took the rows over.
        done, pending = await asyncio.wait(futures, timeout=max(1.0, confirm_within))
        confirmed_at = time.perf_counter()
        for future in pending:
            future.cancel()
        ok: list[int] = []
        failed: list[int] = []
        for (row_id, _, _), f in zip(items, futures, strict=True):
            confirmed = f in done and not f.cancelled() and f.exception() is None
            (ok if confirmed else failed).append(row_id)
        self.last_failed = len(failed)
        if ok:
            await asyncio.to_thread(self.store.outbox_mark_published, ok)
            self.published += len(ok)
            if self.on_published is not None:
                self.on_published(len(ok))
        if failed:
            first = next((f.exception() for f in futures
                          if f.done() and not f.cancelled() and f.exception()), None)
            log.warning("outbox relay: %d of %d messages not confirmed (%s); they stay in the "
                        "outbox", len(failed), len(items), first or "timed out")
            if self.leader is None:  # the leader leased nothing
                await asyncio.to_thread(self.store.outbox_release, failed)
            if self.on_failed is not None:
                self.on_failed(len(failed))
        if self.on_stage is not None:
            self.on_stage("claim", claimed - started)
            self.on_stage("publish", published - claimed)
            self.on_stage("confirm", confirmed_at - published)
            self.on_stage("mark", time.perf_counter() - confirmed_at)
        return len(items)


class RelayLeader:
    """Elects one relay among the processes sharing a SQLite database: the one holding an
    exclusive lock on ``path`` (released by the system when the process dies, so another takes
    over). PostgreSQL needs none: relays there skip each other's rows (SKIP LOCKED)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __call__(self) -> bool:
        if self._fd is not None:
            return True
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _outgoing(item: OutboxItem) -> Outgoing:
    return Outgoing(**item.message_fields())


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _until(stop: asyncio.Event, work: Awaitable[None]) -> None:
    """Run ``work`` unless ``stop`` is set first (then cancel it)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return
    task.result()
