"""Tracking by polling (docs/adapters/postal.md): open orders' tracking is asked for, all pages,
and each change of collection state becomes ``vn.gov.postal.tracking-updated`` (the same
message a webhook of the change yields). ``poll_report`` returns the pass (a
``hub.stateful.Sweep``) with the events to publish, those found earlier whose publication was
never confirmed included; ``run`` publishes them and marks them emitted."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated

import typer

from adapters.postal import events, orders
from adapters.postal.client import PostalClient
from adapters.postal.orders import Order
from adapters.postal.runtime import PostalRuntime
from adapters.postal.translate import TrackItem
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.model import PostalTracking, validate_model
from hub.stateful import Sweep, open_pass, run_job


def tracking_envelope(rt: PostalRuntime, order: Order, item: TrackItem) -> Envelope:
    body: PostalTracking = validate_model(PostalTracking, {
        "dossier_code": order.dossier_code, "waybill": order.waybill, "state": item.state,
        "at": item.at, "note": item.note})
    return order.caused(id=events.tracking_id(order.waybill, item.state, item.at),
                        source=rt.hub_id, type=events.TRACKING_UPDATED,
                        data=body.model_dump(mode="json"), time=item.at)


async def poll_report(
    ctx: AdapterContext,
    order_numbers: Sequence[str] | None = None,
    now: datetime | None = None,
    *,
    runtime: PostalRuntime | None = None,
) -> Sweep:
    rt = runtime or PostalRuntime.from_context(ctx)
    at = now or rt.clock()
    customer = rt.cfg.customer_code
    targets = await (asyncio.to_thread(rt.orders.open, customer, rt.cfg.poll_batch)
                     if order_numbers is None
                     else asyncio.to_thread(rt.orders.numbered, customer, order_numbers))
    grouped: dict[str, list[Order]] = {}
    for order in targets:
        grouped.setdefault(order.order_number, []).append(order)
    report = Sweep.of("polled", "changes")
    build = functools.partial(tracking_envelope, rt)
    client = PostalClient(rt)

    async def poll(number: str) -> None:
        items = await client.tracking(number)
        report.count("polled")
        for order in grouped[number]:
            found = await asyncio.to_thread(
                rt.orders.track, order.waybill, [i for i in items if i.waybill == order.waybill],
                build, source=orders.POLL, now=at, emitted=False,
                terminal=rt.mapping.statuses.terminal.states)
            report.count("changes", len(found))

    scope = None if order_numbers is None else [o.waybill for o in targets]
    return await open_pass(report, grouped, poll,
                           lambda number: f"tracking of postal order {number}",
                           lambda: rt.orders.unemitted(customer, scope, rt.cfg.poll_batch * 10),
                           client)


async def run(ctx: AdapterContext, publish: Callable[[Envelope], Awaitable[None]],
              order_numbers: Annotated[list[str] | None, typer.Argument(
                  help="Order numbers (dossier codes) to poll; default: every open order.",
                  show_default=False)] = None, *,
              runtime: PostalRuntime | None = None) -> Sweep:
    """Poll tracking of open orders and publish vn.gov.postal.tracking-updated for each change
    of state. The webhook does the same as the postal service pushes; polling catches what a
    push missed. (``publish`` resolves once the broker confirmed; the events are then marked
    emitted.)"""
    rt = runtime or PostalRuntime.from_context(ctx)
    return await run_job(await poll_report(ctx, order_numbers, runtime=rt), publish,
                         lambda ids: rt.orders.mark_emitted(ids, rt.clock()))
