"""The postal worker: ``vn.gov.postal.pickup-requested`` -> a waybill from the pool -> create
order at the postal service -> ``vn.gov.postal.tracking-updated`` (state 1, registered).

The waybill is taken (once per dossier and direction) and the order recorded *before* the call,
so a redelivered request reuses the same waybill and, once the order was accepted, re-emits the
stored event byte for byte instead of ordering again.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.postal import events, pool, translate
from adapters.postal.client import PostalClient
from adapters.postal.config import ORIGIN
from adapters.postal.orders import Order
from adapters.postal.runtime import PostalRuntime
from adapters.postal.tracking import tracking_envelope
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import InvalidMessage, RetryableError
from hub.model import PostalPickup, parse_event_data
from hub.privacy import initials, mask_identity
from hub.stateful import Requested, StatefulWorker, canonical, stored

log = logging.getLogger(__name__)

REGISTERED = 1


class PostalWorker(StatefulWorker[PostalRuntime]):
    consumes = events.PICKUP_REQUESTED
    runtime_of = PostalRuntime.from_context
    client_of = PostalClient
    client: PostalClient

    def __init__(self, ctx: AdapterContext, runtime: PostalRuntime | None = None) -> None:
        super().__init__(ctx, runtime)
        rt = self.rt
        pool.WAYBILLS.keep(rt.pool, rt.cfg.customer_code, rt.cfg.pool, rt.clock())

    async def handle(self, env: Envelope) -> list[Envelope]:
        rt = self.rt
        now = rt.clock()
        with canonical():
            pickup = parse_event_data(env.type, env.data)
            assert isinstance(pickup, PostalPickup)
            number = translate.order_number(pickup, rt.cfg)
            # The translation is checked against the contract before a waybill is spent on it
            # (with a stand-in number; only ItemCode differs in the real message).
            draft = translate.order_message(pickup, "EA000000000VN", rt.cfg, rt.mapping)
        rt.contract.validate("order", draft, error=InvalidMessage, code="client.mapping_failed")
        key = f"{pickup.dossier_code}|{pickup.direction}"

        placed = await asyncio.to_thread(rt.orders.by_key, key)
        if placed is not None and placed.registered_event is not None:
            log.info("postal order %s already placed; re-emitting its event", key)
            return stored([placed.registered_event])

        waybill = await asyncio.to_thread(rt.pool.take, rt.cfg.customer_code, key, now)
        order = await asyncio.to_thread(rt.orders.add, Order(
            waybill=waybill, order_key=key, order_number=number,
            customer_code=rt.cfg.customer_code, direction=pickup.direction,
            **Requested.of(env, pickup.dossier_code, now)))
        log.info("create postal order %s waybill %s (%s) to %s, tel %s", number, order.waybill,
                 pickup.direction, initials(pickup.receiver.name),
                 mask_identity(pickup.receiver.phone))
        answer = await self.client.create_order(
            translate.order_message(pickup, order.waybill, rt.cfg, rt.mapping),
            f"order {number!r} waybill {order.waybill}")
        if answer.outcome == "waybill_used":
            await asyncio.to_thread(rt.pool.burn, order.waybill, answer.text, now)
            await asyncio.to_thread(rt.orders.drop, order.waybill)
            raise RetryableError(
                f"{answer.text}; the number is burned and the order will be retried with a "
                "fresh one", code="system.waybill_used", field="ItemCode", origin=ORIGIN)

        # Wire times have whole seconds: so does this one, so that the service's own first
        # entries (same second) compare equal, not newer.
        at = now.replace(microsecond=0)
        item = translate.TrackItem(order.waybill, REGISTERED, at, f"Status {answer.status}",
                                   number)
        registered = tracking_envelope(rt, order, item)
        return stored([await asyncio.to_thread(rt.orders.register, order.waybill, registered,
                                               REGISTERED, at, now)])
