"""The dead-letter keeper on RabbitMQ and both stores: what a worker parks (refused, invalid
signature), what nothing routes, and what the broker dead-letters is kept with its bytes,
headers, reason and history, acknowledged only once committed; a keeper that dies between
commit and ack gets the batch again and keeps it once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from hub import headers as h
from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec
from hub.broker.connection import Link
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.console import deadletters as kinds
from hub.console.keeper import Keeper
from hub.console.service import ConsoleService, Operator
from hub.errors import PermanentError
from hub.settings import Settings
from hub.signing import TrustStore, load_signer
from hub.store import Store
from hub.testing.broker import (
    SAMPLE_SOURCE,
    declared_topology,
    delete_queues,
    depth,
    sample_envelope,
)
from hub.testing.keys import hub_keys, signer_for
from hub.testing.store import scratch_url
from hub.testing.waiting import eventually

DEST = "portal"


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A database of the test's own: it counts every dead letter in it."""
    with scratch_url(store_url, tmp_path) as url, Store.open(url) as opened:
        yield opened


def _topology(settings: Settings, tmp_path: Path) -> Topology:
    return declared_topology(settings, tmp_path, Destination(DEST, ("dossier.#",), False))


@contextlib.asynccontextmanager
async def _keeping(settings: Settings, store: Store, spec: AdapterSpec,
                   topology: Topology) -> AsyncIterator[Keeper]:
    """The worker of ``spec`` and the dead-letter keeper consuming until the block ends, as
    `lienthong worker` runs them; the keeper."""
    workers = runtime.build_workers(
        settings, [DEST], store=store, signer=load_signer(settings.keys_dir, settings.hub_id),
        adapters={DEST: spec}, recorder=False, keeper=True, topology=topology)
    for w in workers:
        w.consumer.start()
    try:
        for w in workers:
            await w.consumer.wait_consuming()
        [keeper] = [w.consumer for w in workers if isinstance(w.consumer, Keeper)]
        yield keeper
    finally:
        for w in workers:
            await w.stop()


def test_parked_messages_are_kept_with_their_reasons(
        settings: Settings, tmp_path: Path, store: Store) -> None:
    good = signer_for(SAMPLE_SOURCE, hub_keys(settings))
    # The same name, with a key only another trust store trusts: the hub does not.
    bad = signer_for(SAMPLE_SOURCE, TrustStore(tmp_path / "elsewhere"))

    def make_handler(ctx: AdapterContext) -> Any:
        async def handle(delivery: Delivery) -> None:
            raise PermanentError("portal answered 400: MaHoSo 0012345678901 unknown",
                                 code="system.rejected")
        return handle

    spec = AdapterSpec(name=DEST, description="refuses", bindings=["dossier.#"],
                       make_handler=make_handler, ordered=False)
    topology = _topology(settings, tmp_path)
    refused, forged, lost = sample_envelope(1), sample_envelope(2), sample_envelope(3)

    async def go() -> tuple[Keeper, int]:
        async with _keeping(settings, store, spec, topology) as keeper:
            async with Publisher(settings.broker_urls, settings) as pub:
                await pub.publish(Outgoing.signed(refused, good, topology.names.events))
                await pub.publish(Outgoing.signed(forged, bad, topology.names.events))
                # No binding takes this routing key: the alternate exchange keeps it.
                await pub.publish(Outgoing.signed(lost, good, topology.names.events,
                                                  routing_key="nobody.listens"))
            await eventually(lambda: keeper.state.kept == 3, 20, "three dead letters kept")
        return keeper, sum(depth(settings.amqp_url, q) for q in
                           (topology.names.dead, topology.names.invalid,
                            topology.names.unroutable))

    try:
        keeper, left = asyncio.run(go())
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert left == 0 and keeper.state.kept == 3  # acknowledged once kept
    rows = {d.message_id: d for d in store.dead_letters(limit=10)}
    assert set(rows) == {refused.id, forged.id, lost.id}
    one = rows[refused.id]
    assert one.kind == kinds.REFUSED and one.reason_code == "system.rejected"
    assert "MaHoSo" in one.reason
    assert one.destination == DEST and one.source == SAMPLE_SOURCE
    assert one.type == refused.type and one.agency == "000.00.00.H56"
    assert one.dossier_code == refused.subject
    assert one.body == refused.to_bytes()  # the original bytes
    assert one.headers[h.SIGNATURE] and one.headers[h.PARKED_BY] == f"worker:{DEST}"
    assert one.history and one.history[-1]["code"] == "system.rejected"
    assert one.first_failure_at is not None and one.last_failure_at is not None
    assert rows[forged.id].kind == kinds.INVALID_SIGNATURE
    assert rows[forged.id].queue == topology.names.invalid
    assert rows[lost.id].kind == kinds.UNROUTABLE and rows[lost.id].destination is None


class _DiesBeforeAck(Keeper):
    """Commits its batch, then loses its connection instead of acknowledging."""

    def _ack(self, link: Link, tag: int) -> None:
        self._stop.set()  # a dead process does not come back
        link.connection.close()
        raise pika.exceptions.AMQPConnectionError("died before the ack")


def test_a_crash_between_commit_and_ack_keeps_one_row(
        settings: Settings, tmp_path: Path, store: Store) -> None:
    topology = _topology(settings, tmp_path)
    env = sample_envelope(7)
    headers = {h.REASON_CODE: "system.rejected", h.REASON: "refused", h.ATTEMPT: 0,
               h.PARKED_BY: f"worker:{DEST}", h.PARKED_AT: "2026-12-07T05:00:00+00:00",
               h.HISTORY: [{"attempt": 0, "code": "system.rejected", "message": "refused",
                            "at": "2026-12-07T05:00:00+00:00"}]}

    async def go() -> tuple[Keeper, Keeper]:
        async with Publisher(settings.broker_urls, settings) as pub:
            await pub.publish(Outgoing(body=env.to_bytes(), exchange="",
                                       routing_key=topology.names.dead, message_id=env.id,
                                       type=env.type, headers=headers))
        first = _DiesBeforeAck(settings, store)
        first.start()
        await eventually(lambda: first.state.kept == 1, 15, "first keeper commits")
        await first.stop()
        second = Keeper(settings, store)
        second.start()
        await eventually(lambda: second.state.duplicates == 1, 15, "redelivery recognised")
        await second.stop()
        return first, second

    try:
        first, second = asyncio.run(go())
        assert depth(settings.amqp_url, topology.names.dead) == 0
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert first.state.kept == 1 and second.state.kept == 0
    [row] = store.dead_letters(limit=10)
    assert row.message_id == env.id and row.kind == kinds.REFUSED


def test_a_replay_that_fails_again_is_a_new_dead_letter_linked_to_the_first(
        settings: Settings, tmp_path: Path, store: Store) -> None:
    good = signer_for(SAMPLE_SOURCE, hub_keys(settings))

    def make_handler(ctx: AdapterContext) -> Any:
        async def handle(delivery: Delivery) -> None:
            raise PermanentError("portal answered 400", code="system.rejected")
        return handle

    spec = AdapterSpec(name=DEST, description="refuses", bindings=["dossier.#"],
                       make_handler=make_handler, ordered=False)
    topology = _topology(settings, tmp_path)
    env = sample_envelope(5)
    operator = Operator("ana", "operator")

    async def go() -> tuple[int, int, Any]:
        async with _keeping(settings, store, spec, topology) as keeper, \
                Publisher(settings.broker_urls, settings) as pub:
            await pub.publish(Outgoing.signed(env, good, topology.names.events))
            await eventually(lambda: keeper.state.kept == 1, 20, "the first dead letter")
            [first] = store.dead_letters(limit=5)
            service = ConsoleService(settings, store, publish=pub.publish, topology=topology)
            await service.replay(first.id, operator, why="try again")
            await eventually(lambda: keeper.state.kept == 2, 20, "the replay parked again")
            inspection = service.inspect(first.id, operator)
        [again] = [d for d in store.dead_letters(limit=5, state=None) if d.id != first.id]
        return first.id, again.replay_of or 0, inspection

    try:
        first_id, linked_to, inspection = asyncio.run(go())
    finally:
        delete_queues(settings.amqp_url, [q.name for q in topology.queues])
    assert linked_to == first_id
    assert inspection.letter.state == "replayed" and len(inspection.replays) == 1
