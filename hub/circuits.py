"""The circuit breakers of this process, by destination (each ``hub.outbound.CallPolicy``
registers its own), for readiness and metrics: ``lienthong_circuit_state`` (0 closed, 1
half-open, 2 open) on the registry a worker process serves (hub.broker.metrics).

Circuits live in the worker processes, which call the systems; the server calls none. So each
worker process reports its circuits to a board (``CircuitBoard``, kept in the store by
``hub.store.circuitboard``) through a ``Reporter``: at once when a state changes (looked at
every ``LOOK_INTERVAL`` seconds, off the calls' path) and every ``HEARTBEAT`` seconds anyway.
The server's /readyz and /metrics read the board (``board_checks``, ``BoardCollector``): a
report older than ``STALE_AFTER`` is of a process that stopped reporting (dead or hung), shown
as stale with its age rather than as the circuit's present state. A process that stops cleanly
takes its reports off the board."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.errors import HubError

log = logging.getLogger(__name__)

STATE_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
_BREAKERS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def register(name: str, breaker: Any) -> None:
    """Remember ``breaker`` (with ``state`` and ``failures``) as ``name``'s circuit while it
    lives; the newest one of a name wins."""
    _BREAKERS[name] = breaker
    _collect_once()


def states() -> dict[str, tuple[str, int]]:
    """Destination -> (closed | half-open | open, consecutive failures)."""
    return {name: (str(b.state), int(b.failures)) for name, b in sorted(_BREAKERS.items())}


def describe(state: str, failures: int) -> str:
    """A readiness check's text: "ok" while closed, a warning otherwise."""
    if state == "closed":
        return "ok"
    return f"warning: circuit {state} after {failures} consecutive failures"


class CircuitCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "lienthong_circuit_state",
            "Circuit breaker of calls to a destination: 0 closed, 1 half-open, 2 open",
            labels=["destination"])
        for name, (state, _) in states().items():
            gauge.add_metric([name], STATE_VALUES.get(state, 2.0))
        yield gauge


_registered: list[CircuitCollector] = []


def _collect_once() -> None:
    # Imported late: hub.outbound (which registers) is imported by hub.broker's own imports.
    if not _registered:
        from hub.broker.metrics import REGISTRY

        _registered.append(CircuitCollector())
        REGISTRY.register(_registered[0])


# -- across processes: the board ---------------------------------------------------------------

LOOK_INTERVAL = 1.0  # seconds between looks at this process's circuits (a change's delay)
HEARTBEAT = 10.0  # seconds between reports when nothing changed
STALE_AFTER = 3 * HEARTBEAT  # a report not renewed for this long is of a process gone


@dataclass(frozen=True, slots=True)
class Report:
    destination: str
    process: str  # host:pid of the worker process
    state: str
    failures: int
    changed_at: datetime  # when the process saw the state change (or started)
    reported_at: datetime


class CircuitBoard(Protocol):
    def report(self, process: str, circuits: Mapping[str, tuple[str, int, datetime]],
               at: datetime) -> None:
        """Replace ``process``'s reports: destination -> (state, failures, changed at)."""
        ...

    def forget(self, process: str) -> None: ...

    def reports(self) -> list[Report]: ...


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Reporter:
    """Reports this process's circuits to ``board`` while it runs (see the module's text)."""

    def __init__(self, board: CircuitBoard, process: str | None = None, *,
                 look: float = LOOK_INTERVAL, heartbeat: float = HEARTBEAT) -> None:
        self.board = board
        self.process = process or process_name()
        self.look = look
        self.heartbeat = heartbeat
        self._seen: dict[str, tuple[str, int, datetime]] = {}
        self._reported: dict[str, str] = {}
        self._last = 0.0

    def _changes(self, now: datetime) -> bool:
        changed = False
        for name, (state, failures) in states().items():
            before = self._seen.get(name)
            if before is None or before[0] != state:
                self._seen[name] = (state, failures, now)
            else:
                self._seen[name] = (state, failures, before[2])
            changed = changed or self._reported.get(name) != state
        return changed

    async def once(self) -> None:
        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        if not self._changes(now) and loop.time() - self._last < self.heartbeat:
            return
        snapshot = dict(self._seen)
        try:
            await asyncio.to_thread(self.board.report, self.process, snapshot, now)
        except HubError as exc:  # the store is down: the next look tries again
            log.warning("circuits not reported (%s); trying again in %ss", exc, self.look)
            return
        self._reported = {name: state for name, (state, _, _) in snapshot.items()}
        self._last = loop.time()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.look)


@contextlib.asynccontextmanager
async def reporting(board: CircuitBoard, process: str | None = None) -> AsyncIterator[Reporter]:
    """Report while the block runs; then take this process's reports off the board."""
    reporter = Reporter(board, process)
    stop = asyncio.Event()
    task = asyncio.create_task(reporter.run(stop), name="circuit reporter")
    try:
        yield reporter
    finally:
        stop.set()
        await task
        try:
            await asyncio.to_thread(board.forget, reporter.process)
        except HubError as exc:
            log.warning("circuits' reports of %s left on the board (%s); they will show as "
                        "stale", reporter.process, exc)


@dataclass(frozen=True, slots=True)
class Seen:
    """A destination's circuit as the board shows it: the worst state among the processes
    still reporting, or, with none, the last report of a process that stopped reporting."""

    state: str
    failures: int
    processes: int  # processes reporting it now
    stale_for: float | None  # seconds since the last report, when no process reports it now


_WORST = {"open": 2, "half-open": 1, "closed": 0}


def board_view(reports: Sequence[Report], now: datetime,
               stale_after: float = STALE_AFTER) -> dict[str, Seen]:
    by_destination: dict[str, list[Report]] = {}
    for r in reports:
        by_destination.setdefault(r.destination, []).append(r)
    out: dict[str, Seen] = {}
    for name, rows in sorted(by_destination.items()):
        fresh = [r for r in rows if (now - r.reported_at).total_seconds() <= stale_after]
        if fresh:
            worst = max(fresh, key=lambda r: (_WORST.get(r.state, 2), r.failures))
            out[name] = Seen(worst.state, worst.failures, len(fresh), None)
        else:
            last = max(rows, key=lambda r: r.reported_at)
            out[name] = Seen(last.state, last.failures, 0,
                             max(0.0, (now - last.reported_at).total_seconds()))
    return out


def describe_seen(seen: Seen) -> str:
    """A readiness check's text for a circuit on the board."""
    if seen.stale_for is not None:
        return (f"warning: stale: no worker process has reported it for {seen.stale_for:.0f}s "
                f"(last known {seen.state}); is `lienthong worker` running?")
    return describe(seen.state, seen.failures)


def board_checks(board: CircuitBoard, now: datetime | None = None) -> dict[str, str]:
    """``circuit:<destination>`` checks of every circuit on the board and of this process's
    own (a process's own circuits are its present state: they win)."""
    checks: dict[str, str] = {}
    try:
        seen = board_view(board.reports(), now or datetime.now(UTC))
    except HubError as exc:
        seen = {}
        checks["circuits"] = f"warning: unknown (the store did not answer: {exc})"
    for name, s in seen.items():
        checks[f"circuit:{name}"] = describe_seen(s)
    for name, (state, failures) in states().items():
        checks[f"circuit:{name}"] = describe(state, failures)
    return checks


class BoardCollector(Collector):
    """``lienthong_circuit_state`` of every destination on the board (with this process's own
    circuits over them), and ``lienthong_circuit_report_age_seconds``: how long ago a worker
    process last reported it (past the board's stale limit, the state is no longer known)."""

    def __init__(self, board: CircuitBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "lienthong_circuit_state",
            "Circuit breaker of calls to a destination, as its worker processes report it (the "
            "worst of them): 0 closed, 1 half-open, 2 open", labels=["destination"])
        age = GaugeMetricFamily(
            "lienthong_circuit_report_age_seconds",
            "Seconds since a worker process last reported the destination's circuit (reports "
            f"are renewed every {HEARTBEAT:.0f}s; older than {STALE_AFTER:.0f}s: stale)",
            labels=["destination"])
        now = datetime.now(UTC)
        values: dict[str, float] = {}
        try:
            reports = self.board.reports()
        except HubError as exc:  # a scrape must not fail because the store is down
            log.debug("circuit reports unavailable: %s", exc)
            reports = []
        for name, seen in board_view(reports, now).items():
            values[name] = STATE_VALUES.get(seen.state, 2.0)
        for name, rows in _newest(reports).items():
            age.add_metric([name], max(0.0, (now - rows).total_seconds()))
        for name, (state, _) in states().items():
            values[name] = STATE_VALUES.get(state, 2.0)
        for name, value in sorted(values.items()):
            gauge.add_metric([name], value)
        yield gauge
        yield age


def _newest(reports: Sequence[Report]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for r in reports:
        if r.destination not in out or r.reported_at > out[r.destination]:
            out[r.destination] = r.reported_at
    return out
