"""Orders placed with the postal service and the tracking changes reported for them.

Change detection lives here, in one write transaction per order (its row locked), so a webhook
and a poll of the same order never both emit a change: an entry older than the newest the
service reported is old news; an entry in the state the order is already in is not a change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.postal.db import orders, tracking
from adapters.postal.translate import TrackItem
from hub import adaptertables
from hub.adaptertables import aware, utc, writing
from hub.envelope import Envelope

POLL, WEBHOOK, ORDER = "poll", "webhook", "order"


@dataclass(frozen=True)
class Order:
    waybill: str
    order_key: str
    order_number: str
    customer_code: str
    dossier_code: str
    direction: str
    agency: str | None
    procedure: str | None
    request_id: str
    correlation_id: str | None
    registered_event: str | None
    last_state: int | None
    last_system_at: datetime | None
    closed: bool


def _order(row: sa.Row[Any]) -> Order:
    m = row._mapping
    return Order(
        waybill=m["waybill"],
        order_key=m["order_key"],
        order_number=m["order_number"],
        customer_code=m["customer_code"],
        dossier_code=m["dossier_code"],
        direction=m["direction"],
        agency=m["agency"],
        procedure=m["procedure"],
        request_id=m["request_id"],
        correlation_id=m["correlation_id"],
        registered_event=m["registered_event"],
        last_state=m["last_state"],
        last_system_at=aware(m["last_system_at"]),
        closed=bool(m["closed"]),
    )


def _one(engine: Engine, where: sa.ColumnElement[bool]) -> Order | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(orders).where(where)).first()
    return _order(row) if row is not None else None


def by_key(engine: Engine, order_key: str) -> Order | None:
    return _one(engine, orders.c.order_key == order_key)


def by_waybill(engine: Engine, waybill: str) -> Order | None:
    return _one(engine, orders.c.waybill == waybill)


def open_order(
    engine: Engine,
    *,
    waybill: str,
    order_key: str,
    order_number: str,
    customer_code: str,
    dossier_code: str,
    direction: str,
    agency: str | None,
    procedure: str | None,
    request_id: str,
    correlation_id: str | None,
    now: datetime,
) -> Order:
    """Record an order about to be placed, or return the one recorded for this key."""
    try:
        with writing(engine) as conn:
            conn.execute(
                sa.insert(orders).values(
                    waybill=waybill,
                    order_key=order_key,
                    order_number=order_number,
                    customer_code=customer_code,
                    dossier_code=dossier_code,
                    direction=direction,
                    agency=agency,
                    procedure=procedure,
                    request_id=request_id,
                    correlation_id=correlation_id,
                    closed=False,
                    created_at=utc(now),
                    updated_at=utc(now),
                )
            )
    except IntegrityError:
        pass
    found = by_key(engine, order_key)
    if found is None:  # pragma: no cover - written just now or already there
        raise RuntimeError(f"postal order {order_key} vanished after insert")
    return found


def drop(engine: Engine, waybill: str) -> None:
    """Forget an order that was never placed (its waybill turned out to be used elsewhere)."""
    with writing(engine) as conn:
        conn.execute(sa.delete(orders).where(orders.c.waybill == waybill))


def _event_json(env: Envelope) -> str:
    return json.dumps(env.to_dict(), ensure_ascii=False, default=str)


def _insert_tracking(
    conn: Connection,
    waybill: str,
    state: int,
    at: datetime,
    env: Envelope,
    source: str,
    now: datetime,
    emitted: bool,
) -> None:
    conn.execute(
        sa.insert(tracking).values(
            waybill=waybill,
            state=state,
            at=utc(at),
            event_id=env.id,
            event=_event_json(env),
            source=source,
            recorded_at=utc(now),
            emitted_at=utc(now) if emitted else None,
        )
    )


def register(
    engine: Engine, order: Order, event: Envelope, state: int, at: datetime, now: datetime
) -> str:
    """The order was accepted: keep its first tracking event (first writer wins) and return
    the stored one, re-emitted verbatim on a redelivery."""
    with writing(engine) as conn:
        current = conn.execute(
            sa.select(orders.c.registered_event)
            .where(orders.c.waybill == order.waybill)
            .with_for_update()
        ).scalar()
        if current is None:
            conn.execute(
                sa.update(orders)
                .where(orders.c.waybill == order.waybill)
                .values(
                    registered_event=_event_json(event),
                    last_state=state,
                    updated_at=utc(now),
                )
            )
            _insert_tracking(conn, order.waybill, state, at, event, ORDER, now, emitted=True)
            current = _event_json(event)
    return str(current)


def apply(
    engine: Engine,
    waybill: str,
    items: Iterable[TrackItem],
    build: Callable[[Order, TrackItem], Envelope],
    *,
    source: str,
    now: datetime,
    emitted: bool,
    terminal: frozenset[int],
) -> list[str]:
    """Record the changes among ``items`` (entries of one waybill) and return their events.
    A webhook repeating an entry already recorded gets its stored event back (the system
    sent it again because our answer was lost)."""
    out: list[str] = []
    with writing(engine) as conn:
        row = conn.execute(
            sa.select(orders).where(orders.c.waybill == waybill).with_for_update()
        ).first()
        if row is None:
            return out
        order = _order(row)
        state, newest = order.last_state, order.last_system_at
        for item in sorted(items, key=lambda i: i.at):
            known = conn.execute(
                sa.select(tracking.c.event).where(
                    tracking.c.waybill == waybill,
                    tracking.c.state == item.state,
                    tracking.c.at == utc(item.at),
                )
            ).scalar()
            if known is not None:
                if source == WEBHOOK:
                    out.append(str(known))
                continue
            if newest is not None and item.at < newest:
                continue  # older than what the service already told us
            newest = item.at if newest is None else max(newest, item.at)
            if item.state == state:
                continue  # the same state reported again: not a change
            env = build(order, item)
            _insert_tracking(conn, waybill, item.state, item.at, env, source, now, emitted)
            out.append(_event_json(env))
            state = item.state
        conn.execute(
            sa.update(orders)
            .where(orders.c.waybill == waybill)
            .values(
                last_state=state,
                last_system_at=utc(newest) if newest else None,
                closed=state in terminal,
                updated_at=utc(now),
            )
        )
    return out


def for_order_numbers(engine: Engine, customer_code: str, numbers: Sequence[str]) -> list[Order]:
    """Placed orders of ``customer_code`` with these order numbers."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(orders).where(
                orders.c.customer_code == customer_code,
                orders.c.order_number.in_(list(numbers)),
                orders.c.registered_event.is_not(None),
            )
        ).all()
    return [_order(r) for r in rows]


def open_orders(engine: Engine, customer_code: str, limit: int) -> list[Order]:
    """Placed orders of ``customer_code`` not yet delivered or cancelled, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(orders)
            .where(
                orders.c.customer_code == customer_code,
                orders.c.closed.is_(False),
                orders.c.registered_event.is_not(None),
            )
            .order_by(orders.c.created_at)
            .limit(limit)
        ).all()
    return [_order(r) for r in rows]


def unemitted(
    engine: Engine, customer_code: str, waybills: Sequence[str] | None, limit: int
) -> list[str]:
    """Events found by polling whose publication was not confirmed yet: of these waybills, or
    of every order of ``customer_code`` (None), closed ones included."""
    mine = sa.select(orders.c.waybill).where(orders.c.customer_code == customer_code)
    query = sa.select(tracking.c.event).where(
        tracking.c.emitted_at.is_(None), tracking.c.waybill.in_(mine)
    )
    if waybills is not None:
        if not waybills:
            return []
        query = query.where(tracking.c.waybill.in_(list(waybills)))
    with engine.connect() as conn:
        rows = (
            conn.execute(query.order_by(tracking.c.waybill, tracking.c.at).limit(limit))
            .scalars()
            .all()
        )
    return [str(r) for r in rows]


def mark_emitted(engine: Engine, event_ids: Iterable[str], now: datetime) -> int:
    return adaptertables.mark_emitted(engine, tracking, event_ids, now)


def history(engine: Engine, waybill: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(tracking).where(tracking.c.waybill == waybill).order_by(tracking.c.at)
        ).all()
    return [dict(r._mapping) for r in rows]
