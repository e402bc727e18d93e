"""Building the hub's running parts from Settings: the hub's signer, the verifier of its
queues, and the adapter workers. Entry points (CLI, demo, tests) call these instead of wiring
the pieces by hand."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from hub.adapters import AdapterContext, AdapterSpec, Event, context_for, discover
from hub.broker.consumer import Consumer, SharedEnvelopes
from hub.broker.consumer import Handler as ConsumerHandler
from hub.broker.declare import former_queues
from hub.broker.destinations import as_destinations, discover_destinations
from hub.broker.heap import freeze_startup_heap
from hub.broker.messages import Outgoing
from hub.broker.names import Names
from hub.broker.publisher import Publisher
from hub.broker.topology import Topology
from hub.console.keeper import KEEPER, Keeper
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.intake.sequencing import number
from hub.recorder import TIMELINE, logged, make_timeline_recorder, timeline_event
from hub.settings import Settings
from hub.signing import Signer, TrustStore, Verifier, load_signer
from hub.store import Store

log = logging.getLogger(__name__)


def hub_signer(settings: Settings) -> Signer:
    """The hub's own signer. It signs as a relay: what it verified at an entry point, and the
    events its adapters cause."""
    return load_signer(settings.keys_dir, settings.hub_id, relay=True)


def queue_verifier(settings: Settings, trust: TrustStore | None = None) -> Verifier:
    """The verifier of messages taken from the hub's own queues (queued age window)."""
    return Verifier.from_settings(settings, trust, queued=True)


@dataclass
class Worker:
    spec: AdapterSpec
    consumer: Consumer | Keeper
    handler: object = None  # the adapter's own handler: closed (``aclose``) when it stops

    async def stop(self) -> None:
        await self.consumer.stop()
        close = getattr(self.handler, "aclose", None)
        if close is not None:
            await close()


async def nothing(event: Event) -> Sequence[Envelope]:
    """The handler in the spec of a worker of the hub's own (the timeline recorder, the
    dead-letter keeper, the subscriptions' fan-out): they consume by themselves, a spec only
    names them."""
    return []


def build_workers(
    settings: Settings,
    names: Iterable[str] | None,
    *,
    store: Store,
    signer: Signer | None = None,
    verifier: Verifier | None = None,
    adapters: Mapping[str, AdapterSpec] | None = None,
    recorder: bool | None = None,
    keeper: bool = False,
    fanout: bool = False,
    skipped: list[tuple[str, ConfigError]] | None = None,
    process: tuple[int, int] | None = None,
    topology: Topology | None = None,
) -> list[Worker]:
    """One consumer per adapter named (all installed adapters when ``names`` is None), each
    on its work queues with the adapter's handler (its deliveries logged), the store's processed
    ids and the verifier; plus the timeline recorder (``recorder``: None when the topology has
    its destination, True required, False not), with ``keeper`` the
    dead-letter keeper and with ``fanout`` the subscriptions' fan-out (hub.subscriptions.fanout:
    every worker process takes a share of its feed).

    Ordering, concurrency and partitions come from the resolved topology (the adapters'
    destinations merged with the topology file, ``hub.broker.topology``): the queues and the
    workers read one source. ``process`` (i, n): this process is the i-th of n worker
    processes (``lienthong worker --processes n``); it takes the partitions p with
    p % n == i first and stands by for the others. Default: ``Settings.worker_process`` of
    ``worker_processes`` (processes started one by one say where they stand there).

    An adapter that cannot start for want of configuration (a secret not set...) stops the
    whole build when it was named. When every installed adapter was asked for and ``skipped``
    is given, it is left out and reported there instead: one system's missing secret should
    not stop deliveries to the four others, and its messages wait in its durable queue. So with
    the fan-out: without its access list or its feed queue (``lienthong topology apply``), it
    is reported in ``skipped`` (when given) and the events wait in the feed."""
    found = dict(adapters) if adapters is not None else discover()
    wanted = list(names) if names is not None else sorted(found)
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ConfigError(
            f"no adapter named {', '.join(unknown)}; installed adapters: "
            f"{', '.join(sorted(found))}",
            field="adapter",
        )
    signer = signer or hub_signer(settings)
    verifier = verifier or queue_verifier(settings)
    if process is None:
        process = (settings.worker_process, settings.worker_processes)
    if topology is None:
        # Every installed adapter's destination, as `lienthong topology apply` declares them
        # (the topology file may tune any of them), with the adapters given here over them.
        given = as_destinations(found)
        installed, _ = discover_destinations()
        taken = {d.name for d in given}
        topology = Topology.from_settings(
            settings, [d for d in installed if d.name not in taken] + given)
    topo = topology
    if recorder is None:
        recorder = TIMELINE in {d.name for d in topo.destinations}
    workers = []
    # The recorder and the fan-out take every event: one decoding of its envelope for both.
    # Not the adapters' workers (see SharedEnvelopes).
    envelopes = SharedEnvelopes(readers=2) if recorder and fanout else None

    def consumer(destination: str, handler: ConsumerHandler, name: str, **kw: Any) -> Consumer:
        kw.setdefault("processed", store.processed)
        return Consumer.for_destination(
            settings, topo, destination, handler, verifier=verifier,
            name=name, store=store, process=process, signer=signer,
            drain_first=functools.partial(former_queues, topo, destination, settings.broker_urls),
            **kw)

    for name in wanted:
        spec = found[name]
        try:
            topo.destination(name)
        except ConfigError:
            # Left out by the topology file (enabled = false): it has no queue to consume.
            if names is not None:
                raise
            continue
        try:
            own = spec.make_handler(context_for(settings, name, store=store))
        except ConfigError as exc:
            if names is not None or skipped is None:
                raise
            skipped.append((name, exc))
            continue
        handler = logged(own, store, name)
        workers.append(Worker(spec, consumer(name, handler, f"worker:{name}"), own))
    if recorder:
        spec = AdapterSpec(
            name=TIMELINE,
            description="the hub's own timeline recorder",
            bindings=["#"],
            make_handler=lambda ctx: nothing,  # the recorder is the hub's, not an adapter
            ordered=False,
        )
        try:
            topo.destination(TIMELINE)
        except ConfigError:
            raise ConfigError(
                f"the timeline recorder has no work queue: the topology file "
                f"({settings.topology_file}) must declare [destinations.{TIMELINE}] (as the "
                "shipped mappings/topology.toml does), or run the workers without the recorder",
                field=f"destinations.{TIMELINE}",
            ) from None
        # No processed ids: a timeline row is unique by dossier and message id, so an event
        # delivered again adds nothing, and the recorder calls no one. Their look-up before
        # and record after each batch were a fifth of a draining worker's store work
        # (docs/performance.md#the-recorder-without-processed-ids).
        recording = consumer(TIMELINE, make_timeline_recorder(store), "recorder:timeline",
                             envelopes=envelopes, processed=None)
        workers.append(Worker(spec, recording))
    if fanout:
        feeding = _fanout(settings, store, signer, verifier, skipped, envelopes)
        if not feeding and envelopes is not None:
            envelopes.readers = 1  # the fan-out left out: the recorder alone, nothing kept
        workers += feeding
    if keeper:
        # The operator console's dead-letter keeper (hub.console.keeper), beside the recorder.
        keeper_spec = AdapterSpec(name=KEEPER, description="the dead-letter keeper",
                                  bindings=[], make_handler=lambda ctx: nothing, ordered=False)
        workers.append(Worker(keeper_spec, Keeper(settings, store)))
    return workers


def _fanout(settings: Settings, store: Store, signer: Signer, verifier: Verifier,
            skipped: list[tuple[str, ConfigError]] | None,
            envelopes: SharedEnvelopes | None = None) -> list[Worker]:
    from hub.subscriptions.fanout import FANOUT, Fanout, consumer, feed_declared

    try:
        handler = Fanout(settings, store, signer)
        if not feed_declared(settings):
            raise ConfigError(
                f"the fan-out's feed {handler.sn.feed} is not declared: run `lienthong topology "
                "apply` (it declares the subscriptions' queues), then restart the worker",
                field="fanout")
    except ConfigError as exc:
        if skipped is None:
            raise
        skipped.append((FANOUT, exc))
        return []
    # The feed's consumer holds the handler; a spec only names it.
    spec = AdapterSpec(name=FANOUT, description="the subscriptions' fan-out", bindings=[],
                       make_handler=lambda ctx: nothing, ordered=False)
    return [Worker(spec, consumer(settings, store, handler, verifier=verifier,
                                  envelopes=envelopes))]


async def run_until_signalled(workers: list[Worker]) -> None:
    """Run the workers until SIGINT or SIGTERM, then stop them cleanly (in-flight messages
    finish and are acked; nothing is dropped)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Start-up objects (modules, schemas, keys) never die: keep full collections from
    # rescanning them while messages flow (long GC pauses were the relay's p99). Frozen before
    # the consumers start: the collection walks the whole start-up heap (a few hundred ms on a
    # loaded machine), which stalled the deliveries of a backlog taken at start.
    freeze_startup_heap()
    for w in workers:
        w.consumer.start()
    for w in workers:
        await w.consumer.wait_consuming()
        log.info("worker %s consuming %s", w.spec.name, w.consumer.queue)
    await stop.wait()
    await asyncio.gather(*(w.stop() for w in workers))


Publish = Callable[[Envelope], Awaitable[None]]


@asynccontextmanager
async def adapter_session(
    settings: Settings, name: str
) -> AsyncIterator[tuple[AdapterContext, Publish]]:
    """An adapter's context and a ``publish(envelope)`` that numbers the envelope in its
    dossier's sequence (hub.intake.sequencing), signs it with the hub's key and returns once the
    broker confirmed: what an adapter's own commands (reconciliation, polling) need to emit
    events outside a worker."""
    store = Store.open(settings.store_url)
    signer = hub_signer(settings)
    ctx = context_for(settings, name, store=store)
    exchange = Names(settings.name_prefix).events
    publisher = Publisher(settings.broker_urls, settings, name=f"{name} command")
    try:
        await publisher.start()

        async def publish(env: Envelope) -> None:
            # Committed before publishing: a number is never given twice, and a publish that
            # fails leaves a gap, which destinations tolerate (they only skip what is older).
            with store.begin() as tx:
                [env] = number(tx, [env])
                tx.timeline_keep(timeline_event(env))
            await publisher.publish(Outgoing.signed(env, signer, exchange))

        yield ctx, publish
    finally:
        await publisher.close()
        store.close()
