"""The postal worker: ``vn.gov.postal.pickup-requested`` -> a waybill from the pool -> create
order at the postal service -> ``vn.gov.postal.tracking-updated`` (state 1, registered).

The waybill is taken (once per dossier and direction) and the order recorded *before* the call,
so a redelivered request reuses the same waybill and, once the order was accepted, re-emits the
stored event byte for byte instead of ordering again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from adapters.postal import contract, events, orders, pool, translate
from adapters.postal.client import PostalClient
from adapters.postal.config import ORIGIN
from adapters.postal.runtime import PostalRuntime
from adapters.postal.tracking import tracking_envelope
from hub.adapters import AdapterContext
from hub.envelope import Envelope
from hub.errors import InvalidMessage, RetryableError, ValidationError
from hub.model import PostalPickup, parse_event_data
from hub.privacy import initials, mask_identity

log = logging.getLogger(__name__)

REGISTERED = 1


class PostalWorker:
    """The handler of the postal work queue (an async callable over deliveries)."""

    def __init__(self, ctx: AdapterContext, runtime: PostalRuntime | None = None) -> None:
        self.ctx = ctx
        self.rt = runtime or PostalRuntime.from_context(ctx)
        self.client = PostalClient(self.rt.cfg, self.rt.mapping, self.rt.schemas_dir)
        if self.rt.cfg.ranges:
            # Configured ranges are always in the pool (numbers already there are left alone).
            now = self.rt.clock()
            for span in self.rt.cfg.ranges:
                pool.add(
                    self.rt.engine,
                    self.rt.cfg.customer_code,
                    pool.expand_range(span.first, span.last),
                    now,
                )

    async def __call__(self, delivery: Any) -> list[Any]:
        from hub.broker.messages import Outgoing  # the broker layer is only needed at run time

        emitted = await self.process(delivery.envelope)
        return [Outgoing.signed(env, self.ctx.signer, self.ctx.events_exchange) for env in emitted]

    async def aclose(self) -> None:
        await self.client.aclose()

    async def process(self, env: Envelope) -> list[Envelope]:
        if env.type != events.PICKUP_REQUESTED:
            raise InvalidMessage(
                f"the postal worker handles {events.PICKUP_REQUESTED}, not {env.type}; check "
                "the work queue's bindings",
                code="client.unexpected_type",
                field="type",
            )
        rt = self.rt
        now = rt.clock()
        try:
            pickup = parse_event_data(env.type, env.data)
            assert isinstance(pickup, PostalPickup)
            number = translate.order_number(pickup, rt.cfg)
            # The translation is checked against the contract before a waybill is spent on it
            # (with a stand-in number; only ItemCode differs in the real message).
            draft = translate.order_message(pickup, "EA000000000VN", rt.cfg, rt.mapping)
        except ValidationError as exc:
            raise events.as_invalid(exc) from None
        contract.check(rt.schemas_dir, "order", draft, InvalidMessage, "client.mapping_failed")
        key = f"{pickup.dossier_code}|{pickup.direction}"

        placed = await asyncio.to_thread(orders.by_key, rt.engine, key)
        if placed is not None and placed.registered_event is not None:
            log.info("postal order %s already placed; re-emitting its event", key)
            return [Envelope.from_bytes(placed.registered_event.encode())]

        waybill = await asyncio.to_thread(pool.take, rt.engine, rt.cfg.customer_code, key, now)
        order = await asyncio.to_thread(
            lambda: orders.open_order(
                rt.engine,
                waybill=waybill,
                order_key=key,
                order_number=number,
                customer_code=rt.cfg.customer_code,
                dossier_code=pickup.dossier_code,
                direction=pickup.direction,
                agency=env.agency,
                procedure=env.procedure,
                request_id=env.id,
                correlation_id=env.correlationid or env.id,
                now=now,
            )
        )
        message = {**draft, rt.mapping.order["waybill"]: order.waybill}

        log.info(
            "create postal order %s waybill %s (%s) to %s, tel %s",
            number,
            order.waybill,
            pickup.direction,
            initials(pickup.receiver.name),
            mask_identity(pickup.receiver.phone),
        )
        answer = await self.client.create_order(message)
        if answer.outcome == "waybill_used":
            await asyncio.to_thread(pool.burn, rt.engine, order.waybill, answer.text, now)
            await asyncio.to_thread(orders.drop, rt.engine, order.waybill)
            raise RetryableError(
                f"{answer.text}; the number is burned and the order will be retried with a "
                "fresh one",
                code="system.waybill_used",
                field="ItemCode",
                origin=ORIGIN,
            )

        # Wire times have whole seconds: so does this one, so that the service's own first
        # entries (same second) compare equal, not newer.
        at = now.replace(microsecond=0)
        item = translate.TrackItem(order.waybill, REGISTERED, at, f"Status {answer.status}",
                                   number)
        registered = tracking_envelope(rt, order, item)
        stored = await asyncio.to_thread(
            orders.register, rt.engine, order, registered, REGISTERED, at, now
        )
        return [Envelope.from_bytes(stored.encode())]


def make_handler(ctx: AdapterContext) -> PostalWorker:
    return PostalWorker(ctx)
