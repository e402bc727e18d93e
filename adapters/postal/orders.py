"""Orders placed with the postal service and their tracking, behind ``Orders`` (``store.SqlOrders``
or an in-memory fake). Their tracking is a feed of each order's collection state
(``hub.statefeed``): only changes become events, decided in one write per order (its row
locked), so a webhook and a poll of the same order never both emit a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from adapters.postal.translate import TrackItem
from hub.envelope import Envelope
from hub.stateful import Requested
from hub.statestore import Records

POLL, WEBHOOK, ORDER = "poll", "webhook", "order"


@dataclass(frozen=True, kw_only=True)
class Order(Requested):
    waybill: str
    order_key: str  # dossier code and direction: one order each
    order_number: str
    customer_code: str
    direction: str
    registered_event: str | None = None
    last_state: int | None = None
    last_system_at: datetime | None = None  # newest time the postal service reported
    closed: bool = False


# Builds the ``vn.gov.postal.tracking-updated`` event of an entry.
Build = Callable[[Order, TrackItem], Envelope]


class Orders(Records[Order], Protocol):
    """The postal adapter's orders and their tracking."""

    def by_key(self, order_key: str) -> Order | None: ...

    def by_waybill(self, waybill: str) -> Order | None: ...

    def drop(self, waybill: str) -> None:
        """Forget an order that was never placed (its waybill is used elsewhere)."""

    def register(self, waybill: str, event: Envelope, state: int, at: datetime,
                 now: datetime) -> str:
        """The order was accepted: keep its first tracking event, first writer wins; the
        stored one, re-emitted verbatim on a redelivery."""

    def track(self, waybill: str, items: Iterable[TrackItem], build: Build, *, source: str,
              now: datetime, emitted: bool, terminal: frozenset[int]) -> list[str]:
        """Record the changes among ``items`` (``hub.statefeed.changes``) and return their
        events; an order in a ``terminal`` state is closed. None for a waybill of no order."""

    def numbered(self, customer_code: str, numbers: Sequence[str]) -> list[Order]:
        """Placed orders of ``customer_code`` with these order numbers."""

    def open(self, customer_code: str, limit: int) -> list[Order]:
        """Placed orders of ``customer_code`` not yet delivered or cancelled, oldest first."""

    def unemitted(self, customer_code: str, waybills: Sequence[str] | None,
                  limit: int) -> list[str]:
        """Events found by polling whose publication was not confirmed yet: of these waybills,
        or of every order of ``customer_code`` (None), closed ones included."""
