"""Counters of what consumers do with failed deliveries, in one registry per process: a worker
process serves it (hub.workerhealth), tests read it. Labels stay bounded: destinations and
tiers come from the configuration, reason codes from the hub's dotted vocabulary."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
