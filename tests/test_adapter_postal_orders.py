"""The postal adapter's orders, through their port: the SQL orders (SQLite and PostgreSQL) and the
in-memory fake unit tests use keep the same promises. An order is recorded once per key, its
first event kept (first writer wins), and tracking entries become events only when they change
the order's state: old news, repeats and the same state again are not changes, a webhook sent
again gets its event back, a terminal state closes the order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postal_support import history
from state_fakes import MemoryOrders

from adapters.postal.orders import POLL, WEBHOOK, Order, Orders
from adapters.postal.store import SqlOrders
from adapters.postal.store import metadata as tables
from adapters.postal.translate import TrackItem
from hub.adaptertables import ensure_schema
from hub.envelope import Envelope
from hub.store.engine import make_engine

T0 = datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
TERMINAL = frozenset({3, 4})


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Orders]:
    if request.param == "memory":
        yield MemoryOrders()
        return
    url = (f"sqlite:///{tmp_path / 'orders.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = make_engine(url)
    ensure_schema(engine, tables)
    try:
        yield SqlOrders(engine)
    finally:
        engine.dispose()


def order(customer: str = "C1", **changes: object) -> Order:
    code = f"000.00.00.H56-250101-{uuid.uuid4().int % 10_000:04d}"
    base = Order(waybill=f"W{uuid.uuid4().hex[:12].upper()}", order_key=f"{code}|{uuid.uuid4()}",
                 order_number=code, customer_code=customer, dossier_code=code,
                 direction="return", agency="000.00.00.H56", procedure="2.002492",
                 request_id=str(uuid.uuid4()), correlation_id=None, created_at=T0)
    return replace(base, **changes)  # type: ignore[arg-type]


def build(placed: Order, item: TrackItem) -> Envelope:
    return Envelope.new(id=str(uuid.uuid4()), source="VN:GOV:000.00.00.G22:lienthong",
                        type="vn.gov.postal.tracking-updated", subject=placed.dossier_code,
                        data={"waybill": placed.waybill, "state": item.state,
                              "at": item.at.isoformat()})


def entry(placed: Order, state: int, minutes: int) -> TrackItem:
    return TrackItem(placed.waybill, state, T0 + timedelta(minutes=minutes), None)


def states(events: list[str]) -> list[int]:
    return [json.loads(e)["data"]["state"] for e in events]


def placed(book: Orders, customer: str = "C1") -> Order:
    new = book.add(order(customer))
    registered = build(new, entry(new, 1, 0))
    book.register(new.waybill, registered, 1, T0, T0)
    found = book.by_waybill(new.waybill)
    assert found is not None
    return found


def test_an_order_is_recorded_once_and_registered_once(book: Orders) -> None:
    first = order()
    assert book.add(first) == first
    assert book.add(replace(first, waybill="OTHER1", request_id="again")) == first
    assert book.by_key(first.order_key) == first
    kept = book.register(first.waybill, build(first, entry(first, 1, 0)), 1, T0, T0)
    assert book.register(first.waybill, build(first, entry(first, 1, 0)), 1, T0, T0) == kept
    found = book.by_waybill(first.waybill)
    assert found is not None and (found.registered_event, found.last_state) == (kept, 1)
    assert [row["state"] for row in history(book, first.waybill)] == [1]
    book.drop(first.waybill)
    assert book.by_waybill(first.waybill) is None


def track(book: Orders, placed: Order, items: list[TrackItem], source: str = POLL) -> list[str]:
    return book.track(placed.waybill, items, build, source=source, now=T0, emitted=False,
                      terminal=TERMINAL)


def test_only_changes_become_events(book: Orders) -> None:
    mine = placed(book)
    # Out of order, with the registered state again: one change, collecting.
    assert states(track(book, mine, [entry(mine, 2, 20), entry(mine, 1, 5)])) == [2]
    assert track(book, mine, [entry(mine, 2, 20)]) == []  # polled again: known
    assert track(book, mine, [entry(mine, 2, 30)]) == []  # the same state, later
    assert track(book, mine, [entry(mine, 1, 10)]) == []  # older than the newest: old news
    (pushed,) = track(book, mine, [entry(mine, 2, 20)], WEBHOOK)  # pushed again: answered
    assert states([pushed]) == [2]
    found = book.by_waybill(mine.waybill)
    assert found is not None and (found.last_state, found.closed) == (2, False)
    assert found.last_system_at == T0 + timedelta(minutes=30)


def test_a_terminal_state_closes_the_order(book: Orders) -> None:
    customer = f"C{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared
    mine, other = placed(book, customer), placed(book, customer)
    assert {o.waybill for o in book.open(customer, 10)} == {mine.waybill, other.waybill}
    assert states(track(book, mine, [entry(mine, 3, 40)])) == [3]
    assert [o.waybill for o in book.open(customer, 10)] == [other.waybill]
    assert [o.waybill for o in book.numbered(customer, [mine.order_number])] == [mine.waybill]
    assert book.track("NOSUCHWAYBILL", [entry(mine, 2, 1)], build, source=POLL, now=T0,
                      emitted=False, terminal=TERMINAL) == []


def test_polled_events_wait_until_marked_emitted(book: Orders) -> None:
    customer = f"C{uuid.uuid4().hex[:8]}"
    mine = placed(book, customer)
    found = track(book, mine, [entry(mine, 2, 20), entry(mine, 3, 40)])
    assert book.unemitted(customer, None, 100) == found  # the registered event went out already
    assert book.unemitted(customer, [], 100) == [] and book.unemitted("other", None, 100) == []
    ids = [json.loads(e)["id"] for e in found]
    assert book.mark_emitted(ids, T0) == 2 and book.mark_emitted(ids, T0) == 0
    assert book.unemitted(customer, [mine.waybill], 100) == []
