"""The write lock of an SQLite store (``Store.write_lock``), taken by every write the store
starts (``Store.begin``, its own short writes, processed ids), in every process: the intake's
writer and the outbox relay of each serve process, the consumers of each worker process.

SQLite has one writer at a time, and a connection that finds the database locked sleeps
(1, 2, 5 ... 100 ms) before trying again, which ruins the tail latency: those writers take
turns on a lock file instead, which wakes the next one at once
(docs/performance.md#group-commit, #one-write-lock-for-workers-too).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sqlalchemy import Engine

from hub.errors import RetryableError
from hub.store.health import STORE_UNAVAILABLE


class SqliteWriteLock:
    """Mutual exclusion of SQLite writers across threads (a lock) and processes (``flock`` on
    a file beside the database). Reentrant in a thread: a write the store starts while the
    same thread already holds the lock (a caller's batch around it) goes ahead."""

    def __init__(self, path: Path | None) -> None:
        # Taken by a thread's outermost write only: ``_depth`` counts its nested ones.
        self._thread_lock = threading.Lock()
        self._depth = threading.local()
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self._thread_lock.acquire()
            try:
                if self._path is not None:
                    if self._fd is None:
                        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException as exc:
                self._thread_lock.release()
                if isinstance(exc, OSError):
                    # A directory made read-only or a full disk: the store cannot be written
                    # now, as SQLite would say, so a worker keeps a result it got and writes
                    # it later instead of calling the system again (hub.store.health).
                    raise RetryableError(
                        f"the store's write lock {self._path} cannot be taken "
                        f"({exc.strerror or exc}); check that the database's directory is "
                        "writable and its disk not full",
                        code=STORE_UNAVAILABLE,
                    ) from exc
                raise
        self._depth.n = depth + 1

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        if self._depth.n == 0:
            try:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._thread_lock.release()


def lock_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # one process only
    return Path(database).with_name(Path(database).name + ".write.lock")
