"""What ``lienthong subscriptions`` does, as plain functions over Settings and the store."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pika
from pika.exceptions import ChannelClosedByBroker

from hub.broker.declare import Action, connect
from hub.broker.management import Management
from hub.broker.names import Names
from hub.errors import ClientError
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions import records, topology
from hub.subscriptions.access import AccessList
from hub.subscriptions.model import Subscription, SubscriptionNames


@dataclass(frozen=True, slots=True)
class Credentials:
    ministry: str
    user: str
    password: str  # shown once: the hub keeps none (RabbitMQ keeps a salted hash)
    queues: tuple[str, ...]
    amqp_url: str  # the hub's first node with the ministry's user and password

    def url_for(self, password: str) -> str:
        return self.amqp_url.replace(quote(self.password, safe=""), password)


def names_of(settings: Settings) -> SubscriptionNames:
    return SubscriptionNames(Names(settings.name_prefix))


def add(settings: Settings, store: Store, name: str, ministry: str, event_types: list[str],
        agencies: list[str], procedures: list[str], projection: str | None = None,
        access: AccessList | None = None) -> tuple[Subscription, list[Action]]:
    """Check the subscription against the access list (default deny), keep it and declare its
    queue. The ministry's user, if it has one, may read the new queue at once."""
    access = access or AccessList.load(settings)
    chosen = projection or next(iter(access.ministry(ministry).projections), "")
    sub = access.check(Subscription.new(name, ministry, event_types, agencies, procedures,
                                        chosen))
    sub = records.add(store, sub)
    try:
        actions = topology.apply(settings, records.all_(store))
    except BaseException:
        records.remove(store, sub.name)
        raise
    return sub, actions


def remove(settings: Settings, store: Store, name: str, *, force: bool = False) -> list[Action]:
    """Forget the subscription and delete its queues (refused while they hold messages,
    unless ``force``). A ministry left without subscriptions loses its user."""
    sub = records.get(store, name)
    sn = names_of(settings)
    conn = connect(settings.broker_urls, "subscriptions remove")
    try:
        ch = conn.channel()
        for queue in (sn.queue(name), sn.dead(name)):
            try:
                count = ch.queue_declare(queue, passive=True).method.message_count
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                ch = conn.channel()
                continue
            if count and not force:
                raise ClientError(
                    f"{queue} holds {count} ready messages; let the ministry drain it, or "
                    "remove with --force to delete them", code="client.queue_not_empty",
                    field="name")
        records.remove(store, name)
        actions = []
        for queue in (sn.queue(name), sn.dead(name)):
            ch.queue_delete(queue)
            store.queue_ledger.forget(queue)  # a queue made again counts from nothing
            actions.append(Action("queue", queue, "deleted"))
    finally:
        if conn.is_open:
            conn.close()
    actions += topology.apply(settings, records.all_(store))
    if not records.all_(store, sub.ministry):
        with Management.from_settings(settings) as mgmt:
            user = sn.user(sub.ministry)
            if mgmt.user_exists(user):
                mgmt.close_connections(user)
                mgmt.delete_user(user)
                actions.append(Action("user", user, "deleted"))
    return actions


def credentials(settings: Settings, store: Store, ministry: str, *,
                rotate: bool = False) -> Credentials:
    """The ministry's RabbitMQ user: created with a new password, or (``rotate``) given a new
    one, its open connections closed. Its permissions: read on its queues, nothing else."""
    mine = records.all_(store, ministry)
    if not mine:
        raise ClientError(
            f"{ministry} has no subscription; add one first (`lienthong subscriptions add`)",
            code="client.subscription_unknown", field="ministry")
    sn = names_of(settings)
    user = sn.user(ministry)
    password = secrets.token_urlsafe(24)
    queues = [sn.queue(s.name) for s in mine]
    with Management.from_settings(settings) as mgmt:
        if mgmt.user_exists(user) and not rotate:
            raise ClientError(
                f"{ministry} has a user already ({user}); its password was shown when it was "
                "made and is not kept: give it a new one with --rotate",
                code="client.credentials_exist", field="ministry")
        mgmt.put_user(user, password)
        topology.grant(mgmt, user, queues)
        if rotate:
            mgmt.close_connections(user)
    return Credentials(ministry, user, password, tuple(queues),
                       amqp_url_for(settings.broker_urls[0], user, password))


def amqp_url_for(hub_url: str, user: str, password: str) -> str:
    parts = urlsplit(hub_url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    vhost = quote(pika.URLParameters(hub_url).virtual_host, safe="")
    return (f"{parts.scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}"
            f"/{vhost}")


def by_ministry_or_name(store: Store, which: str) -> Sequence[Subscription]:
    """A subscription by name, or every subscription of a ministry by its system id."""
    if which.startswith("VN:GOV:"):
        found = records.all_(store, which)
        if not found:
            raise records.SubscriptionUnknown(
                f"{which} has no subscription; `lienthong subscriptions list` shows them",
                field="ministry")
        return found
    return [records.get(store, which)]
