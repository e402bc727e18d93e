"""The log linker: a thread per store that chains the log rows units of work parked (deferred
mode, PostgreSQL). Writers wake it after they commit; it links everything parked, then sleeps
until woken again. A row parked by a process that died is linked by the next pass of any
process."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from hub.store import messagelog

log = logging.getLogger(__name__)


# Pause after a pass that linked rows. A pass costs about as much whatever its size, under a
# lock every process's linker takes in turn, and woken by every commit the linkers ran many
# small passes (see docs/performance.md#chain-linker). Parked rows are as durable as linked
# ones, so waiting costs nothing but the delay before ``log verify`` sees them chained.
PACE = 0.05


class LogLinker:
    def __init__(self, engine: Engine, *, retry_max: float = 30.0, pace: float = PACE) -> None:
        self._engine = engine
        self._retry_max = retry_max
        self._pace = pace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Rows were parked and committed: link them soon."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="lienthong-log-linker", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def link_now(self) -> int:
        """Link what is parked in the caller's thread; returns how many rows."""
        return messagelog.link_pending(self._engine)

    def close(self) -> None:
        """Stop the thread, then link what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            messagelog.link_pending(self._engine)
        except Exception as exc:
            # Closing must not fail for this: the rows stay parked, durable, and the next
            # store that writes to this database links them.
            log.warning("parked log rows left unlinked at close: %s", exc)

    def _run(self) -> None:
        delay = 0.0
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            # Cleared before linking: a commit landing during the pass wakes another pass.
            self._wake.clear()
            try:
                linked = messagelog.link_pending(self._engine)
                delay = 0.0
                # Rows committed meanwhile set the wake event: the next pass takes them all.
                if linked and self._pace and self._stop.wait(self._pace):
                    return  # close() links what is left
            except Exception:
                delay = min(self._retry_max, max(0.1, delay * 2))
                log.exception("linking the message log failed; retrying in %.1fs", delay)
                if self._stop.wait(delay):
                    return
                self._wake.set()
