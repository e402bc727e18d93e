"""Orders placed with the postal service and their tracking, behind ``Orders`` (``store.SqlOrders``
or an in-memory fake). Change detection is ``tracked``, pure, applied by the port in one write
per order (its row locked), so a webhook and a poll of the same order never both emit a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from adapters.postal.translate import TrackItem
from hub.envelope import Envelope
from hub.stateful import event_json

POLL, WEBHOOK, ORDER = "poll", "webhook", "order"


@dataclass(frozen=True)
class Order:
    waybill: str
    order_key: str  # dossier code and direction: one order each
    order_number: str
    customer_code: str
    dossier_code: str
    direction: str
    agency: str | None
    procedure: str | None
    request_id: str
    correlation_id: str | None
    created_at: datetime
    registered_event: str | None = None
    last_state: int | None = None
    last_system_at: datetime | None = None  # newest time the postal service reported
    closed: bool = False


# Builds the ``vn.gov.postal.tracking-updated`` event of an entry.
Build = Callable[[Order, TrackItem], Envelope]


@dataclass
class Tracked:
    """What entries of one order change: the events to return (new, or recorded before and
    pushed again), the entries to record with their events, and the order's state after."""

    state: int | None
    newest: datetime | None
    events: list[str] = field(default_factory=list)
    new: list[tuple[TrackItem, Envelope]] = field(default_factory=list)


def tracked(order: Order, recorded: Mapping[tuple[int, datetime], str],
            items: Iterable[TrackItem], build: Build, source: str) -> Tracked:
    """The changes among ``items`` (entries of ``order``'s waybill; ``recorded``: the events
    recorded for it, by state and time). A webhook repeating an entry already recorded gets its
    stored event back (the service sent it again because the hub's answer was lost). Pure."""
    out = Tracked(order.last_state, order.last_system_at)
    for item in sorted(items, key=lambda i: i.at):
        known = recorded.get((item.state, item.at))
        if known is not None:
            if source == WEBHOOK:
                out.events.append(known)
            continue
        if out.newest is not None and item.at < out.newest:
            continue  # older than what the service already told us
        out.newest = item.at if out.newest is None else max(out.newest, item.at)
        if item.state == out.state:
            continue  # the same state reported again: not a change
        env = build(order, item)
        out.new.append((item, env))
        out.events.append(event_json(env))
        out.state = item.state
    return out


class Orders(Protocol):
    """The postal adapter's orders and their tracking."""

    def by_key(self, order_key: str) -> Order | None: ...

    def by_waybill(self, waybill: str) -> Order | None: ...

    def add(self, order: Order) -> Order:
        """Record an order about to be placed, unless its key is recorded: the recorded one."""

    def drop(self, waybill: str) -> None:
        """Forget an order that was never placed (its waybill is used elsewhere)."""

    def register(self, waybill: str, event: Envelope, state: int, at: datetime,
                 now: datetime) -> str:
        """The order was accepted: keep its first tracking event, first writer wins; the
        stored one, re-emitted verbatim on a redelivery."""

    def track(self, waybill: str, items: Iterable[TrackItem], build: Build, *, source: str,
              now: datetime, emitted: bool, terminal: frozenset[int]) -> list[str]:
        """Record the changes among ``items`` (``tracked``) and return their events; an order
        in a ``terminal`` state is closed. None recorded for a waybill of no order."""

    def numbered(self, customer_code: str, numbers: Sequence[str]) -> list[Order]:
        """Placed orders of ``customer_code`` with these order numbers."""

    def open(self, customer_code: str, limit: int) -> list[Order]:
        """Placed orders of ``customer_code`` not yet delivered or cancelled, oldest first."""

    def unemitted(self, customer_code: str, waybills: Sequence[str] | None,
                  limit: int) -> list[str]:
        """Events found by polling whose publication was not confirmed yet: of these waybills,
        or of every order of ``customer_code`` (None), closed ones included."""

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int: ...
