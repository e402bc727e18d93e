"""A subscription: a ministry's queue bound to exactly the event types, agencies and
procedures it asked for.

Routing keys are ``<domain>.<event>.<agency>.<procedure>`` (``hub.envelope.routing_key``); a
subscription's patterns are every combination of its types, agencies and procedures, with
``*`` for "any agency" or "any procedure". The fan-out matches a message against the same
patterns it bound the feed with, so what it sends a ministry is exactly what the ministry's
bindings would have taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from typing import Any

from hub import codes
from hub.broker.names import Names
from hub.envelope import check_source, check_type
from hub.errors import ClientError

ANY = "*"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ClientError(
            f"{name!r} is not a subscription name; use 1 to 63 lowercase letters, digits and "
            "dashes, starting with a letter or digit (e.g. 'bhxh-dossiers')",
            code="client.bad_subscription_name", field="name")
    return name


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    ministry: str  # the ministry's system id, VN:GOV:<agency>:<system>
    event_types: tuple[str, ...]
    agencies: tuple[str, ...]  # agency codes, or ("*",)
    procedures: tuple[str, ...]  # procedure codes, or ("*",)
    projection: str
    created_at: datetime | None = None
    consumer_seen_at: datetime | None = None

    @classmethod
    def new(cls, name: str, ministry: str, event_types: list[str], agencies: list[str],
            procedures: list[str], projection: str) -> Subscription:
        check_name(name)
        check_source(ministry, "ministry")
        if not event_types:
            raise ClientError("a subscription needs at least one event type (--type)",
                              code="client.subscription_invalid", field="event_types")
        for t in event_types:
            check_type(t, "event_types")
        agencies = agencies or [ANY]
        procedures = procedures or [ANY]
        for a in agencies:
            if a != ANY:
                codes.parse_agency(a, "agencies")
        for p in procedures:
            if p != ANY and (not p or "_" in p or any(c in p for c in "*# ")):
                raise ClientError(
                    f"{p!r} is not a procedure code; give a code like '2.002492' or '*'",
                    code="client.subscription_invalid", field="procedures")
        for label, values in (("agencies", agencies), ("procedures", procedures)):
            if ANY in values and len(values) > 1:
                raise ClientError(f"'*' already means every one of the {label}; give '*' "
                                  "alone or a list of codes",
                                  code="client.subscription_invalid", field=label)
        return cls(name, ministry, tuple(sorted(set(event_types))), tuple(sorted(set(agencies))),
                   tuple(sorted(set(procedures))), projection)

    def patterns(self) -> list[str]:
        """The topic patterns of the subscription's bindings."""
        out = []
        for t, a, p in product(self.event_types, self.agencies, self.procedures):
            _, _, domain, event = t.split(".", 3)
            out.append(".".join((domain, event, _segment(a), _segment(p))))
        return out

    def matches(self, routing_key: str) -> bool:
        return any(topic_match(p, routing_key) for p in self.patterns())


def _segment(code: str) -> str:
    return ANY if code == ANY else codes.encode_for_routing(code)


def topic_match(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` one word, ``#`` zero or more."""
    return _match(pattern.split("."), key.split("."))


def _match(pat: list[str], words: list[str]) -> bool:
    if not pat:
        return not words
    head = pat[0]
    if head == "#":
        return any(_match(pat[1:], words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(pat[1:], words[1:])


@dataclass(frozen=True, slots=True)
class SubscriptionNames:
    """Queue and exchange names of the subscriptions, under the hub's prefix."""

    names: Names

    @classmethod
    def of(cls, settings: Any) -> SubscriptionNames:
        return cls(Names(settings.name_prefix))

    @property
    def feed(self) -> str:
        """The fan-out's queue: bound on the events exchange with every subscription's
        patterns; only the hub reads it."""
        return f"{self.names.prefix}.fanout"

    @property
    def history(self) -> str:
        """The stream every event is appended to."""
        return f"{self.names.prefix}.history"

    def queue(self, subscription: str) -> str:
        return f"{self.names.prefix}.sub.{subscription}"

    def dead(self, subscription: str) -> str:
        return f"{self.names.prefix}.sub.{subscription}.dead"

    def user(self, ministry: str) -> str:
        """The ministry's RabbitMQ user (users are per broker, not per vhost: the prefix keeps
        hubs sharing a broker apart)."""
        _, _, agency, system = ministry.split(":")
        return f"{self.names.prefix}-{agency}-{system}"
