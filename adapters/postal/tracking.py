"""Tracking by polling: the postal service is asked for the tracking of open orders (all pages)
and each change of collection state becomes ``vn.gov.postal.tracking-updated``; entries that
change nothing are not emitted.

``poll_tracking(ctx, orders)`` returns the events to publish: changes found in this run and any
found earlier whose publication was never confirmed. After publishing them, call
``mark_emitted(ctx, ids)``; ``run(ctx, publish)`` does both. Event ids and bytes are stable, so a
change also pushed by webhook is the same message. Meant to run every few hours, as real
systems poll (``lienthong postal poll``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from adapters.postal import events, orders
from adapters.postal.client import PostalClient
from adapters.postal.orders import Order
from adapters.postal.runtime import PostalRuntime
from adapters.postal.translate import TrackItem
from hub.adapters import AdapterContext
from hub.adaptertables import publish_then_mark
from hub.envelope import Envelope
from hub.errors import HubError
from hub.model import PostalTracking, validate_model

log = logging.getLogger(__name__)


def tracking_envelope(rt: PostalRuntime, order: Order, item: TrackItem) -> Envelope:
    body: PostalTracking = validate_model(
        PostalTracking,
        {
            "dossier_code": order.dossier_code,
            "waybill": order.waybill,
            "state": item.state,
            "at": item.at,
            "note": item.note,
        },
    )
    return Envelope.new(
        id=events.tracking_id(order.waybill, item.state, item.at),
        source=rt.hub_id,
        type=events.TRACKING_UPDATED,
        subject=order.dossier_code,
        data=body.model_dump(mode="json"),
        agency=order.agency,
        procedure=order.procedure,
        correlationid=order.correlation_id,
        causationid=order.request_id,
        time=item.at,
    )


@dataclass
class PollReport:
    events: list[Envelope] = field(default_factory=list)
    polled: int = 0
    changes: int = 0
    errors: list[HubError] = field(default_factory=list)


async def poll_report(
    ctx: AdapterContext,
    order_numbers: Sequence[str] | None = None,
    now: datetime | None = None,
    *,
    runtime: PostalRuntime | None = None,
) -> PollReport:
    rt = runtime or PostalRuntime.from_context(ctx)
    now = now or rt.clock()
    if order_numbers is None:
        targets = await asyncio.to_thread(
            orders.open_orders, rt.engine, rt.cfg.customer_code, rt.cfg.poll_batch
        )
    else:
        targets = await asyncio.to_thread(
            orders.for_order_numbers, rt.engine, rt.cfg.customer_code, order_numbers
        )
    grouped: dict[str, list[Order]] = {}
    for order in targets:
        grouped.setdefault(order.order_number, []).append(order)
    report = PollReport()
    build = functools.partial(tracking_envelope, rt)
    client = PostalClient(rt.cfg, rt.mapping, rt.schemas_dir)
    try:
        for number, group in grouped.items():
            try:
                items = await client.tracking(number)
            except HubError as exc:
                report.errors.append(exc)
                log.warning("tracking of postal order %s failed: %s", number, exc)
                if exc.code in ("server.circuit_open", "system.unavailable", "system.timeout"):
                    break  # the service is not answering: the rest waits for the next run
                continue
            report.polled += 1
            for order in group:
                mine = [i for i in items if i.waybill == order.waybill]
                found = await asyncio.to_thread(
                    orders.apply,
                    rt.engine,
                    order.waybill,
                    mine,
                    build,
                    source=orders.POLL,
                    now=now,
                    emitted=False,
                    terminal=rt.mapping.terminal_states,
                )
                report.changes += len(found)
    finally:
        await client.aclose()
    scope = None if order_numbers is None else [o.waybill for o in targets]
    stored = await asyncio.to_thread(
        orders.unemitted, rt.engine, rt.cfg.customer_code, scope, rt.cfg.poll_batch * 10
    )
    report.events = [Envelope.from_bytes(text.encode()) for text in stored]
    return report


async def poll_tracking(
    ctx: AdapterContext,
    order_numbers: Sequence[str] | None = None,
    now: datetime | None = None,
    *,
    runtime: PostalRuntime | None = None,
) -> list[Envelope]:
    """The ``vn.gov.postal.tracking-updated`` events of the orders named (all open orders when
    None) that polling found and that still have to be published."""
    return (await poll_report(ctx, order_numbers, now, runtime=runtime)).events


def mark_emitted(
    ctx: AdapterContext,
    event_ids: Iterable[str],
    *,
    runtime: PostalRuntime | None = None,
    now: datetime | None = None,
) -> int:
    """Record that these events were published (confirmed): they are not returned again."""
    rt = runtime or PostalRuntime.from_context(ctx)
    return orders.mark_emitted(rt.engine, event_ids, now or rt.clock())


async def run(
    ctx: AdapterContext,
    publish: Callable[[Envelope], Awaitable[None]],
    order_numbers: Sequence[str] | None = None,
    *,
    runtime: PostalRuntime | None = None,
) -> PollReport:
    """One polling pass: poll, publish each event (``publish`` resolves once the broker
    confirmed it), then mark them emitted."""
    rt = runtime or PostalRuntime.from_context(ctx)
    report = await poll_report(ctx, order_numbers, runtime=rt)
    await publish_then_mark(
        report.events, publish, lambda ids: orders.mark_emitted(rt.engine, ids, rt.clock())
    )
    return report


def summary(report: PollReport) -> str:
    return json.dumps(
        {
            "polled": report.polled,
            "changes": report.changes,
            "events": len(report.events),
            "errors": [e.to_dict() for e in report.errors],
        },
        ensure_ascii=False,
    )
