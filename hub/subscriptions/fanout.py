"""The fan-out: the hub's consumer of the feed (``P.fanout``), which sends each subscription
its copy of an event.

Per delivery (verified by the consumer like any work queue's): the subscriptions whose
patterns match the event's routing key get a copy whose ``data`` is projected
(``AccessList.removed``: the personal fields their projection does not keep are removed),
serialised once per distinct projected body and signed by the hub (its certificate's
thumbprint is the ``kid``); the envelope keeps its id, source, type, subject, time and
sequence, so a ministry that keeps processed ids sees a replayed or redelivered copy as the
same message. Each body is published once, to all the subscriptions' queues that get it
(``copies``), and the delivery is acked once the broker confirmed every one
(``hub.broker.consumer``): a queue that refuses (full) sends the delivery to the retry tiers,
and the others' copies again, which their consumers absorb.

A projection failure (an event type without a personal data declaration) fails the whole
delivery for good: nothing unprojected is sent anywhere.

Subscriptions are read from the store at start, again every ``RELOAD`` seconds, and at once
when a delivery matches none (the feed was bound for a subscription added since). Each is
checked against the access list again: one the list no longer allows gets nothing. A reload
during deliveries runs in a thread, one at a time, the deliveries that need it waiting for it:
it reads the store and, for a subscription's queue not yet seen, opens a blocking connection
to the broker, which would otherwise hold the worker process's event loop (every consumer of
the process) for as long as the broker takes to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import replace
from typing import Any

from pika.exceptions import ChannelClosedByBroker

from hub import headers as h
from hub.broker.consumer import Consumer
from hub.broker.declare import connect
from hub.broker.messages import Delivery, EnvelopeSigner, Outgoing
from hub.broker.metrics import REGISTRY
from hub.broker.queueage import BCC, LedgerWriter
from hub.envelope import Envelope, routing_key
from hub.errors import BrokerUnavailable, HubError
from hub.settings import Settings
from hub.signing import Signer, Verifier, load_signer
from hub.store import Store
from hub.subscriptions import records
from hub.subscriptions.access import AccessList, without
from hub.subscriptions.model import Subscription, SubscriptionNames, topic_match
from hub.subscriptions.status import Status, StatusCollector, statuses

log = logging.getLogger(__name__)

FANOUT = "fanout"  # its name among a worker process's consumers
RELOAD = 5.0
MATCH_CACHE = 10_000  # routing keys whose matching subscriptions are remembered


def copies(env: Envelope, subs: Sequence[Subscription], access: AccessList,
           signer: EnvelopeSigner, sn: SubscriptionNames,
           headers: dict[str, object] | None = None,
           present: Container[str] | None = None) -> list[Outgoing]:
    """The projected, signed copies of ``env`` for ``subs``: one message per distinct
    projected body (projections that remove the same fields of this event type make one:
    an event type without personal data is one message whatever the projections), serialised
    and signed once, addressed to the queues of every subscription that gets it (RabbitMQ's
    sender-selected distribution: the default exchange, no routing key, the queues in
    ``BCC``, which the broker removes before delivery, so no ministry sees another's queue).
    The broker confirms it once every queue has it (see
    docs/performance.md#subscriptions-fan-out-issue-13).

    A message addressed to several queues is routed if one of them exists: one missing would
    get nothing, and nobody would know. So a queue not in ``present`` (queues seen to exist;
    None: all are) gets its copy alone, with its name as the routing key: if it is missing,
    the broker returns it and the delivery is retried, as for any unroutable message."""
    by_removal: dict[tuple[str, ...], list[str]] = {}
    alone: list[tuple[tuple[str, ...], str]] = []
    for s in subs:
        removed = access.removed(s.projection, env.type)
        queue = sn.queue(s.name)
        if present is None or queue in present:
            by_removal.setdefault(removed, []).append(queue)
        else:
            alone.append((removed, queue))
    made: dict[tuple[str, ...], tuple[bytes, str]] = {}

    def signed(removed: tuple[str, ...]) -> tuple[bytes, str]:
        if removed not in made:
            copy = replace(env, data=without(env.data, removed)) if removed else env
            body = copy.to_bytes()
            made[removed] = (body, signer.sign(body, copy))
        return made[removed]

    out = []
    now = int(time.time())
    for removed, queues in by_removal.items():
        body, token = signed(removed)
        out.append(Outgoing(
            body=body, exchange="", routing_key="", message_id=env.id, type=env.type,
            headers={**(headers or {}), h.SIGNATURE: token, BCC: queues},
            app_id=env.source, timestamp=now))
    for removed, queue in alone:
        body, token = signed(removed)
        out.append(Outgoing(
            body=body, exchange="", routing_key=queue, message_id=env.id, type=env.type,
            headers={**(headers or {}), h.SIGNATURE: token}, app_id=env.source, timestamp=now))
    return out


class Fanout:
    """The feed's handler."""

    def __init__(self, settings: Settings, store: Store, signer: EnvelopeSigner,
                 access: AccessList | None = None) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self.sn = SubscriptionNames.of(settings)
        self._fixed_access = access
        self.access = access or AccessList.load(settings)
        self.subscriptions: list[Subscription] = []
        self._patterns: list[tuple[Subscription, list[str]]] = []
        self._matched: dict[str, list[Subscription]] = {}
        # Subscriptions' queues seen to exist (checked when a subscription is first loaded,
        # then by the status poll: ``saw``); the others get their copies alone (``copies``).
        self.present: set[str] = set()
        self._loaded = 0.0
        self._reloading = asyncio.Lock()
        self.reload()

    def reload(self) -> None:
        """Read the subscriptions now, blocking (at start, before any delivery)."""
        self._apply(*self._load())

    def _load(self) -> tuple[AccessList, list[Subscription], set[str]]:
        """The access list, the subscriptions it allows and which of their queues not seen
        before exist. Blocking (the store, the broker): run in a thread during deliveries."""
        access = self._fixed_access or AccessList.load(self.settings)
        allowed = []
        for s in records.all_(self.store):
            try:
                allowed.append(access.check(s))
            except HubError as exc:
                log.warning("subscription %s gets nothing: %s", s.name, exc)
        unseen = [q for q in (self.sn.queue(s.name) for s in allowed) if q not in self.present]
        return access, allowed, queues_present(self.settings, unseen) if unseen else set()

    def _apply(self, access: AccessList, allowed: list[Subscription], found: set[str]) -> None:
        self.access, self.subscriptions = access, allowed
        self.present = self.present | found
        self._patterns = [(s, s.patterns()) for s in allowed]
        self._matched = {}
        self._loaded = time.monotonic()

    async def _reload_off_loop(self, stale: float) -> None:
        """Reload in a thread, unless another delivery did since the one that saw ``stale``
        (the time of the reload it found too old): its waiters take the new state."""
        async with self._reloading:
            if self._loaded == stale:
                self._apply(*await asyncio.to_thread(self._load))

    async def matching(self, env: Envelope) -> list[Subscription]:
        if time.monotonic() - self._loaded > RELOAD:
            await self._reload_off_loop(self._loaded)
        key = routing_key(env)
        found = self._match(key)
        if not found and time.monotonic() - self._loaded > 0.5:
            await self._reload_off_loop(self._loaded)
            found = self._match(key)
        return found

    def _match(self, key: str) -> list[Subscription]:
        # Routing keys repeat (a type, an agency, a procedure): each is matched once per
        # reload against every subscription's patterns, made once per reload too.
        found = self._matched.get(key)
        if found is None:
            if len(self._matched) >= MATCH_CACHE:
                self._matched.clear()
            found = self._matched[key] = [
                s for s, patterns in self._patterns
                if any(topic_match(p, key) for p in patterns)]
        return found

    async def __call__(self, delivery: Delivery) -> list[Outgoing]:
        env = delivery.envelope
        return copies(env, await self.matching(env), self.access, self.signer, self.sn,
                      present=self.present)

    def saw(self, found: Sequence[Status]) -> None:
        """What the status poll saw: which subscriptions' queues exist."""
        self.present = {st.queue for st in found if st.exists}


def hub_signer(settings: Settings) -> Signer:
    """The hub's own signer, as a relay (``hub.runtime.hub_signer``)."""
    return load_signer(settings.keys_dir, settings.hub_id, relay=True)


class FeedConsumer(Consumer):
    """The feed's consumer. Beside the copies, it counts those the broker confirmed into each
    subscription's queue in the store's queue ledger (``hub.broker.queueage``: the age of a
    queue's oldest message) and looks at every subscription's queue each
    ``subscription_status_interval`` seconds (``poll_status``): what it saw last
    (``latest``) is what the process's metrics report
    (``hub.subscriptions.status.StatusCollector``).

    Several run at once (each worker process has one, ``hub.runtime.build_workers``): they
    share the feed as competing consumers, each message going to one of them, and the processed
    ids they keep in the store are one set (consumer ``fanout``), so a message redelivered to
    another process after a lost connection is absorbed, not copied twice."""

    def __init__(self, settings: Settings, store: Store, handler: Fanout, **kw: Any) -> None:
        self.ledger = LedgerWriter(store.queue_ledger)
        self.latest: list[Status] = []
        self._settings = settings
        self._store = store
        self._fanout = handler
        super().__init__(settings, handler.sn.feed, handler, processed=store.processed,
                         store=store, on_confirmed=self.ledger.confirmed, **kw)

    async def run(self, stop: asyncio.Event) -> None:
        collector = StatusCollector(self._settings, self._store, latest=lambda: self.latest)
        try:
            REGISTRY.register(collector)
            reporting = True
        except ValueError:  # another fan-out of this process reports already
            reporting = False
        self.ledger.start()
        polling = asyncio.create_task(poll_status(
            self._settings, self._store, stop, self._settings.subscription_status_interval,
            self._seen))
        try:
            await super().run(stop)
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            await self.ledger.stop()
            if reporting:
                REGISTRY.unregister(collector)

    def _seen(self, found: list[Status]) -> None:
        self.latest = found
        self._fanout.saw(found)


def consumer(settings: Settings, store: Store, handler: Fanout, **kw: Any) -> FeedConsumer:
    """The feed's consumer: verifies as the workers do (queued age window)."""
    kw.setdefault("verifier", Verifier.from_settings(settings, queued=True))
    kw.setdefault("name", FANOUT)
    return FeedConsumer(settings, store, handler, destination=FANOUT, **kw)


def queues_present(settings: Settings, queues: Sequence[str]) -> set[str]:
    """Those of ``queues`` that exist (none known while the broker does not answer)."""
    try:
        conn = connect(settings.broker_urls, "fan-out queues check")
    except BrokerUnavailable:
        return set()
    found = set()
    try:
        ch = conn.channel()
        for queue in queues:
            try:
                ch.queue_declare(queue, passive=True)
                found.add(queue)
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                ch = conn.channel()
    finally:
        if conn.is_open:
            conn.close()
    return found


def feed_declared(settings: Settings) -> bool:
    """Whether the feed queue exists (``lienthong topology apply`` declares it). A broker that
    does not answer yet says nothing against it: the consumer connects when it is back."""
    try:
        conn = connect(settings.broker_urls, "fan-out feed check")
    except BrokerUnavailable:
        return True
    try:
        conn.channel().queue_declare(SubscriptionNames.of(settings).feed, passive=True)
        return True
    except ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        return False
    finally:
        if conn.is_open:
            conn.close()


async def poll_status(settings: Settings, store: Store, stop: asyncio.Event,
                      every: float = 30.0,
                      seen: Callable[[list[Status]], None] | None = None) -> None:
    """Look at every subscription's queue now and then: records when a consumer was last seen
    (the alert of a consumer gone for long), logs what is to report and gives what it saw to
    ``seen``."""
    while not stop.is_set():
        try:
            found = await asyncio.to_thread(statuses, settings, store)
            for st in found:
                for alert in st.alerts:
                    log.warning("subscription %s (%s): %s", st.subscription.name,
                                st.subscription.ministry, alert)
            if seen is not None:
                seen(found)
        except HubError as exc:
            log.warning("subscriptions' status unavailable: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
