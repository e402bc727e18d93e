"""The hub's RabbitMQ topology as data: which exchanges, queues and bindings exist, with every
argument explicit. ``hub.broker.declare`` applies it to a broker.

- ``P.events`` topic exchange; what no binding matches goes through its alternate exchange
  ``P.unroutable`` (fanout) into the queue ``P.unroutable``, so nothing is silently dropped.
- ``P.work.<dest>``: one quorum queue per destination, bound on ``P.events``. A message the
  consumer keeps crashing on is dead-lettered by the broker into ``P.dead`` after
  ``delivery_limit`` deliveries.
- A destination with ``partitions`` n > 1 has n work queues ``P.work.<dest>.p<i>`` instead,
  each with a single active consumer (ordered). ``P.events`` routes the destination's patterns
  to its headers exchange ``P.route.<dest>``, which sends a message to the partition of its
  ``lt-slot`` header (the dossier's slot, ``hub.broker.names.slot_of``, set by
  ``Outgoing.signed``): partition i is bound on slots i, i + n, i + 2n... A message without a
  slot goes through ``P.route.<dest>.unslotted`` (the route's alternate exchange) to partition
  0. The hub computes the slot itself rather than using RabbitMQ's consistent-hash exchange: no
  plugin to enable on a province's broker, and an exact, even split.
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
    MAX_PARTITIONS,
    Destination,
    as_destinations,
    load_overrides,
    resolve,
)
from hub.broker.names import SLOTS, Names
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
    queue: str  # the queue bound, or the exchange when ``to_exchange``
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    to_exchange: bool = False  # an exchange-to-exchange binding


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
    # Bindings that an earlier configuration made and this one must not keep (a destination
    # now partitioned: its plain work queue no longer takes new events; a partition count
    # changed: slots bound to another partition; a destination disabled: its queue or route).
    # ``declare.apply`` removes those that exist.
    stale_bindings: tuple[BindingDecl, ...] = ()
    # Per destination, the work queues an earlier configuration may have left with messages
    # (``former_queues``): its workers drain the ones that exist before their partitions.
    former: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        destinations: Iterable[Destination | AdapterSpec] | Mapping[str, AdapterSpec] | None = None,
        *,
        topology_file: Path | None = None,
    ) -> Topology:
        """Build the topology from ``settings`` (a ``hub.settings.Settings``).

        ``destinations``: adapter specs or destinations; ``None``: the installed adapters (one
        that fails to import is left out and named in ``problems``). The topology file
        (``settings.topology_file`` unless given) is merged over them (``destinations.resolve``).
        """
        path = topology_file if topology_file is not None else Path(settings.topology_file)
        given = None if destinations is None else as_destinations(destinations)
        merged, left_out, problems = resolve(given, load_overrides(path))
        return build(
            Names(settings.name_prefix),
            merged,
            disabled=left_out,
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
        """The one work queue of an unpartitioned destination (partition 0 of a partitioned
        one: see ``work_queues``)."""
        return self.work_queues(name)[0]

    def work_queues(self, name: str) -> list[str]:
        """Every work queue of a destination: its partitions in order."""
        dest = self.destination(name)
        return self.names.partitions(dest.name, dest.partitions)

    def former_queues(self, name: str) -> tuple[str, ...]:
        """Work queues of the destination under other partition counts: those that exist hold
        messages taken in before the change, to be handled before the partitions' own."""
        return self.former.get(self.destination(name).name, ())

    def describe(self) -> list[str]:
        """The intended topology, one line per declaration, for ``lienthong topology show``."""
        lines = ["exchanges:"]
        for ex in self.exchanges:
            lines.append(f"  {ex.name}  ({ex.type}){_args(ex.arguments)}")
        lines.append("queues:")
        for q in self.queues:
            lines.append(f"  {q.name}  [{q.role}]{_args(q.arguments)}")
        lines.append("bindings:")
        slots: dict[tuple[str, str], list[int]] = {}
        for b in self.bindings:
            if h.SLOT in b.arguments:
                # 64 slot bindings per partitioned destination: one line per partition.
                slots.setdefault((b.exchange, b.queue), []).append(int(b.arguments[h.SLOT]))
                continue
            key = f" {b.routing_key!r}" if b.routing_key else ""
            kind = " (exchange)" if b.to_exchange else ""
            lines.append(f"  {b.exchange} -> {b.queue}{kind}{key}{_args(b.arguments)}")
        for (exchange, queue), numbers in slots.items():
            lines.append(f"  {exchange} -> {queue}  {h.SLOT} in {sorted(numbers)}")
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
    disabled: Mapping[str, Iterable[str]] | None = None,
) -> Topology:
    """``disabled``: the patterns of the destinations the topology file leaves out, by name;
    their bindings are stale (an existing queue of theirs is kept, but takes no new events)."""
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
        for queue in names.partitions(dest.name, dest.partitions):
            queues.append(
                QueueDecl(
                    queue,
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
    stale: list[BindingDecl] = []
    former: dict[str, tuple[str, ...]] = {}
    partitioned: list[ExchangeDecl] = []
    for dest in dests:
        parts = names.partitions(dest.name, dest.partitions)
        if dest.partitions == 1:
            queue = parts[0]
            bindings.extend(BindingDecl(names.events, queue, p) for p in dest.bindings)
        else:
            route, unslotted = names.route(dest.name), names.unslotted(dest.name)
            partitioned += [ExchangeDecl(unslotted, "fanout"),
                            ExchangeDecl(route, "headers", {"alternate-exchange": unslotted})]
            bindings.extend(BindingDecl(names.events, route, p, to_exchange=True)
                            for p in dest.bindings)
            bindings.extend(
                BindingDecl(route, parts[slot % dest.partitions], "",
                            {"x-match": "all", h.SLOT: slot})
                for slot in range(SLOTS)
            )
            bindings.append(BindingDecl(unslotted, parts[0]))
            # The plain work queue of before: no new events (its retries still come back).
            stale.extend(BindingDecl(names.events, names.work(dest.name), p)
                         for p in dest.bindings)
        # Partitions of another count: the queues may hold messages to drain first, and
        # their bindings must go (or a message would reach two partitions).
        others = [names.work(dest.name)] if dest.partitions > 1 else []
        others += [names.partition(dest.name, i) for i in range(MAX_PARTITIONS)
                   if i >= dest.partitions or dest.partitions == 1]
        former[dest.name] = tuple(others)
        if dest.partitions == 1:
            # Once partitioned: the route no longer takes the destination's events.
            stale.extend(BindingDecl(names.events, names.route(dest.name), p, to_exchange=True)
                         for p in dest.bindings)
        else:
            stale.extend(
                BindingDecl(names.route(dest.name), names.partition(dest.name, i), "",
                            {"x-match": "all", h.SLOT: slot})
                for i in range(MAX_PARTITIONS) for slot in range(SLOTS)
                if slot % dest.partitions != i
            )
        for queue in parts:
            bindings.append(BindingDecl(names.return_exchange, queue, "",
                                        {"x-match": "all", h.RETURN_TO: queue}))
    for name, patterns in (disabled or {}).items():
        # Its plain queue or, partitioned before, its route: whichever exists is unbound.
        stale.extend(BindingDecl(names.events, names.work(name), p) for p in patterns)
        stale.extend(BindingDecl(names.events, names.route(name), p, to_exchange=True)
                     for p in patterns)
    return Topology(
        names=names,
        destinations=dests,
        exchanges=exchanges + tuple(partitioned),
        queues=tuple(queues),
        bindings=tuple(bindings),
        retry_tiers=tuple(retry_tiers),
        problems=tuple(problems),
        stale_bindings=tuple(stale),
        former=former,
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
