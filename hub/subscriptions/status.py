"""How each subscription's queue is doing, and what operators are told about.

Ready messages and consumers come from the broker itself (a passive declare: exact, at once);
the messages delivered and not yet acknowledged and the rates from the management API's last
samples. The age of the oldest message (ready or unacknowledged), consumer attached or not,
comes from the queue ledger the fan-out and replays keep (``hub.broker.queueage``): quorum
queues report no head timestamp. Nothing is taken from the queue to learn it.

A subscription is reported when its queue holds ``subscription_alert_depth`` messages or more,
or when no consumer has been attached for ``subscription_alert_idle_minutes`` (since the last
time one was seen, or since the subscription was made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pika.exceptions import ChannelClosedByBroker
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.broker.declare import connect
from hub.broker.management import Management
from hub.broker.queueage import age_of
from hub.errors import HubError
from hub.settings import Settings
from hub.store import Store
from hub.subscriptions import records
from hub.subscriptions.model import Subscription, SubscriptionNames

BACKLOG = "backlog"
NO_CONSUMER = "no_consumer"


@dataclass(frozen=True, slots=True)
class Status:
    subscription: Subscription
    queue: str
    exists: bool
    depth: int = 0  # ready messages (those delivered and not yet acked not counted)
    consumers: int = 0
    dead: int = 0
    oldest_age: float | None = None  # seconds, of the oldest ready or unacked message
    unacked: int = 0  # delivered to a consumer, not yet acknowledged
    oldest_at_least: bool = False  # older than the ledger: oldest_age is a lower bound
    rate_in: float = 0.0
    rate_out: float = 0.0
    idle_for: float | None = None  # seconds without a consumer
    alerts: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # BACKLOG, NO_CONSUMER


def statuses(settings: Settings, store: Store, subs: Sequence[Subscription] | None = None,
             now: datetime | None = None) -> list[Status]:
    subs = list(records.all_(store) if subs is None else subs)
    if not subs:
        return []
    now = now or datetime.now(UTC)
    sn = SubscriptionNames.of(settings)
    out = []
    seen = []
    conn = connect(settings.broker_urls, "subscriptions status")
    try:
        ch = conn.channel()
        with Management.from_settings(settings) as mgmt:
            for s in subs:
                queue = sn.queue(s.name)
                try:
                    ok = ch.queue_declare(queue, passive=True).method
                    dead = ch.queue_declare(sn.dead(s.name), passive=True).method.message_count
                except ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
                    ch = conn.channel()
                    out.append(Status(s, queue, False, alerts=[
                        "queue absent: run `lienthong topology apply`"]))
                    continue
                depth, consumers = int(ok.message_count), int(ok.consumer_count)
                try:
                    stats = mgmt.queue(queue)
                    rate_in, rate_out = stats.rate_in, stats.rate_out
                    unacked = stats.unacked
                except HubError:
                    rate_in = rate_out = 0.0
                    unacked = 0
                age = age_of(store.queue_ledger, queue, depth + unacked, now)
                if consumers:
                    seen.append(s.name)
                    idle = None
                else:
                    since = s.consumer_seen_at or s.created_at or now
                    idle = max(0.0, (now - since).total_seconds())
                alerts, reasons = [], []
                if depth >= settings.subscription_alert_depth:
                    reasons.append(BACKLOG)
                    alerts.append(f"{depth} messages waiting (alert at "
                                  f"{settings.subscription_alert_depth})")
                limit = settings.subscription_alert_idle_minutes * 60
                if idle is not None and idle >= limit:
                    reasons.append(NO_CONSUMER)
                    alerts.append(f"no consumer for {idle / 60:.1f} min (alert after "
                                  f"{settings.subscription_alert_idle_minutes:g} min)")
                out.append(Status(
                    s, queue, True, depth, consumers, int(dead),
                    None if age is None else age.seconds, unacked,
                    age is not None and age.at_least, rate_in, rate_out, idle, alerts,
                    reasons))
    finally:
        if conn.is_open:
            conn.close()
    records.seen(store, seen, now)
    return out


class StatusCollector(Collector):
    """Prometheus gauges of every subscription: what ``latest`` gives (the fan-out's last look,
    ``hub.subscriptions.fanout.poll_status``), or, without it, read at each scrape."""

    def __init__(self, settings: Settings, store: Store,
                 latest: Callable[[], Sequence[Status]] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        labels = ["subscription", "ministry"]
        depth = GaugeMetricFamily("lienthong_subscription_messages",
                                  "Messages in a subscription's queue", labels=labels)
        consumers = GaugeMetricFamily("lienthong_subscription_consumers",
                                      "Consumers attached to a subscription's queue",
                                      labels=labels)
        dead = GaugeMetricFamily("lienthong_subscription_dead_messages",
                                 "Messages in a subscription's dead letters", labels=labels)
        oldest = GaugeMetricFamily(
            "lienthong_subscription_oldest_message_seconds",
            "Age of the oldest message (ready or unacknowledged) of a subscription's queue",
            labels=labels)
        alert = GaugeMetricFamily(
            "lienthong_subscription_alert",
            "1 when a subscription is reported: reason backlog (its queue past "
            "subscription_alert_depth) or no_consumer (none for "
            "subscription_alert_idle_minutes)", labels=[*labels, "reason"])
        if self.latest is not None:
            found = list(self.latest())
        else:
            try:
                found = statuses(self.settings, self.store)
            except HubError:
                found = []
        for st in found:
            key = [st.subscription.name, st.subscription.ministry]
            depth.add_metric(key, st.depth)
            consumers.add_metric(key, st.consumers)
            dead.add_metric(key, st.dead)
            if st.oldest_age is not None:
                oldest.add_metric(key, st.oldest_age)
            for reason in (BACKLOG, NO_CONSUMER):
                alert.add_metric([*key, reason], 1.0 if reason in st.reasons else 0.0)
        yield from (depth, consumers, dead, oldest, alert)
