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
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hub.broker.messages import Outgoing
from hub.errors import BrokerUnavailable, HubError
from hub.store import OutboxItem, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        write_lock: AbstractContextManager[Any] | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        # Shared with the intake's writer on SQLite (see IntakeService.write_lock).
        self.write_lock = write_lock or contextlib.nullcontext()
        # Whether this relay may publish now (one relay per SQLite database; see RelayLeader).
        self.leader = leader
        self.make_publisher = make_publisher
        self.batch = batch
        self.poll_interval = poll_interval
        self.lease = lease
        self.connect_timeout = connect_timeout
        self.on_published = on_published
        self.on_failed = on_failed
        self.publisher: ConfirmingPublisher | None = None
        self.published = 0
        self.last_failed = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected

    def notify(self) -> None:
        """New rows were committed; safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._wake.set)

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
        if publisher is None:
            return 0
        if self.leader is not None:
            # The only relay of its SQLite database has nobody to hide rows from: it reads
            # them without a lease, outside the write lock (a claim would hold that lock, which
            # the intake's writers wait for, while it reads every row).
            items = await asyncio.to_thread(self.store.outbox_pending, self.batch, lease=None)
        else:
            items = await asyncio.to_thread(self._locked, self.store.outbox_pending, self.batch,
                                            lease=self.lease)
        if not items:
            return 0
        futures: list[asyncio.Future[None]] = []
        for item in items:
            await publisher.wait_for_room()
            futures.append(publisher.publish_nowait(_outgoing(item)))
        # Unconfirmed at the end of the lease: give up on them, so that the publisher does not
        # send them after another relay took the rows over.
        done, pending = await asyncio.wait(futures, timeout=max(1.0, self.lease * 0.8))
        for future in pending:
            future.cancel()
        ok: list[int] = []
        failed: list[int] = []
        for item, f in zip(items, futures, strict=True):
            confirmed = f in done and not f.cancelled() and f.exception() is None
            (ok if confirmed else failed).append(item.id)
        self.last_failed = len(failed)
        if ok:
            await asyncio.to_thread(self._locked, self.store.outbox_mark_published, ok)
            self.published += len(ok)
            if self.on_published is not None:
                self.on_published(len(ok))
        if failed:
            first = next((f.exception() for f in futures
                          if f.done() and not f.cancelled() and f.exception()), None)
            log.warning("outbox relay: %d of %d messages not confirmed (%s); they stay in the "
                        "outbox", len(failed), len(items), first or "timed out")
            if self.leader is None:  # the leader leased nothing
                await asyncio.to_thread(self._locked, self.store.outbox_release, failed)
            if self.on_failed is not None:
                self.on_failed(len(failed))
        return len(items)

    def _locked(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.write_lock:
            return call(*args, **kwargs)


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
