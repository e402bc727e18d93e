"""In-memory fakes of the stateful adapters' ports, for unit tests: ``MemoryLedger``
(adapters.payment.ledger.Ledger), ``MemoryOrders`` (adapters.postal.orders.Orders) and
``MemoryWaybills`` (hub.numberpool.NumberPool). The rules are the SQL implementations' own
(``judge``, ``stepped``, ``hub.statefeed.changes``): only the keeping differs, and the same
tests run against both (test_adapter_payment_ledger.py, test_adapter_postal_pool.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from adapters.payment.ledger import PENDING, Report, Settlement, Transaction, judge, stepped
from adapters.postal.orders import WEBHOOK, Build, Order
from adapters.postal.pool import check_waybill, empty
from adapters.postal.translate import TrackItem
from hub.envelope import Envelope
from hub.numberpool import BURNED, FREE, TAKEN, PoolCounts
from hub.parked import Parked
from hub.parked import ParkedReport as Mismatch
from hub.reports import Settled
from hub.statefeed import changes
from hub.stateful import event_json


@dataclass
class _Kept:
    partner: str
    settlement: Settlement
    settled_at: datetime
    emitted: bool


class MemoryLedger:
    def __init__(self) -> None:
        self.payments: dict[str, Transaction] = {}
        self.settlements: dict[tuple[str, str], _Kept] = {}
        self.mismatches: dict[tuple[str, str], Mismatch] = {}
        self.notes: list[dict[str, Any]] = []

    def add(self, payment: Transaction) -> Transaction:
        return self.payments.setdefault(payment.reference, payment)

    def get(self, reference: str) -> Transaction | None:
        return self.payments.get(reference)

    def initiated(self, reference: str, payment_url: str, event: Envelope, now: datetime) -> str:
        payment = self.payments[reference]
        if payment.initiated_event is None:
            payment = self.payments[reference] = replace(
                payment, payment_url=payment_url, initiated_event=event_json(event))
        assert payment.initiated_event is not None
        return payment.initiated_event

    def step(self, reference: str, outcome: str, now: datetime) -> str | None:
        payment = self.payments.get(reference)
        state = stepped(payment.status, outcome) if payment is not None else None
        if payment is not None and state is not None:
            self.payments[reference] = replace(payment, status=state)
        return state

    def settle(self, report: Report, *, event: Envelope | None, currency: str, now: datetime,
               emitted: bool) -> Settled:
        payment = self.payments.get(report.reference)
        if payment is None:
            raise LookupError(report.reference)
        kept = self.settlements.get((report.reference, report.transaction_id))
        verdict = judge(payment, kept.settlement if kept else None, report, event, currency)
        self.payments[report.reference] = replace(payment, status=verdict.state)
        if verdict.record is not None:
            body = event_json(verdict.record)
            self.settlements[(report.reference, report.transaction_id)] = _Kept(
                payment.partner, Settlement(verdict.record.id, body, report.paid), now, emitted)
            self._note(report, event_id=verdict.record.id)
            return Settled(body, verdict.state)
        if verdict.parked is not None:
            self._park(report, verdict.parked, now, payment, verdict.state, verdict.expected)
            self._note(report, parked=verdict.parked)
            return Settled(None, verdict.state, verdict.parked)
        again = verdict.again
        self._note(report, event_id=again.event_id if again else None, reason=verdict.note)
        return Settled(again.event if again else None, verdict.state, repeat=True)

    def park(self, report: Report, parked: Parked, now: datetime, *,
             expected: Mapping[str, Any]) -> None:
        self._park(report, parked, now, None, None, expected)
        self._note(report, parked=parked)

    def _park(self, report: Report, parked: Parked, now: datetime,
              payment: Transaction | None, state_after: str | None,
              expected: Mapping[str, Any]) -> None:
        key = (report.source, report.digest)
        seen = self.mismatches.get(key)
        self.mismatches[key] = replace(seen, last_seen_at=now, times=seen.times + 1) if seen else (
            Mismatch(id=len(self.mismatches) + 1, reference=report.reference or None,
                     transaction_id=report.transaction_id or None, source=report.source,
                     reason_code=parked.code, reason=parked.reason, field=parked.field,
                     state_before=payment.status if payment else None, state_after=state_after,
                     dossier_code=payment.dossier_code if payment else None,
                     agency=payment.agency if payment else None, expected=dict(expected),
                     reported=dict(report.facts), peer=report.peer, first_seen_at=now,
                     last_seen_at=now, times=1))

    def _note(self, report: Report, *, event_id: str | None = None,
              parked: Parked | None = None, reason: str | None = None) -> None:
        if report.source == "callback":
            self.notes.append({"reference": report.reference, "accepted": parked is None,
                               "event_id": event_id, "reason_code": parked and parked.code,
                               "reason": parked.reason if parked else reason})

    def pending(self, partner: str, cutoff: datetime, limit: int) -> list[Transaction]:
        due = [p for p in self.payments.values()
               if p.partner == partner and p.status == PENDING and p.created_at <= cutoff]
        return sorted(due, key=lambda p: p.created_at)[:limit]

    def checked(self, reference: str, now: datetime) -> None:
        self.payments[reference] = replace(self.payments[reference], checked_at=now)

    def unemitted(self, partner: str, limit: int) -> list[str]:
        kept = sorted((k for k in self.settlements.values()
                       if k.partner == partner and not k.emitted), key=lambda k: k.settled_at)
        return [k.settlement.event for k in kept][:limit]

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        ids, marked = set(event_ids), 0
        for kept in self.settlements.values():
            if kept.settlement.event_id in ids and not kept.emitted:
                kept.emitted, marked = True, marked + 1
        return marked

    def parked_reports(self, *, reference: str | None = None,
                       limit: int = 100) -> list[Mismatch]:
        found = [m for m in self.mismatches.values() if reference in (None, m.reference)]
        return sorted(found, key=lambda m: (m.last_seen_at, m.id), reverse=True)[:limit]


class MemoryOrders:
    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}  # by waybill
        self.tracking: dict[tuple[str, int, datetime], tuple[str, str, bool]] = {}

    def by_key(self, order_key: str) -> Order | None:
        return next((o for o in self.orders.values() if o.order_key == order_key), None)

    def by_waybill(self, waybill: str) -> Order | None:
        return self.orders.get(waybill)

    def add(self, order: Order) -> Order:
        found = self.by_key(order.order_key)
        return found or self.orders.setdefault(order.waybill, order)

    def drop(self, waybill: str) -> None:
        self.orders.pop(waybill, None)

    def register(self, waybill: str, event: Envelope, state: int, at: datetime,
                 now: datetime) -> str:
        order = self.orders[waybill]
        if order.registered_event is None:
            body = event_json(event)
            self.tracking[(waybill, state, at)] = (event.id, body, True)
            order = self.orders[waybill] = replace(order, registered_event=body, last_state=state)
        assert order.registered_event is not None
        return order.registered_event

    def track(self, waybill: str, items: Iterable[TrackItem], build: Build, *, source: str,
              now: datetime, emitted: bool, terminal: frozenset[int]) -> list[str]:
        order = self.orders.get(waybill)
        if order is None:
            return []
        recorded = {(s, at): body for (w, s, at), (_, body, _) in self.tracking.items()
                    if w == waybill}
        found = changes(order, recorded, items, build, source == WEBHOOK)
        for item, env in found.new:
            self.tracking[(waybill, item.state, item.at)] = (env.id, event_json(env), emitted)
        self.orders[waybill] = replace(order, last_state=found.state, last_system_at=found.newest,
                                       closed=found.state in terminal)
        return found.events

    def numbered(self, customer_code: str, numbers: Sequence[str]) -> list[Order]:
        return [o for o in self.orders.values() if o.customer_code == customer_code
                and o.order_number in numbers and o.registered_event is not None]

    def open(self, customer_code: str, limit: int) -> list[Order]:
        found = [o for o in self.orders.values() if o.customer_code == customer_code
                 and not o.closed and o.registered_event is not None]
        return sorted(found, key=lambda o: o.created_at)[:limit]

    def unemitted(self, customer_code: str, waybills: Sequence[str] | None,
                  limit: int) -> list[str]:
        mine = {w for w, o in self.orders.items() if o.customer_code == customer_code}
        return [body for (w, _, _), (_, body, emitted) in self._by_time()
                if not emitted and w in mine and (waybills is None or w in waybills)][:limit]

    def mark_emitted(self, event_ids: Iterable[str], now: datetime) -> int:
        ids, marked = set(event_ids), 0
        for key, (event_id, body, emitted) in self.tracking.items():
            if event_id in ids and not emitted:
                self.tracking[key], marked = (event_id, body, True), marked + 1
        return marked

    def _by_time(self) -> list[tuple[tuple[str, int, datetime], tuple[str, str, bool]]]:
        return sorted(self.tracking.items(), key=lambda kv: (kv[0][0], kv[0][2]))


class MemoryWaybills:
    def __init__(self) -> None:
        self.numbers: dict[str, list[Any]] = {}  # number -> [customer, state, order key]

    def add(self, customer_code: str, numbers: Iterable[str], now: datetime) -> int:
        new = [n for n in map(check_waybill, numbers) if n not in self.numbers]
        self.numbers.update({n: [customer_code, FREE, None] for n in new})
        return len(set(new))

    def take(self, customer_code: str, order_key: str, now: datetime) -> str:
        for number, (_, state, key) in self.numbers.items():
            if key == order_key and state == TAKEN:
                return number
        free = sorted(n for n, (c, state, _) in self.numbers.items()
                      if c == customer_code and state == FREE)
        if not free:
            raise empty(customer_code)
        self.numbers[free[0]][1:] = [TAKEN, order_key]
        return free[0]

    def burn(self, waybill: str, reason: str, now: datetime) -> None:
        self.numbers[waybill][1:] = [BURNED, None]

    def counts(self, customer_code: str) -> PoolCounts:
        states = [state for c, state, _ in self.numbers.values() if c == customer_code]
        return PoolCounts(states.count(FREE), states.count(TAKEN), states.count(BURNED))

    def taken_by(self, waybills: Sequence[str]) -> dict[str, str | None]:
        return {n: self.numbers[n][2] for n in waybills if n in self.numbers}
