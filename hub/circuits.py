"""The circuit breakers of this process, by destination (each ``hub.outbound.CallPolicy``
registers its own), for readiness and metrics: ``lienthong_circuit_state`` (0 closed, 1
half-open, 2 open) on the registry a worker process serves (hub.broker.metrics)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
