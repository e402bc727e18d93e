"""The topology: built from destinations and the topology file, declared idempotently on the real
broker, conflicts reported clearly, and the broker-side routing (alternate exchange, retry tiers
back to their work queue, delivery limit to the dead letters) checked end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from hub import headers as h
from hub.adapters import AdapterSpec
from hub.broker import declare
from hub.broker.destinations import Destination
from hub.broker.messages import Outgoing
from hub.broker.names import Names
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.errors import ConfigError
from hub.settings import Settings
from hub.testing.broker import (
    NullSigner,
    delete_queues,
    read_all,
    sample_envelope,
    topology_queues,
)
from hub.testing.waiting import wait_for

ORDERS = Destination("orders", ("dossier.*.*.#",), ordered=True)
AUDIT = Destination("audit", ("payment.#",), ordered=False)

@pytest.fixture(autouse=True)
def _leave_the_broker_light(settings: Settings) -> Iterator[None]:
    yield
    queues = topology_queues(settings.name_prefix, ['orders', 'audit'], len(settings.retry_tiers))
    delete_queues(settings.amqp_url, [*queues])



def _topology(settings: Settings, tmp_path: Path, *dests: Destination, toml: str = "") -> Topology:
    path = tmp_path / "topology.toml"
    path.write_text(toml)
    return Topology.from_settings(settings, list(dests or (ORDERS,)), topology_file=path)


# -- building ------------------------------------------------------------------------------


def test_every_queue_is_a_durable_quorum_queue_with_explicit_limits(
    settings: Settings, tmp_path: Path
) -> None:
    topo = _topology(settings, tmp_path, ORDERS, AUDIT)
    n = Names(settings.name_prefix)
    queues = {q.name: q for q in topo.queues}
    assert set(queues) == {
        n.unroutable, n.dead, n.invalid, n.retry(0), n.retry(1), n.retry(2),
        n.work("orders"), n.work("audit"),
    }
    for q in queues.values():
        assert q.arguments["x-queue-type"] == "quorum"
        assert q.arguments["x-overflow"] == "reject-publish"
        assert q.arguments["x-max-length"] > 0
    work = queues[n.work("orders")].arguments
    assert work["x-delivery-limit"] == settings.delivery_limit
    assert work["x-dead-letter-exchange"] == ""
    assert work["x-dead-letter-routing-key"] == n.dead
    assert work["x-dead-letter-strategy"] == "at-least-once"
    assert work["x-single-active-consumer"] is True
    assert queues[n.work("audit")].arguments["x-single-active-consumer"] is False
    assert [queues[n.retry(i)].arguments["x-message-ttl"] for i in range(3)] == [200, 400, 600]
    for i in range(3):
        retry = queues[n.retry(i)].arguments
        assert retry["x-dead-letter-exchange"] == n.return_exchange
        assert retry["x-dead-letter-strategy"] == "at-least-once"
    exchanges = {e.name: e for e in topo.exchanges}
    assert exchanges[n.events].type == "topic"
    assert exchanges[n.events].arguments == {"alternate-exchange": n.unroutable}
    assert exchanges[n.return_exchange].type == "headers"
    returns = [b for b in topo.bindings if b.exchange == n.return_exchange]
    assert {b.queue: b.arguments for b in returns} == {
        n.work("orders"): {"x-match": "all", h.RETURN_TO: n.work("orders")},
        n.work("audit"): {"x-match": "all", h.RETURN_TO: n.work("audit")},
    }
    events = {(b.queue, b.routing_key) for b in topo.bindings if b.exchange == n.events}
    assert events == {(n.work("orders"), "dossier.*.*.#"), (n.work("audit"), "payment.#")}


def test_adapter_specs_and_the_topology_file_merge(settings: Settings, tmp_path: Path) -> None:
    spec = AdapterSpec(
        name="portal", description="a portal", bindings=["dossier.submitted.#"],
        make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
        ordered=True,
    )
    other = AdapterSpec(
        name="gone", description="", bindings=["x.#"],
        make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
    )
    toml = """
[destinations.portal]
extra_bindings = ["dossier.status-changed.#"]
ordered = false

[destinations.ministry]
bindings = ["*.*.*.2_002492"]
description = "one procedure"

[destinations.gone]
enabled = false
"""
    path = tmp_path / "topology.toml"
    path.write_text(toml)
    topo = Topology.from_settings(settings, {"portal": spec, "gone": other}, topology_file=path)
    by_name = {d.name: d for d in topo.destinations}
    assert set(by_name) == {"portal", "ministry"}
    assert by_name["portal"].bindings == ("dossier.submitted.#", "dossier.status-changed.#")
    assert by_name["portal"].ordered is False
    assert by_name["portal"].origin == "adapter+topology.toml"
    assert by_name["ministry"].bindings == ("*.*.*.2_002492",)
    assert by_name["ministry"].ordered is True
    assert topo.work_queue("ministry") == f"{settings.name_prefix}.work.ministry"


@pytest.mark.parametrize(
    ("toml", "field_part", "words"),
    [
        ('[destinations.x]\nbindings = ["a..b"]', "bindings", "not a topic pattern"),
        ('[destinations.x]\ncolour = "red"', "colour", "unknown key"),
        ("[destinations.x]\nordered = true", "bindings", "has no bindings"),
        ('[destinations."Bad Name"]\nbindings = ["a"]', "Bad Name", "not usable in a queue name"),
        ('[queues]\nx = 1', "queues", "unknown top-level"),
        ('[destinations.x]\nbindings = "a.#"', "bindings", "must be a list"),
    ],
)
def test_topology_file_mistakes_name_the_field(
    settings: Settings, tmp_path: Path, toml: str, field_part: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _topology(settings, tmp_path, toml=toml)
    assert words in caught.value.message
    assert caught.value.field is not None and field_part in caught.value.field


def test_a_broken_adapter_is_left_out_with_a_reason(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class EntryPoint:
        def __init__(self, name: str, target: object) -> None:
            self.name, self.value, self._target = name, f"adapters.{name}:adapter", target

        def load(self) -> object:
            if isinstance(self._target, Exception):
                raise self._target
            return self._target

    good = AdapterSpec(
        name="good", description="", bindings=["dossier.#"],
        make_handler=lambda ctx: None,  # type: ignore[arg-type,return-value]
    )
    eps = [EntryPoint("good", good), EntryPoint("broken", ImportError("no module named lxml2"))]
    monkeypatch.setattr("hub.broker.destinations.entry_points", lambda group: eps)
    path = tmp_path / "t.toml"
    path.write_text("")
    topo = Topology.from_settings(settings, None, topology_file=path)
    assert [d.name for d in topo.destinations] == ["good"]
    assert len(topo.problems) == 1
    assert "'broken'" in topo.problems[0] and "no module named lxml2" in topo.problems[0]


def test_the_file_tunes_installed_adapters_a_topology_was_not_built_with(
    settings: Settings, tmp_path: Path
) -> None:
    # npsp and payment are installed (the repository's adapters are); this topology is built
    # with orders only.
    tables = """
[destinations.npsp]
partitions = 4

[destinations.payment]
extra_bindings = ["payment.refunded.#"]

[destinations.ministry]
bindings = ["*.*.*.2_002492"]
"""
    topo = _topology(settings, tmp_path, toml=tables + "[destinations.orders]\nconcurrency = 8\n")
    by_name = {d.name: d for d in topo.destinations}
    assert set(by_name) == {"orders", "ministry"}, "only what was asked for, and the file's own"
    assert by_name["orders"].concurrency == 8
    assert topo.problems == ()
    # Built from every installed adapter, the same tables tune them.
    (tmp_path / "topology.toml").write_text(tables)
    installed = Topology.from_settings(settings, None, topology_file=tmp_path / "topology.toml")
    every = {d.name: d for d in installed.destinations}
    assert every["npsp"].partitions == 4 and every["npsp"].origin == "adapter+topology.toml"
    assert "payment.refunded.#" in every["payment"].bindings


def test_a_broken_adapter_takes_the_tables_that_only_tune_it_along(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class EntryPoint:
        name, value = "broken", "adapters.broken:adapter"

        def load(self) -> object:
            raise ImportError("no module named lxml2")

    monkeypatch.setattr("hub.broker.destinations.entry_points", lambda group: [EntryPoint()])
    path = tmp_path / "t.toml"
    path.write_text("[destinations.broken]\nconcurrency = 4\n")
    topo = Topology.from_settings(settings, None, topology_file=path)
    assert topo.destinations == ()
    assert len(topo.problems) == 1 and "'broken'" in topo.problems[0]
    # Given bindings, the file declares the queue itself: its messages wait there.
    path.write_text('[destinations.broken]\nbindings = ["dossier.#"]\n')
    topo = Topology.from_settings(settings, None, topology_file=path)
    assert [(d.name, d.origin) for d in topo.destinations] == [("broken", "topology.toml")]


# -- on the broker -------------------------------------------------------------------------


def test_declaring_twice_changes_nothing(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path, ORDERS, AUDIT)
    first = declare.apply(topo, amqp_url)
    declared = [a for a in first if a.kind in ("exchange", "queue")]
    assert declared and all(a.outcome == "created" for a in declared)
    second = declare.apply(topo, amqp_url)
    assert [(a.kind, a.name) for a in second] == [(a.kind, a.name) for a in first]
    assert all(a.outcome == "exists" for a in second if a.kind in ("exchange", "queue"))
    states = {s.name: s for s in declare.inspect(topo, amqp_url)}
    assert all(s.exists and s.messages == 0 for s in states.values())


def test_a_conflicting_declaration_names_queue_argument_and_remedy(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    declare.apply(_topology(settings, tmp_path), amqp_url)
    changed = settings.model_copy(update={"delivery_limit": settings.delivery_limit + 5})
    with pytest.raises(declare.TopologyConflict) as caught:
        declare.apply(_topology(changed, tmp_path), amqp_url)
    conflict = caught.value.conflicts[0]
    work = f"{settings.name_prefix}.work.orders"
    assert (conflict.kind, conflict.name, conflict.argument) == ("queue", work, "x-delivery-limit")
    assert conflict.existing == f"'{settings.delivery_limit}'"
    assert conflict.configured == f"'{settings.delivery_limit + 5}'"
    text = str(caught.value)
    assert work in text and "x-delivery-limit" in text and "delete_queue" in text
    # Nothing else was disturbed: the original configuration still applies cleanly.
    declare.apply(_topology(settings, tmp_path), amqp_url)


def test_an_event_no_binding_matches_lands_in_the_unroutable_queue(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    declare.apply(topo, amqp_url)
    env = sample_envelope(1, type="vn.gov.postal.tracking-updated")

    async def publish() -> None:
        async with Publisher(amqp_url, settings) as pub:
            # Routed by the alternate exchange: confirmed, not returned.
            await pub.publish(Outgoing.signed(env, NullSigner(), topo.names.events))

    asyncio.run(publish())
    got = read_all(amqp_url, topo.names.unroutable)
    assert [r.message_id for r in got] == [env.id]
    assert got[0].routing_key == "postal.tracking-updated.000_00_00_H56.2_002492"
    assert read_all(amqp_url, topo.work_queue("orders")) == []


def _raw_publish(amqp_url: str, routing_key: str, body: bytes, headers: dict[str, object]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            "", routing_key, body,
            pika.BasicProperties(delivery_mode=2, message_id="m-1", headers=headers),
            mandatory=True,
        )
    finally:
        conn.close()


def test_an_expired_retry_goes_back_to_the_work_queue_it_came_from(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path, ORDERS, AUDIT)
    declare.apply(topo, amqp_url)
    orders, audit = topo.work_queue("orders"), topo.work_queue("audit")
    started = time.monotonic()
    _raw_publish(amqp_url, topo.names.retry(1), b"to orders", {h.RETURN_TO: orders})
    _raw_publish(amqp_url, topo.names.retry(0), b"to audit", {h.RETURN_TO: audit})
    back = wait_for(lambda: read_all(amqp_url, orders), timeout=10, message="return to orders")
    assert time.monotonic() - started >= 0.4  # not before tier 1's TTL
    assert [r.body for r in back] == [b"to orders"]
    assert back[0].exchange == topo.names.return_exchange
    assert back[0].headers[h.RETURN_TO] == orders
    assert back[0].headers["x-death"][0]["queue"] == topo.names.retry(1)
    assert back[0].headers["x-death"][0]["reason"] == "expired"
    audit_back = wait_for(lambda: read_all(amqp_url, audit), timeout=10, message="return to audit")
    assert [r.body for r in audit_back] == [b"to audit"]
    assert read_all(amqp_url, topo.names.retry(0)) == []


def test_a_retry_for_a_queue_that_no_longer_exists_is_kept_as_unroutable(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    topo = _topology(settings, tmp_path)
    declare.apply(topo, amqp_url)
    gone = f"{settings.name_prefix}.work.removed"
    _raw_publish(amqp_url, topo.names.retry(0), b"orphan", {h.RETURN_TO: gone})
    got = wait_for(lambda: read_all(amqp_url, topo.names.unroutable), timeout=10,
                   message="orphan retry in the unroutable queue")
    assert [r.body for r in got] == [b"orphan"]


def test_a_message_redelivered_beyond_the_delivery_limit_is_dead_lettered(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    limited = settings.model_copy(update={"delivery_limit": 2})
    topo = _topology(limited, tmp_path, AUDIT)  # basic.get needs a queue without SAC
    declare.apply(topo, amqp_url)
    work = topo.work_queue("audit")
    _raw_publish(amqp_url, work, b"poison", {h.ATTEMPT: 0})
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    returned = 0
    try:
        ch = conn.channel()
        # A consumer that never acks (as one crashing on the message would): each return to the
        # queue counts as a delivery.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            method, _, _ = ch.basic_get(work)
            if method is None:
                break
            ch.basic_nack(method.delivery_tag, requeue=True)
            returned += 1
    finally:
        conn.close()
    assert returned == 3  # delivery limit 2: the third return is one too many
    dead = wait_for(lambda: read_all(amqp_url, topo.names.dead), timeout=10, message="dead letter")
    assert [r.body for r in dead] == [b"poison"]
    death = dead[0].headers["x-death"][0]
    assert death["queue"] == work
    assert death["reason"] == "delivery_limit"
    assert read_all(amqp_url, work) == []
