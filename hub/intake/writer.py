"""The intake's writer: group commit.

One thread per process takes every job waiting and keeps them in ONE transaction, so a
commit's fsync is paid once per batch instead of once per request; callers (the REST and SOAP
doors) wait for the commit, an event loop without holding a thread (``reply_in``). Work that
must be ordered with the batches (the callbacks' transactions, ``Writer.call``) runs in the
same thread between two of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from hub.errors import HubError
from hub.intake.errors import StoreUnavailable
from hub.intake.jobs import Accepted, Job, Kept, Reply, Rows
from hub.store import Store, UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Call:
    """Work the writer thread runs between batches (``Writer.call``)."""

    work: Callable[[], Any]
    future: Future[Any]

    def run(self) -> None:
        try:
            self.future.set_result(self.work())
        except BaseException as exc:  # handed to the caller; the writer goes on
            self.future.set_exception(exc)


class Writer:
    """Group commit: one thread per process takes every job waiting and keeps them in ONE
    transaction, so a commit's fsync is paid once per batch instead of once per request. Each
    job's checks run inside the transaction before it writes anything; a job refused there
    (idempotency conflict, impossible transition) writes nothing and the others go on. A
    failure of the transaction itself fails every job of the batch (the clients retry)."""

    def __init__(self, store: Store,
                 rows: Callable[[list[Job]], Rows],
                 keep: Callable[[UnitOfWork, list[Job], Rows], Kept],
                 on_commit: Callable[[Kept], None], max_batch: int, linger: float) -> None:
        self._store = store
        self._rows = rows
        self._keep = keep
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._linger = linger
        self._full = threading.Event()
        self._queue: queue.SimpleQueue[Job | _Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Told each batch's stages: "write" (the write lock, the checks and rows of every job)
        # and "commit" (the transaction's commit), in seconds. Once per batch, not per job.
        self.observe: Callable[[str, float], None] | None = None

    def submit(self, job: Job) -> None:
        self._started()
        self._queue.put(job)
        if self._queue.qsize() >= self._max_batch:
            self._full.set()

    def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a transaction of its own) in the writer thread, between two batches,
        and return what it returns: what it commits and hands to the relay is then ordered
        with the batches, as the intake's own events of the same dossier are."""
        self._started()
        future: Future[Any] = Future()
        self._queue.put(_Call(work, future))
        self._full.set()  # no commit delay for the batch before it
        result: T = future.result()
        return result

    def _started(self) -> None:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the hub is shutting down; retry with the same "
                                       "Idempotency-Key")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="intake writer",
                                                daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            self._full.set()
            thread.join()

    def _run(self) -> None:
        concurrent = False
        while True:
            job = self._queue.get()
            if job is None:
                return
            if isinstance(job, _Call):
                job.run()
                continue
            if concurrent:
                # Commit delay: while requests come concurrently (the last batch had several),
                # wait a little for more, so that a batch's fixed cost (the lock, a dozen
                # statements, the commit's fsync) is shared by more of them. Woken early by a
                # full queue; not by every job, which would cost a thread switch each. A lone
                # request waits for nothing. See docs/performance.md#group-commit.
                self._full.wait(self._linger)
                self._full.clear()
            batch = [job]
            after: _Call | None = None
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                if isinstance(more, _Call):
                    after = more  # after the jobs submitted before it, before the later ones
                    break
                batch.append(more)
            concurrent = len(batch) > 1
            self._write_isolating(batch)
            if after is not None:
                after.run()

    def _write_isolating(self, batch: list[Job]) -> None:
        """``_write``, and when the batch fails for a reason other than the store being
        unavailable (a value one job brought that the database or a conversion refuses), each
        job again on its own: nothing of the failed batch was kept, and one request must not
        fail the others that happened to share its commit."""
        try:
            self._write(batch)
        except HubError as exc:  # the store is unavailable: every job of the batch failed
            for pending in batch:
                _answer(pending, exc)
        except Exception:  # the writer must outlive any job
            if len(batch) > 1:
                for job in batch:
                    self._write_isolating([job])
                return
            log.exception("intake writer: a request could not be kept")
            _answer(batch[0], HubError(
                "the hub could not keep this request (its error is logged); nothing of it "
                "was kept; report it to the hub's operators"))

    def _write(self, batch: list[Job]) -> None:
        # What needs no lock is done before taking it: every writer of the database waits
        # while it is held.
        rows = self._rows(batch)
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                with self._store.begin() as tx:
                    kept = self._keep(tx, batch, rows)
                    written = time.perf_counter()
                break
            except IntegrityError:
                # Another process committed one of these Idempotency-Keys meanwhile: the second
                # attempt finds it and answers as the first time.
                if attempt == 2:
                    raise
        # Committed: only now may anyone hear "accepted", and nothing may stop them hearing it.
        observe = self.observe
        if observe is not None:
            observe("write", written - started)
            observe("commit", time.perf_counter() - written)
        try:
            self._on_commit(kept)
        except Exception:
            log.exception("intake writer: the after-commit hook failed")
        for job, outcome in zip(batch, kept.outcomes, strict=True):
            _answer(job, outcome)


def _answer(job: Job, outcome: Accepted | BaseException) -> None:
    try:
        job.reply(outcome)
    except Exception:  # a caller's failure must not stop the writer
        log.exception("intake writer: answering a job failed")


def reply_to(future: Future[Accepted]) -> Reply:
    def reply(outcome: Accepted | BaseException) -> None:
        if future.done():  # never let a settled future stop the writer
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    return reply


def reply_in(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Accepted]) -> Reply:
    def settle(outcome: Accepted | BaseException) -> None:
        if future.done():  # the request gave up (cancelled, timed out): its job was kept
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def reply(outcome: Accepted | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    return reply
