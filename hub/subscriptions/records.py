"""The subscriptions table of the store (``hub.store.tables.subscriptions``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.errors import ClientError
from hub.store import Store
from hub.store.engine import translate_errors
from hub.store.tables import subscriptions as table
from hub.subscriptions.model import Subscription


class SubscriptionExists(ClientError):
    code = "client.subscription_exists"


class SubscriptionUnknown(ClientError):
    code = "client.subscription_unknown"


def _of(row: Any) -> Subscription:
    return Subscription(
        name=row.name, ministry=row.ministry, event_types=tuple(row.event_types),
        agencies=tuple(row.agencies), procedures=tuple(row.procedures),
        projection=row.projection, created_at=row.created_at,
        consumer_seen_at=row.consumer_seen_at)


def add(store: Store, sub: Subscription) -> Subscription:
    now = datetime.now(UTC)
    try:
        with translate_errors("adding a subscription"), store.engine.begin() as conn:
            conn.execute(insert(table).values(
                name=sub.name, ministry=sub.ministry, event_types=list(sub.event_types),
                agencies=list(sub.agencies), procedures=list(sub.procedures),
                projection=sub.projection, created_at=now, updated_at=now))
    except IntegrityError:
        raise SubscriptionExists(
            f"a subscription named {sub.name!r} exists already; choose another name, or "
            f"`lienthong subscriptions remove {sub.name}` first", field="name") from None
    return get(store, sub.name)


def all_(store: Store, ministry: str | None = None) -> list[Subscription]:
    query = select(table).order_by(table.c.name)
    if ministry is not None:
        query = query.where(table.c.ministry == ministry)
    with translate_errors("reading the subscriptions"), store.engine.connect() as conn:
        return [_of(r) for r in conn.execute(query)]


def get(store: Store, name: str) -> Subscription:
    with translate_errors("reading a subscription"), store.engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.name == name)).first()
    if row is None:
        raise SubscriptionUnknown(
            f"no subscription named {name!r}; `lienthong subscriptions list` shows them",
            field="name")
    return _of(row)


def remove(store: Store, name: str) -> None:
    with translate_errors("removing a subscription"), store.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.name == name))


def seen(store: Store, names: list[str], at: datetime) -> None:
    """A consumer was on these subscriptions' queues at ``at``."""
    if not names:
        return
    with translate_errors("recording consumers seen"), store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.name.in_(names)).values(consumer_seen_at=at))
