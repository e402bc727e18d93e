"""The hub's RabbitMQ topology as data: which exchanges, queues and bindings exist, with every
argument explicit. ``hub.broker.declare`` applies it to a broker.

- ``P.events`` topic exchange; what no binding matches goes through its alternate exchange
  ``P.unroutable`` (fanout) into the queue ``P.unroutable``, so nothing is silently dropped.
- ``P.work.<dest>``: one quorum queue per destination, bound on ``P.events``. A message the
  consumer keeps crashing on is dead-lettered by the broker into ``P.dead`` after
  ``delivery_limit`` deliveries.
- ``P.retry.<i>``: one quorum queue per retry tier with a message TTL; an expired message is
  dead-lettered into the headers exchange ``P.return``, where each work queue is bound on its
  own ``lt-return-to`` value, so it goes back to the queue it came from.
- ``P.dead``, ``P.invalid``: terminal queues, read by operators.

Every queue uses ``overflow=reject-publish``: a full queue refuses a publish (the publisher
sees a nack) rather than dropping its oldest message, and at-least-once dead-lettering needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub import headers as h
from hub.adapters import AdapterSpec
from hub.broker.destinations import (
    Destination,
    as_destinations,
    discover_destinations,
    load_overrides,
    merge,
)
from hub.broker.names import Names
from hub.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ExchangeDecl:
    name: str
    type: str  # "topic", "fanout", "headers"
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueDecl:
    name: str
    role: str  # "work", "retry", "dead", "invalid", "unroutable"
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BindingDecl:
    exchange: str
    queue: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    names: Names
    destinations: tuple[Destination, ...]
    exchanges: tuple[ExchangeDecl, ...]
    queues: tuple[QueueDecl, ...]
    bindings: tuple[BindingDecl, ...]
    retry_tiers: tuple[float, ...]
    # Adapters that failed to import while discovering; their queues are not in this topology.
    problems: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        destinations: Iterable[Destination | AdapterSpec] | Mapping[str, AdapterSpec] | None = None,
        *,
        topology_file: Path | None = None,
    ) -> Topology:
        """Build the topology from ``settings`` (a ``hub.settings.Settings``).

        ``destinations``: adapter specs or destinations; ``None`` discovers the installed
        adapters (one that fails to import is left out and named in ``problems``). The topology
        file (``settings.topology_file`` unless given) is merged over them."""
        problems: list[str] = []
        if destinations is None:
            base, problems = discover_destinations()
        else:
            base = as_destinations(destinations)
        path = topology_file if topology_file is not None else Path(settings.topology_file)
        merged = merge(base, load_overrides(path))
        return build(
            Names(settings.name_prefix),
            merged,
            retry_tiers=list(settings.retry_tiers),
            delivery_limit=settings.delivery_limit,
            work_max_length=settings.work_queue_max_length,
            dead_max_length=settings.dead_letter_max_length,
            problems=problems,
        )

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise ConfigError(
            f"no destination named {name!r}; known: {[d.name for d in self.destinations]}",
            field="destination",
        )

    def work_queue(self, name: str) -> str:
        return self.names.work(self.destination(name).name)

    def describe(self) -> list[str]:
        """The intended topology, one line per declaration, for ``lienthong topology show``."""
        lines = ["exchanges:"]
        for ex in self.exchanges:
            lines.append(f"  {ex.name}  ({ex.type}){_args(ex.arguments)}")
        lines.append("queues:")
        for q in self.queues:
            lines.append(f"  {q.name}  [{q.role}]{_args(q.arguments)}")
        lines.append("bindings:")
        for b in self.bindings:
            key = f" {b.routing_key!r}" if b.routing_key else ""
            lines.append(f"  {b.exchange} -> {b.queue}{key}{_args(b.arguments)}")
        return lines


def _args(arguments: Mapping[str, Any]) -> str:
    if not arguments:
        return ""
    return "  " + " ".join(f"{k}={v if v != '' else repr(v)}" for k, v in arguments.items())


def build(
    names: Names,
    destinations: Iterable[Destination],
    *,
    retry_tiers: list[float],
    delivery_limit: int,
    work_max_length: int,
    dead_max_length: int,
    problems: Iterable[str] = (),
) -> Topology:
    dests = tuple(destinations)
    _check_limits(retry_tiers, delivery_limit, work_max_length, dead_max_length)
    exchanges = (
        ExchangeDecl(names.unroutable, "fanout"),
        ExchangeDecl(names.events, "topic", {"alternate-exchange": names.unroutable}),
        # A retry whose lt-return-to matches no work queue any more (destination removed) lands
        # in the unroutable queue rather than vanishing.
        ExchangeDecl(names.return_exchange, "headers", {"alternate-exchange": names.unroutable}),
    )
    terminal = {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
        "x-max-length": dead_max_length,
        # No delivery limit on terminal queues: they have no dead-letter target, so the limit
        # would drop a message an operator tool failed on.
    }
    queues: list[QueueDecl] = [
        QueueDecl(names.unroutable, "unroutable", dict(terminal)),
        QueueDecl(names.dead, "dead", dict(terminal)),
        QueueDecl(names.invalid, "invalid", dict(terminal)),
    ]
    for i, ttl in enumerate(retry_tiers):
        queues.append(
            QueueDecl(
                names.retry(i),
                "retry",
                {
                    "x-queue-type": "quorum",
                    "x-message-ttl": round(ttl * 1000),
                    "x-dead-letter-exchange": names.return_exchange,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                    "x-max-length": work_max_length,
                },
            )
        )
    for dest in dests:
        queues.append(
            QueueDecl(
                names.work(dest.name),
                "work",
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": delivery_limit,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": names.dead,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                    "x-max-length": work_max_length,
                    "x-single-active-consumer": dest.ordered,
                },
            )
        )
    bindings: list[BindingDecl] = [BindingDecl(names.unroutable, names.unroutable)]
    for dest in dests:
        queue = names.work(dest.name)
        bindings.extend(BindingDecl(names.events, queue, pattern) for pattern in dest.bindings)
        bindings.append(
            BindingDecl(names.return_exchange, queue, "", {"x-match": "all", h.RETURN_TO: queue})
        )
    return Topology(
        names=names,
        destinations=dests,
        exchanges=exchanges,
        queues=tuple(queues),
        bindings=tuple(bindings),
        retry_tiers=tuple(retry_tiers),
        problems=tuple(problems),
    )


def _check_limits(
    retry_tiers: list[float], delivery_limit: int, work_max_length: int, dead_max_length: int
) -> None:
    for i, ttl in enumerate(retry_tiers):
        if not ttl > 0:
            raise ConfigError(
                f"retry tier {i} is {ttl!r} seconds; tiers must be positive "
                "(LIENTHONG_RETRY_TIERS)",
                field="retry_tiers",
            )
    for name, value in (
        ("delivery_limit", delivery_limit),
        ("work_queue_max_length", work_max_length),
        ("dead_letter_max_length", dead_max_length),
    ):
        if value < 1:
            raise ConfigError(f"must be at least 1, got {value!r}", field=name)
