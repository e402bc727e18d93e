"""The circuits' board (hub.circuits): what worker processes report of their circuits, read
by the server. The view's rule (pure), the board on both databases, and a reporter that
reports a change at once, renews its report and takes it off the board when it stops."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from hub import circuits
from hub.circuits import Report, Reporter, board_view
from hub.outbound import CallPolicy, PolicyConfig
from hub.store import Store
from hub.store.circuitboard import StoreCircuitBoard

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def report(destination: str, process: str, state: str, age: float, failures: int = 0
           ) -> Report:
    at = NOW - timedelta(seconds=age)
    return Report(destination, process, state, failures, at, at)


def test_the_worst_fresh_report_wins_and_a_report_not_renewed_is_stale() -> None:
    seen = board_view([
        report("portal", "a:1", "closed", 1),
        report("portal", "a:2", "open", 2, failures=5),
        report("portal", "a:3", "closed", 600),  # a dead process's last word: ignored
        report("postal", "a:9", "open", circuits.STALE_AFTER + 5, failures=3),
    ], NOW)
    assert seen["portal"] == circuits.Seen("open", 5, 2, None)
    assert seen["postal"].stale_for == circuits.STALE_AFTER + 5
    assert seen["postal"].processes == 0
    assert circuits.describe_seen(seen["portal"]).startswith("warning: circuit open after 5")
    assert circuits.describe_seen(seen["postal"]).startswith(
        f"warning: stale: no worker process has reported it for {circuits.STALE_AFTER + 5:.0f}s")


def test_the_store_board_replaces_a_process_reports_and_forgets_them(store: Store) -> None:
    board = StoreCircuitBoard(store.engine)
    a, b = f"host:{uuid.uuid4().hex[:6]}", f"host:{uuid.uuid4().hex[:6]}"
    dest = f"d{uuid.uuid4().hex[:6]}"
    board.report(a, {dest: ("open", 4, NOW), dest + "x": ("closed", 0, NOW)}, NOW)
    board.report(b, {dest: ("closed", 0, NOW)}, NOW)
    board.report(a, {dest: ("half-open", 4, NOW)}, NOW + timedelta(seconds=1))
    mine = [r for r in board.reports() if r.destination.startswith(dest)]
    assert {(r.destination, r.process, r.state) for r in mine} == {
        (dest, a, "half-open"), (dest, b, "closed")}
    assert next(r for r in mine if r.process == a).reported_at == NOW + timedelta(seconds=1)
    board.forget(a)
    assert [(r.process, r.state) for r in board.reports() if r.destination == dest] == [
        (b, "closed")]
    board.forget(b)


def test_a_reporter_reports_a_change_at_once_and_leaves_the_board_when_it_stops(
        store: Store) -> None:
    board = StoreCircuitBoard(store.engine)
    name = f"sys-{uuid.uuid4().hex[:6]}"
    policy = CallPolicy(name, PolicyConfig(breaker_failures=2, breaker_reset=600))

    def mine() -> list[Report]:
        return [r for r in board.reports() if r.destination == name]

    async def scenario() -> None:
        reporter = Reporter(board, "test:1", heartbeat=3600)
        await reporter.once()
        [first] = mine()
        assert (first.state, first.failures) == ("closed", 0)
        await reporter.once()  # nothing changed, heartbeat not due: not written again
        assert mine()[0].reported_at == first.reported_at
        policy.breaker.failure()
        policy.breaker.failure()
        await reporter.once()
        [opened] = mine()
        assert (opened.state, opened.failures) == ("open", 2)
        assert opened.changed_at >= first.changed_at
        checks = circuits.board_checks(board)
        assert checks[f"circuit:{name}"].startswith("warning: circuit open after 2")
        async with circuits.reporting(board, "test:2"):
            pass
        assert [r.process for r in mine()] == ["test:1"]  # test:2 took its own off

    asyncio.run(scenario())
    board.forget("test:1")
    assert policy.breaker.state == "open"  # held until here: circuits are weakly registered
