"""The broker's declarations for subscriptions, made from the store's rows by
``lienthong topology apply`` (idempotent: a second run changes nothing).

- ``P.history``: a stream (``x-queue-type=stream``, retention ``history_max_age`` and
  ``history_max_bytes``) bound on the events exchange with ``#``: every event is kept for
  replays. (The shipped topology's timeline recorder binds ``#`` already, so this binding makes
  no message routable that was not.)
- ``P.fanout``: the feed, a quorum queue bound with the union of every subscription's patterns
  and read only by the hub's fan-out (``hub.subscriptions.fanout``); its failures go through
  the retry tiers like a work queue's (a binding on ``P.return``), its poison messages to
  ``P.dead``.
- ``P.sub.<name>``: the subscription's queue, bound to nothing: only the fan-out puts projected,
  signed copies in it (the default exchange), so nothing unprojected can reach it. What its
  ministry rejects, or what overflows a delivery limit, is dead-lettered into its own
  ``P.sub.<name>.dead``.
- each ministry's user (if it has one: ``lienthong subscriptions credentials``) gets its
  permissions again: read on its own queues, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pika
from pika.exceptions import ChannelClosedByBroker

from hub import headers as h
from hub.broker.declare import Action, Conflict, TopologyConflict, connect
from hub.broker.management import Management
from hub.broker.names import Names
from hub.errors import BrokerUnavailable
from hub.settings import Settings
from hub.subscriptions.model import Subscription, SubscriptionNames

_PRECONDITION_FAILED = 406
NOTHING = "^$"


def history_arguments(settings: Settings) -> dict[str, Any]:
    return {"x-queue-type": "stream", "x-max-age": settings.history_max_age,
            "x-max-length-bytes": settings.history_max_bytes}


def feed_arguments(settings: Settings, names: Names) -> dict[str, Any]:
    return {"x-queue-type": "quorum", "x-delivery-limit": settings.delivery_limit,
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": names.dead,
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
            "x-max-length": settings.work_queue_max_length}


def queue_arguments(settings: Settings, sn: SubscriptionNames, name: str) -> dict[str, Any]:
    # No delivery limit: what the ministry's consumer rejects without requeue goes to its
    # dead letters; one it requeues is its own to retry.
    return {"x-queue-type": "quorum", "x-overflow": "reject-publish",
            "x-max-length": settings.subscription_max_length,
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": sn.dead(name),
            "x-dead-letter-strategy": "at-least-once"}


def dead_arguments(settings: Settings) -> dict[str, Any]:
    return {"x-queue-type": "quorum", "x-overflow": "reject-publish",
            "x-max-length": settings.dead_letter_max_length}


def read_pattern(queues: Sequence[str]) -> str:
    """The read permission of a ministry: exactly its queues."""
    if not queues:
        return NOTHING
    return "^(" + "|".join(re.escape(q) for q in sorted(queues)) + ")$"


def grant(mgmt: Management, user: str, queues: Sequence[str]) -> None:
    """Read on ``queues``; no configure (declare, delete, bind), no write (publish)."""
    mgmt.set_permissions(user, NOTHING, NOTHING, read_pattern(queues))


def apply(settings: Settings, subs: Sequence[Subscription],
          amqp_url: str | Sequence[str] | None = None) -> list[Action]:
    names = Names(settings.name_prefix)
    sn = SubscriptionNames(names)
    queues: list[tuple[str, dict[str, Any]]] = [
        (sn.history, history_arguments(settings)), (sn.feed, feed_arguments(settings, names))]
    for s in subs:
        queues.append((sn.queue(s.name), queue_arguments(settings, sn, s.name)))
        queues.append((sn.dead(s.name), dead_arguments(settings)))
    wanted = sorted({p for s in subs for p in s.patterns()})
    actions: list[Action] = []
    conflicts: list[Conflict] = []
    conn = connect(amqp_url or settings.broker_urls, "subscriptions topology")
    try:
        ch = conn.channel()
        for name, arguments in queues:
            try:
                ch.queue_declare(name, passive=True)
                existed = True
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                existed, ch = False, conn.channel()
            try:
                ch.queue_declare(name, durable=True, arguments=arguments)
                actions.append(Action("queue", name, "exists" if existed else "created"))
            except ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED:
                    raise
                conflicts.append(Conflict("queue", name, "?", str(arguments), exc.reply_text))
                ch = conn.channel()
        if conflicts:
            vhost = pika.URLParameters(settings.broker_urls[0]).virtual_host
            raise TopologyConflict(conflicts, actions, vhost)
        ch.queue_bind(sn.history, names.events, routing_key="#")
        actions.append(Action("binding", f"{names.events} -> {sn.history} '#'", "bound"))
        ch.queue_bind(sn.feed, names.return_exchange, routing_key="",
                      arguments={"x-match": "all", h.RETURN_TO: sn.feed})
        for pattern in wanted:
            ch.queue_bind(sn.feed, names.events, routing_key=pattern)
            actions.append(Action("binding", f"{names.events} -> {sn.feed} {pattern!r}",
                                  "bound"))
        try:
            mgmt = Management.from_settings(settings)
            feed_bindings = mgmt.queue_bindings(sn.feed)
        except BrokerUnavailable:
            if subs:
                raise
            # No subscription: nothing to grant; a hub that never had one (no management
            # plugin needed) has no stale binding either.
            actions.append(Action("binding", f"{sn.feed}: stale bindings not checked (the "
                                  "management API does not answer)", "skipped"))
            return actions
        with mgmt:
            for b in feed_bindings:
                if b.get("source") == names.events and b.get("routing_key") not in wanted:
                    ch.queue_unbind(sn.feed, names.events, routing_key=b["routing_key"])
                    actions.append(Action(
                        "binding", f"{names.events} -> {sn.feed} {b['routing_key']!r}",
                        "unbound"))
            by_ministry: dict[str, list[str]] = {}
            for s in subs:
                by_ministry.setdefault(s.ministry, []).append(sn.queue(s.name))
            for ministry, mine in sorted(by_ministry.items()):
                user = sn.user(ministry)
                if mgmt.user_exists(user):
                    grant(mgmt, user, mine)
                    actions.append(Action("user", f"{user}: read {read_pattern(mine)}",
                                          "granted"))
    finally:
        if conn.is_open:
            conn.close()
    return actions


def apply_from_store(settings: Settings) -> list[Action]:
    """``apply`` with the subscriptions the store holds."""
    from hub.store import Store
    from hub.subscriptions import records

    with Store.open(settings.store_url) as store:
        return apply(settings, records.all_(store))
