"""Counters of what consumers do with failed deliveries, in one registry per process: a worker
process serves it (hub.workerhealth), tests read it. Labels stay bounded: destinations and
tiers come from the configuration, reason codes from the hub's dotted vocabulary."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RETRIES = Counter(
    "lienthong_retries",
    "Deliveries copied to a retry tier (confirmed by the broker), by destination, tier (the "
    "index of the retry queue, P.retry.<tier>) and the failure's reason code",
    ["destination", "tier", "reason_code"],
    registry=REGISTRY,
)

DEAD_LETTERS = Counter(
    "lienthong_dead_letters",
    "Deliveries parked for an operator (confirmed by the broker), by destination, queue "
    "(dead: retries exhausted or refused for good; invalid: never retried) and reason code",
    ["destination", "queue", "reason_code"],
    registry=REGISTRY,
)

MESSAGES = Counter(
    "lienthong_consumer_messages",
    "Deliveries a consumer finished, by consumer, event type and outcome (handled; duplicate "
    "absorbed; retried: copied to a retry tier; held: sent behind an earlier message of its "
    "dossier; dead or invalid: parked for an operator)",
    ["consumer", "type", "outcome"],
    registry=REGISTRY,
)

STAGE_SECONDS = Histogram(
    "lienthong_consumer_stage_seconds",
    "Stages of a delivery in a consumer: verify (decode, processed-id lookup, signature), "
    "handle (the handler: the system's call), record (its recordings committed), confirm (the "
    "broker's confirms of what it publishes); ack (recording the processed ids and acking "
    "them, once per batch)",
    ["consumer", "stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)

STAGES = ("verify", "handle", "record", "confirm", "ack")
MAX_TYPES = 64  # distinct event types labelled per process; the rest are "other"
_types: set[str] = set()


def type_label(event_type: str | None) -> str:
    """The event type as a label: the hub's types are a few dozen; an unexpected flood of
    others (a misbehaving sender's) shares one label instead of growing the series."""
    if not event_type:
        return "unknown"
    if event_type in _types:
        return event_type
    if len(_types) >= MAX_TYPES:
        return "other"
    _types.add(event_type)
    return event_type


class ConsumerMetrics:
    """One consumer's series, their children looked up once (a delivery's observations cost
    a few microseconds: see docs/performance.md#pipeline-metrics)."""

    __slots__ = ("_counts", "name", "stage")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stage = {s: STAGE_SECONDS.labels(name, s) for s in STAGES}
        self._counts: dict[tuple[str, str], Any] = {}

    def count(self, event_type: str | None, outcome: str) -> None:
        key = (type_label(event_type), outcome)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = MESSAGES.labels(self.name, *key)
        child.inc()
