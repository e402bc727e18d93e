"""Apply a ``Topology`` to a broker, and read back what exists.

Declaring is idempotent: a second run finds everything in place and changes nothing. RabbitMQ
cannot change a queue's or exchange's arguments in place, so an existing declaration that differs
from the configuration is reported (which one, which argument, both values, what to do) instead
of being half-applied. This runs once at start-up or from the CLI, so it uses pika's blocking
connection; the hot path (publisher, consumer) is asynchronous. Given the nodes of a cluster,
it connects to the first that answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from hub import headers as h
from hub.broker.connection import URLS_HINT, node_of
from hub.broker.topology import BindingDecl, Topology
from hub.errors import BrokerUnavailable, ConfigError

_NOT_FOUND = 404
_PRECONDITION_FAILED = 406
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>queue|exchange) '(?P<name>[^']+)'"
    r" in vhost '[^']*': received (?P<received>.+?) but current is (?P<current>.+)$"
)


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "exchange", "queue", "binding"
    name: str
    outcome: str  # "created", "exists", "bound"

    def __str__(self) -> str:
        return f"{self.outcome:8} {self.kind:8} {self.name}"


@dataclass(frozen=True, slots=True)
class Conflict:
    kind: str
    name: str
    argument: str
    configured: str
    existing: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.name!r}: argument {self.argument!r} is {self.existing} on the "
            f"broker but the configuration asks for {self.configured}"
        )


class TopologyConflict(ConfigError):
    """Existing declarations differ from the configuration."""

    code = "server.topology_conflict"

    def __init__(self, conflicts: list[Conflict], actions: list[Action], vhost: str) -> None:
        self.conflicts = conflicts
        self.actions = actions
        lines = "".join(f"\n  - {c}" for c in conflicts)
        super().__init__(
            f"the broker's declarations differ from the configuration:{lines}\n"
            "RabbitMQ cannot change the arguments of an existing queue or exchange (and reports "
            "one differing argument per queue at a time). Either set the configuration back to "
            "the existing value, or drain the queue, delete it (rabbitmqctl delete_queue "
            f"--vhost {vhost!r} <name>) and run `lienthong topology apply` again.",
            field=conflicts[0].name,
        )


@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    role: str
    exists: bool
    messages: int = 0  # ready messages (not counting those delivered and not yet acked)
    consumers: int = 0


class _NotFoundFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "NOT_FOUND" not in record.getMessage()


@contextmanager
def _quiet_misses() -> Iterator[None]:
    """pika logs a warning whenever the broker closes a channel; a passive declare of something
    absent does that on purpose here."""
    logger = logging.getLogger("pika.channel")
    quiet = _NotFoundFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _urls(amqp_url: str | Sequence[str]) -> list[str]:
    return [amqp_url] if isinstance(amqp_url, str) else list(amqp_url)


def connect(amqp_url: str | Sequence[str], purpose: str) -> pika.BlockingConnection:
    """A blocking connection to the first node of ``amqp_url`` (one URL or a cluster's) that
    answers."""
    urls = _urls(amqp_url)
    failures: list[str] = []
    for url in urls:
        params = pika.URLParameters(url)
        params.client_properties = {"connection_name": f"lienthong {purpose}"}
        try:
            return pika.BlockingConnection(params)
        except AMQPError as exc:
            failures.append(f"{node_of(url)}: {exc!r}")
    where = "RabbitMQ at" if len(urls) == 1 else f"any of the {len(urls)} RabbitMQ nodes:"
    raise BrokerUnavailable(
        f"cannot connect to {where} {'; '.join(failures)}; {URLS_HINT}",
        field="amqp_urls" if len(urls) > 1 else "amqp_url",
    )


def _conflict(exc: ChannelClosedByBroker, kind: str, name: str) -> Conflict:
    match = _INEQUIVALENT.search(exc.reply_text)
    if match is None:
        return Conflict(kind, name, "?", "?", exc.reply_text)
    return Conflict(
        match["kind"], match["name"], match["arg"], match["received"], match["current"]
    )


def apply(topology: Topology, amqp_url: str | Sequence[str]) -> list[Action]:
    """Declare every exchange, queue and binding, through the first node of ``amqp_url`` that
    answers. Returns what was created and what already existed; raises ``TopologyConflict``
    listing every mismatching declaration."""
    with _quiet_misses():
        return _apply(topology, amqp_url)


def _apply(topology: Topology, amqp_url: str | Sequence[str]) -> list[Action]:
    actions: list[Action] = []
    conflicts: list[Conflict] = []
    conn = connect(amqp_url, "topology")
    try:
        ch = conn.channel()
        for ex in topology.exchanges:
            existed, ch = _exists(conn, ch, "exchange", ex.name)
            try:
                ch.exchange_declare(
                    ex.name, ex.type, durable=True, auto_delete=False, arguments=ex.arguments
                )
                actions.append(Action("exchange", ex.name, "exists" if existed else "created"))
            except ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED:
                    raise
                conflicts.append(_conflict(exc, "exchange", ex.name))
                ch = conn.channel()
        for q in topology.queues:
            existed, ch = _exists(conn, ch, "queue", q.name)
            try:
                ch.queue_declare(
                    q.name, durable=True, exclusive=False, auto_delete=False, arguments=q.arguments
                )
                actions.append(Action("queue", q.name, "exists" if existed else "created"))
            except ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED:
                    raise
                conflicts.append(_conflict(exc, "queue", q.name))
                ch = conn.channel()
        if conflicts:
            vhost = pika.URLParameters(_urls(amqp_url)[0]).virtual_host
            raise TopologyConflict(conflicts, actions, vhost)
        for b in topology.bindings:
            if b.to_exchange:
                ch.exchange_bind(b.queue, b.exchange, routing_key=b.routing_key,
                                 arguments=b.arguments)
            else:
                ch.queue_bind(b.queue, b.exchange, routing_key=b.routing_key,
                              arguments=b.arguments)
            actions.append(Action("binding", _binding(b), "bound"))
        probe = _Probe(conn, ch)
        _unbind_stale(probe, topology, actions)
        for dest in topology.destinations:
            for queue in former_candidates(topology, dest.name, probe.exists):
                count = probe.depth(queue)
                if count is not None:
                    actions.append(Action("queue", f"{queue} (former work queue of "
                                          f"{dest.name}: {count} ready; its workers drain it "
                                          "before their partitions; delete it once empty)",
                                          "kept"))
    finally:
        if conn.is_open:
            conn.close()
    return actions


def _binding(b: BindingDecl) -> str:
    what = f"{b.exchange} -> {b.queue}"
    if b.routing_key:
        what += f" {b.routing_key!r}"
    elif b.arguments:
        what += " " + " ".join(f"{k}={v}" for k, v in b.arguments.items())
    return what


class _Probe:
    """Existence of exchanges and queues on one blocking connection, each name asked once (a
    passive declare of something absent closes the channel: a new one is opened)."""

    def __init__(self, conn: pika.BlockingConnection, ch: BlockingChannel) -> None:
        self.conn = conn
        self.ch = ch
        self._known: dict[tuple[str, str], bool] = {}

    def exists(self, kind: str, name: str) -> bool:
        if (kind, name) not in self._known:
            self._known[(kind, name)], self.ch = _exists(self.conn, self.ch, kind, name)
        return self._known[(kind, name)]

    def depth(self, queue: str) -> int | None:
        """Ready messages of ``queue``; None when it does not exist."""
        try:
            return int(self.ch.queue_declare(queue, passive=True).method.message_count)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != _NOT_FOUND:
                raise
            self.ch = self.conn.channel()
            return None


def former_candidates(topology: Topology, destination: str,
                      exists: Callable[[str, str], bool]) -> list[str]:
    """The destination's former work queues worth asking about: its plain queue once it is
    partitioned, and other partitions only if it ever was (its route exchange exists)."""
    dest = topology.destination(destination)
    former = topology.former_queues(destination)
    if exists("exchange", topology.names.route(dest.name)):
        return list(former)
    plain = topology.names.work(dest.name)
    return [plain] if plain in former else []


def _unbind_stale(probe: _Probe, topology: Topology, actions: list[Action]) -> None:
    """Remove the bindings of an earlier configuration (``Topology.stale_bindings``) whose
    exchange and queue exist. Unbinding what was never bound is harmless to the broker, so only
    existence is checked."""
    for b in topology.stale_bindings:
        if not probe.exists("exchange", b.exchange):
            continue
        if not probe.exists("exchange" if b.to_exchange else "queue", b.queue):
            continue
        if b.to_exchange:
            probe.ch.exchange_unbind(b.queue, b.exchange, routing_key=b.routing_key,
                                     arguments=b.arguments)
        else:
            probe.ch.queue_unbind(b.queue, b.exchange, routing_key=b.routing_key,
                                  arguments=b.arguments)
        if h.SLOT not in b.arguments:  # 64 slots each: too many lines to be of use
            actions.append(Action("binding", _binding(b), "unbound"))


def former_queues(topology: Topology, destination: str,
                  amqp_url: str | Sequence[str]) -> list[str]:
    """The destination's former work queues that exist on the broker (its workers drain them
    before their partitions): passive declares, nothing is created."""
    with _quiet_misses():
        conn = connect(amqp_url, "topology check")
        try:
            probe = _Probe(conn, conn.channel())
            return [q for q in former_candidates(topology, destination, probe.exists)
                    if probe.exists("queue", q)]
        finally:
            if conn.is_open:
                conn.close()


def _exists(
    conn: pika.BlockingConnection, ch: BlockingChannel, kind: str, name: str
) -> tuple[bool, BlockingChannel]:
    try:
        if kind == "exchange":
            ch.exchange_declare(name, passive=True)
        else:
            ch.queue_declare(name, passive=True)
        return True, ch
    except ChannelClosedByBroker as exc:
        if exc.reply_code != _NOT_FOUND:
            raise
        return False, conn.channel()


def inspect(topology: Topology, amqp_url: str | Sequence[str]) -> list[QueueState]:
    """Depth and consumers of every queue of the topology (passive declares: nothing is
    created)."""
    with _quiet_misses():
        return _inspect(topology, amqp_url)


def _inspect(topology: Topology, amqp_url: str | Sequence[str]) -> list[QueueState]:
    states: list[QueueState] = []
    conn = connect(amqp_url, "topology show")
    try:
        ch = conn.channel()
        for q in topology.queues:
            try:
                ok = ch.queue_declare(q.name, passive=True)
            except ChannelClosedByBroker as exc:
                if exc.reply_code != _NOT_FOUND:
                    raise
                states.append(QueueState(q.name, q.role, False))
                ch = conn.channel()
                continue
            states.append(
                QueueState(
                    q.name, q.role, True, ok.method.message_count, ok.method.consumer_count
                )
            )
    finally:
        if conn.is_open:
            conn.close()
    return states
