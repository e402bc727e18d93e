"""Building blocks for tests of the postal adapter: a sample pick-up request, its
envelope, and an AdapterContext pointed at a simulator with a quick call policy."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from state_fakes import MemoryOrders

from adapters.postal import events, store
from adapters.postal.orders import Orders
from adapters.postal.runtime import PostalRuntime
from adapters.postal.tracking import poll_report
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.testing.adapters import quick_context

UPSTREAM = "VN:GOV:000.00.00.H56:igate"



def history(book: Orders, waybill: str) -> list[dict[str, Any]]:
    """The tracking an order book recorded for a waybill, oldest first."""
    if isinstance(book, MemoryOrders):
        return [{"waybill": w, "state": s, "at": at, "event_id": i, "event": body}
                for (w, s, at), (i, body, _) in book._by_time() if w == waybill]
    table = store.tracking
    query = sa.select(table).where(table.c.waybill == waybill).order_by(table.c.at)
    with book.engine.connect() as conn:  # type: ignore[attr-defined]  # a SqlOrders
        return [dict(r) for r in conn.execute(query).mappings()]


def random_dossier_code(agency: str = "000.00.00.H56") -> str:
    """A dossier code unlikely to be met twice (tests share databases and simulators, and a
    dossier's order is placed once)."""
    day = date(2020, 1, 1) + timedelta(days=random.randrange(3650))
    return f"{agency}-{day:%y%m%d}-{random.randrange(1, 10_000):04d}"


def sample_pickup(
    dossier_code: str = "000.00.00.H56-250101-0001", **changes: Any
) -> dict[str, Any]:
    """A canonical ``vn.gov.postal.pickup-requested`` body (returning a result)."""
    data: dict[str, Any] = {
        "dossier_code": dossier_code,
        "sender": {
            "name": "Trung tâm Phục vụ hành chính công tỉnh Thanh Hóa",
            "address": "28 Đại lộ Lê Lợi, TP Thanh Hóa",
            "phone": "02373750000",
            "province": "Thanh Hóa",
            "district": "TP Thanh Hóa",
        },
        "receiver": {
            "name": "Nguyễn Văn A",
            "address": "1 Lê Lợi, Sầm Sơn",
            "phone": "0912345678",
            "province": "Thanh Hóa",
            "district": "Sầm Sơn",
            "email": "a@example.vn",
        },
        "cod_amount": "0",
        "description": "",
        "direction": "return",
    }
    data.update(changes)
    return data


def pickup_envelope(data: dict[str, Any] | None = None, **changes: Any) -> Envelope:
    body = data or sample_pickup(**changes)
    agency = body["dossier_code"].split("-")[0]
    return Envelope.new(
        source=UPSTREAM,
        type=events.PICKUP_REQUESTED,
        subject=body["dossier_code"],
        data=body,
        agency=agency,
        procedure="2.002492",
    )


def context(settings: Any, base_url: str, **kwargs: Any) -> AdapterContext:
    return quick_context(settings, "postal", base_url, **kwargs)


async def poll_tracking(ctx: AdapterContext, order_numbers: Sequence[str] | None = None
                        ) -> list[Envelope]:
    """The tracking events polling found for the orders named (all open ones when None) that
    still have to be published: a polling pass without its publication."""
    return (await poll_report(ctx, order_numbers)).events


def mark_emitted(ctx: AdapterContext, event_ids: Iterable[str]) -> int:
    """Record that these events were published (confirmed): they are not returned again."""
    rt = PostalRuntime.from_context(ctx)
    return rt.orders.mark_emitted(event_ids, rt.clock())
